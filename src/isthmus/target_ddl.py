"""The target's DDL, derived from the plan: UUID keys, UUID foreign keys, mapped column types.

``derive_target_ddl`` is pure: each entity becomes a ``CREATE TABLE`` with columns only
(types and NOT NULL), and everything that slows a bulk load down (primary keys, unique
constraints, indexes, foreign keys) becomes a ``DeferredDDL`` statement, to run once the
tables it touches are loaded. ``apply_target_ddl`` creates the tables that do not exist
yet and parks their deferred statements in the state table ``pending_ddl``;
``apply_pending_ddl`` runs the parked statements whose tables are loaded, one savepoint
each, so that one that fails (duplicates, orphans) is recorded and the rest go in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from isthmus.dialects.pgconn import translate
from isthmus.entities import Entity
from isthmus.errors import (
    ConfigError,
    TerminalDatabaseError,
    TransientDatabaseError,
    UsageError,
    first_line,
)
from isthmus.plan import Plan
from isthmus.target_types import target_type

DeferredKind = Literal["primary_key", "unique", "index", "foreign_key"]
KIND_ORDER: tuple[DeferredKind, ...] = ("primary_key", "unique", "index", "foreign_key")
MAX_IDENTIFIER_BYTES = 63
NAME = "\x00"  # where a deferred statement's own name goes (NUL is never in an identifier)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def object_name(*parts: str, suffix: str) -> str:
    """``<parts>_<suffix>``, at most 63 bytes: truncated with a short hash when longer."""
    full = "_".join((*parts, suffix))
    if len(full.encode()) <= MAX_IDENTIFIER_BYTES:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    tail = f"_{digest}_{suffix}"
    head = "_".join(parts).encode()[: MAX_IDENTIFIER_BYTES - len(tail.encode())]
    return head.decode("utf-8", "ignore") + tail


@dataclass(frozen=True)
class DeferredDDL:
    target_table: str
    kind: DeferredKind
    name: str
    statement: str
    depends_on: tuple[str, ...]  # target tables that must be loaded first

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_table": self.target_table,
            "kind": self.kind,
            "name": self.name,
            "statement": self.statement,
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class TargetColumn:
    source: str
    name: str
    type: str
    nullable: bool
    check: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "type": self.type,
            "nullable": self.nullable,
            "check": self.check,
        }


@dataclass(frozen=True)
class TableDDL:
    entity: str
    target_table: str
    create: str
    deferred: list[DeferredDDL]
    notes: list[str]
    columns: list[TargetColumn] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "target_table": self.target_table,
            "columns": [c.to_dict() for c in self.columns],
            "create": self.create,
            "deferred": [d.to_dict() for d in self.deferred],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class TargetDDL:
    target_schema: str
    source_dialect: str
    tables: list[TableDDL]

    def table(self, entity: str) -> TableDDL:
        for t in self.tables:
            if t.entity == entity:
                return t
        raise KeyError(entity)

    @property
    def deferred(self) -> list[DeferredDDL]:
        """Every deferred statement, primary keys first and foreign keys last."""
        every = [d for t in self.tables for d in t.deferred]
        return sorted(every, key=lambda d: KIND_ORDER.index(d.kind))

    def script(self) -> str:
        """All the SQL: the schema, the tables, then what runs after the load."""
        lines = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.target_schema)};", ""]
        for t in self.tables:
            lines.append(f"-- entity {_comment(t.entity)}")
            lines.extend(f"-- note: {_comment(n)}" for n in t.notes)
            lines.extend([f"{t.create};", ""])
        if self.deferred:
            lines.append("-- after the bulk load: keys, indexes, foreign keys")
            lines.extend(f"{d.statement};" for d in self.deferred)
        return "\n".join(lines).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_schema": self.target_schema,
            "source_dialect": self.source_dialect,
            "tables": [t.to_dict() for t in self.tables],
        }


def _comment(text: str) -> str:
    return " ".join(text.split())


def guess_dialect(plan: Plan) -> str:
    """The source dialect, when the caller does not say: PostgreSQL reflection names the
    schema of each table; MySQL has enums, sets and display widths SQLite reflection never
    reports."""
    tables = [p.entity.source for p in plan.entities]
    if any(t.schema for t in tables):
        return "postgresql"
    for t in tables:
        for c in t.columns:
            if c.kind in ("enum", "set") or c.unsigned or (c.kind == "integer" and c.bits != 64):
                return "mysql"
            if c.kind in ("timestamp", "time") and c.precision == 0:
                return "mysql"
    return "sqlite"


def derive_target_ddl(plan: Plan, target_schema: str, *, source_dialect: str = "") -> TargetDDL:
    """The target DDL of every entity of ``plan`` in ``target_schema`` (no database needed).

    ``source_dialect`` ("postgresql", "mysql", "sqlite") is guessed from the plan when empty.
    """
    dialect = source_dialect or guess_dialect(plan)
    by_name = {p.name: p.entity for p in plan.entities}
    names_taken: set[str] = set()
    tables = [
        _TableBuilder(p.entity, target_schema, dialect, by_name, names_taken).build()
        for p in plan.entities
    ]
    return TargetDDL(target_schema=target_schema, source_dialect=dialect, tables=tables)


def _check_length(name: str, what: str) -> None:
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigError(
            f"{what} {name!r} is longer than PostgreSQL's 63 bytes: rename it in [entities.*]"
        )


def _cols(names: Iterable[str]) -> str:
    return ", ".join(quote_ident(n) for n in names)


class _TableBuilder:
    """The DDL of one entity; a class only to share its many inputs between the steps."""

    def __init__(
        self,
        entity: Entity,
        schema: str,
        dialect: str,
        by_name: dict[str, Entity],
        names_taken: set[str],
    ) -> None:
        self.e = entity
        self.names_taken = names_taken
        self.schema = schema
        self.dialect = dialect
        self.by_name = by_name
        self.table = entity.target_table
        self.qualified = f"{quote_ident(schema)}.{quote_ident(self.table)}"
        self.notes: list[str] = []
        self.deferred: list[DeferredDDL] = []
        self.indexed: set[tuple[str, ...]] = set()  # target column lists already indexed
        self.target_of = dict(entity.columns)  # source column -> target column
        if entity.key is not None and entity.target_key is not None:
            self.target_of[entity.key] = entity.target_key

    def build(self) -> TableDDL:
        e = self.e
        _check_length(self.table, f"entities.{e.name}: target table")
        columns = [self._column(source, target) for source, target in self.target_of.items()]
        body = ",\n".join(f"    {_column_sql(c)}" for c in columns)
        create = f"CREATE TABLE {self.qualified} (\n{body}\n)"
        self._primary_key()
        self._indexes()
        self._references()
        self._composite_foreign_keys()
        self.deferred.sort(key=lambda d: KIND_ORDER.index(d.kind))
        return TableDDL(e.name, self.table, create, self.deferred, [*e.notes, *self.notes], columns)

    def _add(
        self,
        kind: DeferredKind,
        suffix: str,
        cols: tuple[str, ...],
        sql: str,
        *deps: str,
    ) -> None:
        """Defer ``sql`` (its NAME placeholder replaced) under a name unique in the whole DDL."""
        name = object_name(self.table, *cols, suffix=suffix)
        n = 1
        while name in self.names_taken:  # "a_b" + "c" and "a" + "b_c" meet as "a_b_c_idx"
            n += 1
            name = object_name(self.table, *cols, str(n), suffix=suffix)
        self.names_taken.add(name)
        depends_on = tuple(dict.fromkeys((self.table, *deps)))
        self.deferred.append(
            DeferredDDL(self.table, kind, name, sql.replace(NAME, quote_ident(name)), depends_on)
        )

    def _column(self, source: str, target: str) -> TargetColumn:
        e = self.e
        _check_length(target, f"entities.{e.name}: target column")
        col = e.source.column(source)
        assert col is not None  # resolve_entities checked every column
        if source == e.key:
            return TargetColumn(source, target, "uuid", False)
        parent = e.references.get(source)
        if parent is not None and self.by_name[parent].uuid_keyed:
            return TargetColumn(source, target, "uuid", col.nullable)
        mapped = target_type(col, self.dialect)
        if mapped.note:
            self.notes.append(f"{source}: {mapped.note}")
        if (
            self.dialect == "sqlite"
            and col.kind in ("text", "decimal")
            and (col.length or col.precision)
        ):
            self.notes.append(
                f"{source}: {col.type_name} unbounded (SQLite does not enforce sizes)"
            )
        check = None
        if mapped.allowed is not None:
            allowed = ", ".join(quote_literal(v) for v in mapped.allowed)
            check = f"{quote_ident(target)} IN ({allowed})"
        nullable = col.nullable if mapped.nullable is None else mapped.nullable
        return TargetColumn(source, target, mapped.sql, nullable, check)

    def _mapped(
        self, source_columns: Iterable[str], target_of: dict[str, str] | None = None
    ) -> tuple[str, ...] | None:
        """Target names of ``source_columns``; None when one of them is not copied."""
        names = target_of if target_of is not None else self.target_of
        mapped = tuple(names.get(c, "") for c in source_columns)
        return mapped if mapped and all(mapped) else None

    def _primary_key(self) -> None:
        e = self.e
        if e.key is not None and e.target_key is not None:
            pk: tuple[str, ...] | None = (e.target_key,)
        elif e.source.primary_key:
            pk = self._mapped(e.source.primary_key)
            if pk is None:
                self.notes.append("primary key not recreated: one of its columns is excluded")
                return
        else:
            return
        assert pk is not None
        self.indexed.add(pk)
        self._add(
            "primary_key",
            "pkey",
            (),
            f"ALTER TABLE {self.qualified} ADD CONSTRAINT {NAME} PRIMARY KEY ({_cols(pk)})",
        )

    def _indexes(self) -> None:
        for ix in self.e.source.indexes:
            cols = self._mapped(ix.columns)
            if cols is None:
                self.notes.append(
                    f"index {ix.name!r} not recreated: one of its columns is excluded"
                )
                continue
            if cols in self.indexed:
                continue
            self.indexed.add(cols)
            unique = "UNIQUE " if ix.unique else ""
            columns = _cols(cols)
            self._add(
                "unique" if ix.unique else "index",
                "key" if ix.unique else "idx",
                cols,
                f"CREATE {unique}INDEX {NAME} ON {self.qualified} ({columns})",
            )

    def _references(self) -> None:
        e = self.e
        for column, parent_name in e.references.items():
            if column not in self.target_of:
                continue
            parent = self.by_name[parent_name]
            if column == e.key:
                self.notes.append(
                    f"{column}: both the key and a reference to {parent_name}, no foreign key"
                )
                continue
            ref = self._referenced_column(column, parent)
            if ref is None:
                self.notes.append(
                    f"{column} → {parent_name}: no single key column to reference, no foreign key"
                )
                continue
            fk = self.target_of[column]
            if not any(cols[0] == fk for cols in self.indexed):
                self.indexed.add((fk,))
                self._add(
                    "index",
                    "idx",
                    (fk,),
                    f"CREATE INDEX {NAME} ON {self.qualified} ({quote_ident(fk)})",
                )
            self._add_foreign_key((fk,), parent, (ref,))

    def _referenced_column(self, column: str, parent: Entity) -> str | None:
        """The parent's target column that ``column`` points at."""
        if parent.uuid_keyed:
            return parent.target_key
        parent_target_of = dict(parent.columns)
        for fk in self.e.source.foreign_keys:
            if fk.columns == (column,) and fk.ref_table == parent.source_table:
                mapped = self._mapped(fk.ref_columns, parent_target_of)
                return mapped[0] if mapped else None
        if len(parent.source.primary_key) == 1:
            return parent_target_of.get(parent.source.primary_key[0])
        return None

    def _add_foreign_key(self, cols: tuple[str, ...], parent: Entity, ref: tuple[str, ...]) -> None:
        parent_q = f"{quote_ident(self.schema)}.{quote_ident(parent.target_table)}"
        self._add(
            "foreign_key",
            "fkey",
            cols,
            f"ALTER TABLE {self.qualified} ADD CONSTRAINT {NAME} "
            f"FOREIGN KEY ({_cols(cols)}) REFERENCES {parent_q} ({_cols(ref)})",
            parent.target_table,
        )

    def _composite_foreign_keys(self) -> None:
        """A multi-column FK to a parent that keeps its key is copied as it is."""
        owners = {e.source_table: e for e in self.by_name.values()}
        for fk in self.e.source.foreign_keys:
            parent = owners.get(fk.ref_table)
            if len(fk.columns) < 2 or parent is None:
                continue
            cols = self._mapped(fk.columns)
            ref = self._mapped(fk.ref_columns, dict(parent.columns))
            translated = any(c in self.e.references for c in fk.columns)
            if cols is None or ref is None or parent.uuid_keyed or translated:
                self.notes.append(
                    f"foreign key ({', '.join(fk.columns)}) → {fk.ref_table} not recreated"
                )
                continue
            self._add_foreign_key(cols, parent, ref)


