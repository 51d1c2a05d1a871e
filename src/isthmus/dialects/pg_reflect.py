"""PostgreSQL reflection: catalog queries for tables and column types (domains, enums,
arrays, partitions are where generic reflection is vague), SQLAlchemy's inspector (bulk
``get_multi_*``) for primary keys, foreign keys and indexes.

Inheritance children are tables of their own; a partitioned table is one table (its
partitions are storage, not entities).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection as SAConnection

from isthmus.dialects.base import Column, ForeignKey, Index, SchemaInfo, Table
from isthmus.dialects.typemap import pg_type

# A table never analysed has no estimate; below this size an exact count is cheap.
_EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_RELATIONS = """
SELECT c.relname, c.relkind,
       CASE WHEN c.relkind = 'p' THEN
           (SELECT CASE WHEN min(p.reltuples) < 0 THEN -1 ELSE sum(p.reltuples) END::bigint
              FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid WHERE t.isleaf)
       ELSE c.reltuples::bigint END,
       CASE WHEN c.relkind = 'p' THEN
           (SELECT sum(pg_relation_size(t.relid))::bigint FROM pg_partition_tree(c.oid) t)
       ELSE pg_relation_size(c.oid) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
 ORDER BY c.relname
"""

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.atttypid, a.atttypmod
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY c.relname, a.attnum
"""

_TYPES = """
SELECT oid, typname, typtype, typbasetype, typtypmod, typnotnull, typcategory
  FROM pg_type WHERE oid = ANY(%s)
"""

# conparentid = 0: a foreign key to a partitioned table is also cloned once per partition.
_FOREIGN_KEYS = """
SELECT cl.relname, con.conname, rn.nspname, rc.relname,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
  FROM pg_constraint con
  JOIN pg_class cl ON cl.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = cl.relnamespace
  JOIN pg_class rc ON rc.oid = con.confrelid
  JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE con.contype = 'f' AND con.conparentid = 0 AND n.nspname = %s AND NOT cl.relispartition
 ORDER BY cl.relname, con.conname
"""

_ENUMS = "SELECT enumtypid, enumlabel FROM pg_enum WHERE enumtypid = ANY(%s) ORDER BY enumtypid, enumsortorder"


def relations(query: Query, schema: str) -> list[tuple[str, str, int | None, int]]:
    """(name, relkind, row estimate, bytes) of the tables and views of ``schema``, partitions
    left out; the estimate is None for a table never analysed."""
    return [
        (r[0], r[1], r[2] if r[2] is not None and r[2] >= 0 else None, r[3] or 0)
        for r in query(_RELATIONS, (schema,))
    ]


def reflect(
    query: Query, sa_connection: SAConnection, schema: str, count: Callable[[str], int]
) -> SchemaInfo:
    notes: list[str] = []
    views: list[str] = []
    estimates: dict[str, int | None] = {}
    for name, relkind, estimate, size in relations(query, schema):
        if relkind in ("v", "m"):
            views.append(name)
        elif relkind == "f":
            notes.append(f"table {name!r} skipped: foreign table")
        else:
            never_analysed_but_small = estimate is None and size <= _EXACT_COUNT_MAX_BYTES
            estimates[name] = count(name) if never_analysed_but_small else estimate
    columns = _columns(query, schema, set(estimates))
    names = sorted(estimates)
    primary, indexes = _keys_and_indexes(sa_connection, schema, names)
    fks = _foreign_keys(query, schema, notes)
    tables = {
        name: Table(
            name=name,
            columns=tuple(columns.get(name, ())),
            primary_key=primary.get(name, ()),
            foreign_keys=tuple(fks.get(name, ())),
            indexes=tuple(indexes.get(name, ())),
            schema=schema,
            row_estimate=estimates[name],
        )
        for name in names
    }
    return SchemaInfo(tables=tables, views=tuple(views), notes=tuple(notes))