def _column_sql(c: TargetColumn) -> str:
    sql = f"{quote_ident(c.name)} {c.type}"
    if not c.nullable:
        sql += " NOT NULL"
    if c.check:
        sql += f" CHECK ({c.check})"
    return sql


# --- applying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    target_schema: str
    created: list[str]  # target tables this call created
    skipped: list[str]  # target tables that already existed (left as they are)
    pending: list[str]  # names of the deferred statements parked in pending_ddl
    # names pending_ddl already holds for another statement (e.g. another target schema)
    clashing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_schema": self.target_schema,
            "created": list(self.created),
            "skipped": list(self.skipped),
            "pending": list(self.pending),
            "clashing": list(self.clashing),
        }


@dataclass(frozen=True)
class PendingResult:
    name: str
    target_table: str
    kind: str
    statement: str
    error: str | None  # None: applied

    @property
    def applied(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target_table": self.target_table,
            "kind": self.kind,
            "statement": self.statement,
            "applied": self.applied,
            "error": self.error,
        }


@dataclass(frozen=True)
class SchemaResult:
    """What ``isthmus schema`` returns: the DDL, and what ``--apply`` did with it."""

    ddl: TargetDDL
    applied: ApplyResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.ddl.to_dict(),
            "script": self.ddl.script(),
            "applied": self.applied.to_dict() if self.applied is not None else None,
        }