def _columns(query: Query, schema: str, wanted: set[str]) -> dict[str, list[Column]]:
    rows = [r for r in query(_COLUMNS, (schema,)) if r[0] in wanted]
    types = _TypeCatalog(query)
    types.load({r[6] for r in rows})
    found: dict[str, list[Column]] = {}
    for table, name, formatted, notnull, default, identity, type_oid, typmod in rows:
        base_oid, base_typmod, domain_notnull = types.resolve(type_oid, typmod)
        base = types.get(base_oid)
        type_name = formatted.lower()
        if base["typcategory"] == "A":
            kind_info = pg_type("", "b", -1)
            kind: Any = "array"
            element = type_name[: type_name.index("[")] if "[" in type_name else None
        else:
            kind_info = pg_type(base["typname"], base["typtype"], base_typmod)
            kind = kind_info.kind
            element = None
        found.setdefault(table, []).append(
            Column(
                name=name,
                type_name=type_name,
                kind=kind,
                nullable=not (notnull or domain_notnull),
                bits=kind_info.bits,
                length=kind_info.length,
                precision=kind_info.precision,
                scale=kind_info.scale,
                enum_values=types.enum_values(base_oid) if kind == "enum" else (),
                element_type=element,
                default=default,
                autoincrement=identity in ("a", "d") or (default or "").startswith("nextval("),
            )
        )
    return found


class _TypeCatalog:
    """pg_type rows by oid, loaded in bulk, with domains followed down to their base type."""

    def __init__(self, query: Query) -> None:
        self.query = query
        self.rows: dict[int, dict[str, Any]] = {}
        self.enums: dict[int, tuple[str, ...]] | None = None

    def load(self, oids: set[int]) -> None:
        while missing := sorted(oids - set(self.rows)):
            for oid, typname, typtype, basetype, typmod, notnull, category in self.query(
                _TYPES, (missing,)
            ):
                self.rows[oid] = {
                    "typname": typname,
                    "typtype": typtype,
                    "typbasetype": basetype,
                    "typtypmod": typmod,
                    "typnotnull": notnull,
                    "typcategory": category,
                }
            oids = {r["typbasetype"] for r in self.rows.values() if r["typtype"] == "d"}

    def get(self, oid: int) -> dict[str, Any]:
        return self.rows[oid]

    def resolve(self, oid: int, typmod: int) -> tuple[int, int, bool]:
        notnull = False
        while self.rows[oid]["typtype"] == "d":
            row = self.rows[oid]
            notnull = notnull or bool(row["typnotnull"])
            typmod = row["typtypmod"] if row["typtypmod"] >= 0 else typmod
            oid = row["typbasetype"]
        return oid, typmod, notnull

    def enum_values(self, oid: int) -> tuple[str, ...]:
        if self.enums is None:
            enum_oids = [o for o, r in self.rows.items() if r["typtype"] == "e"]
            grouped: dict[int, list[str]] = {}
            for type_oid, label in self.query(_ENUMS, (enum_oids,)):
                grouped.setdefault(type_oid, []).append(label)
            self.enums = {o: tuple(v) for o, v in grouped.items()}
        return self.enums.get(oid, ())


def _foreign_keys(query: Query, schema: str, notes: list[str]) -> dict[str, list[ForeignKey]]:
    # From the catalog: SQLAlchemy 2.1 names the wrong schema for a parent found through the
    # search_path (public.x reported as <schema>.x).
    fks: dict[str, list[ForeignKey]] = {}
    for table, name, ref_schema, ref_table, cols, ref_cols in query(_FOREIGN_KEYS, (schema,)):
        if ref_schema != schema:
            notes.append(
                f"table {table!r}: foreign key {name!r} points into schema {ref_schema!r} "
                f"({ref_table}); not followed"
            )
            continue
        fks.setdefault(table, []).append(
            ForeignKey(
                columns=tuple(cols), ref_table=ref_table, ref_columns=tuple(ref_cols), name=name
            )
        )
    return fks


def _keys_and_indexes(
    conn: SAConnection, schema: str, names: list[str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, list[Index]]]:
    if not names:
        return {}, {}
    insp = inspect(conn)
    primary: dict[str, tuple[str, ...]] = {}
    for (_, table), pk in insp.get_multi_pk_constraint(schema=schema, filter_names=names).items():
        primary[table] = tuple(pk.get("constrained_columns") or ())
    indexes: dict[str, list[Index]] = {}
    for (_, table), found_indexes in insp.get_multi_indexes(
        schema=schema, filter_names=names
    ).items():
        for ix in found_indexes:
            cols = ix.get("column_names") or []
            if not cols or any(c is None for c in cols):  # expression index: no column list
                continue
            indexes.setdefault(table, []).append(
                Index(
                    name=str(ix["name"]),
                    columns=tuple(str(c) for c in cols),
                    unique=bool(ix.get("unique")),
                )
            )
    return primary, indexes