_TABLE_EXISTS = """
SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
"""


def _pending_table(state_schema: str) -> str:
    return f"{quote_ident(state_schema)}.pending_ddl"


def apply_target_ddl(
    conn: psycopg.Connection[Any], ddl: TargetDDL, state_schema: str, target_schema: str
) -> ApplyResult:
    """Create the tables of ``ddl`` that do not exist yet and park their deferred statements
    in ``pending_ddl``, in the caller's transaction. Existing tables are never altered."""
    if ddl.target_schema != target_schema:
        raise UsageError(
            f"the DDL was derived for schema {ddl.target_schema!r}, not {target_schema!r}"
        )
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"isthmus schema {target_schema}",))
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(target_schema)}")
    created: list[str] = []
    skipped: list[str] = []
    pending: list[str] = []
    clashing: list[str] = []
    insert = (
        f"INSERT INTO {_pending_table(state_schema)} "  # noqa: S608 (quoted identifier)
        "(target_table, kind, name, statement, depends_on) VALUES (%s, %s, %s, %s, %s) "
        # a row left from a table since dropped by hand is stale: this call just created it
        "ON CONFLICT (name) DO UPDATE SET applied_at = NULL, error = NULL "
        "WHERE pending_ddl.statement = EXCLUDED.statement RETURNING name"
    )
    for t in ddl.tables:
        if conn.execute(_TABLE_EXISTS, (target_schema, t.target_table)).fetchone():
            skipped.append(t.target_table)
            continue
        try:
            with conn.transaction():
                conn.execute(t.create)
        except psycopg.Error as exc:
            raise TerminalDatabaseError(
                f"PostgreSQL: creating {target_schema}.{t.target_table}: {first_line(exc)}"
            ) from exc
        created.append(t.target_table)
        for d in t.deferred:
            row = conn.execute(
                insert, (d.target_table, d.kind, d.name, d.statement, Jsonb(list(d.depends_on)))
            ).fetchone()
            (pending if row is not None else clashing).append(d.name)
    return ApplyResult(target_schema, created, skipped, pending, clashing)


def apply_pending_ddl(
    conn: psycopg.Connection[Any],
    state_schema: str,
    loaded_tables: set[str],
    *,
    retry_failed: bool = False,
) -> list[PendingResult]:
    """Run the parked statements whose tables (``depends_on``) are all in ``loaded_tables``:
    primary keys, then unique indexes, indexes, foreign keys; each in its own savepoint.

    An applied statement gets ``applied_at``; one that fails gets its ``error`` and the
    rest go on. Statements that failed before are left alone unless ``retry_failed``.
    Rows are locked (SKIP LOCKED), so workers finishing entities at once never run the
    same statement twice.
    """
    table = _pending_table(state_schema)
    failed_filter = "" if retry_failed else " AND error IS NULL"
    rows = conn.execute(
        f"SELECT id, target_table, kind, name, statement FROM {table} "  # noqa: S608
        f"WHERE applied_at IS NULL{failed_filter} AND depends_on <@ %s "
        "ORDER BY array_position(%s::text[], kind), id FOR UPDATE SKIP LOCKED",
        (Jsonb(sorted(loaded_tables)), list(KIND_ORDER)),
    ).fetchall()
    results: list[PendingResult] = []
    for row_id, target_table, kind, name, statement in rows:
        try:
            with conn.transaction():
                conn.execute(statement)
        except psycopg.Error as exc:
            failure = translate(exc)
            if isinstance(failure, TransientDatabaseError) or conn.broken:
                # a timeout, a deadlock, a dropped connection: not the statement's fault, so
                # not recorded as its error (which would keep it from ever running again)
                raise type(failure)(f"{kind} {name} on {target_table}: {failure}") from exc
            error = first_line(exc)
            conn.execute(f"UPDATE {table} SET error = %s WHERE id = %s", (error, row_id))  # noqa: S608
            results.append(PendingResult(name, target_table, kind, statement, error))
            continue
        conn.execute(
            f"UPDATE {table} SET applied_at = now(), error = NULL WHERE id = %s",  # noqa: S608
            (row_id,),
        )
        results.append(PendingResult(name, target_table, kind, statement, None))
    return results
