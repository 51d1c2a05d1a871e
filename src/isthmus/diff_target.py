"""The target's side of a differential: each mapping with its base checksum and the checksum
of the target row it points at, in legacy-ID order, and the target rows no mapping points at.

Where every compared column has an exact SQL canonical form (:mod:`isthmus.pg_canonical`),
PostgreSQL computes the checksums and only (legacy ID, base, checksum) leave the server;
otherwise the columns are read and put in canonical form here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from isthmus import canonical, mapping
from isthmus.canonical import NORMALIZERS, NULL
from isthmus.copytext import copy_lines
from isthmus.loadplan import EntityLoad
from isthmus.pg_canonical import canonical_sql
from isthmus.row_checksums import canonical_columns

Mapped = tuple[int, bytes | None, bytes | None]


@dataclass(frozen=True)
class Scope:
    """Which legacy IDs to look at: all, or those listed."""

    ids: Sequence[int] | None = None

    def where(self, column: sql.Composable) -> sql.Composable:
        """`` AND`` the condition on ``column`` (empty for all); the values are integers,
        written into the statement (COPY takes no parameters)."""
        if self.ids is None:
            return sql.SQL("")
        return sql.SQL(" AND {} = ANY({}::int8[])").format(column, _int_array(self.ids))


def _int_array(values: Sequence[int]) -> sql.Composable:
    return sql.Literal("{" + ",".join(str(int(v)) for v in values) + "}")


class TargetSide:
    """Reads one UUID-keyed entity's target rows and mappings for the comparison."""

    def __init__(self, load: EntityLoad, state_schema: str, gone: sql.Composable | None = None):
        self.load = load
        self.state_schema = state_schema
        # a condition on t that makes a present row count as deleted (a soft delete)
        self.gone = gone
        items, self.joins, self.kinds = canonical_columns(load.checksummed, state_schema)
        self.items = items
        exprs: list[sql.Composable] = []
        for item, col, kind in zip(items, load.checksummed, self.kinds, strict=True):
            type_name = "text" if col.role in ("reference", "deferred") else _type(load, col.target)
            expr = None if col.tolerance is not None else canonical_sql(item, kind, type_name)
            if expr is None:
                exprs = []
                break
            exprs.append(expr)
        # Every row an SQL form calls changed is compared again in Python before it is
        # reported (diff._recheck; their number is the differences'): a form that disagrees
        # with the canonical one in some corner costs a re-read, never a false report.
        self.in_database = bool(exprs) or not items
        self.sql_line: sql.Composable = (
            sql.SQL(" || E'\\t' || ").join(exprs) if exprs else sql.Literal("")
        )

    @property
    def normalizers(self) -> list[canonical.FieldFn]:
        """Canonical form of each compared target field (references: legacy IDs)."""
        return [
            c.tolerant(NORMALIZERS[k])
            for c, k in zip(self.load.checksummed, self.kinds, strict=True)
        ]

    @property
    def target(self) -> sql.Composable:
        return sql.Identifier(self.load.target.schema, self.load.target.name)

    @property
    def key(self) -> sql.Composable:
        return sql.Identifier(self.load.columns[0].target)

    def _absent(self) -> sql.Composable:
        absent = sql.SQL("t.{} IS NULL").format(self.key)
        if self.gone is not None:
            absent = sql.SQL("({} OR {})").format(absent, self.gone)
        return absent

    def mapped(
        self, conn: psycopg.Connection[Any], scope: Scope = Scope(), *, exact: bool = False
    ) -> Iterator[Mapped]:
        """(legacy ID, base checksum, target checksum or None) of every mapping in scope;
        ``exact``: canonical forms made here, never by SQL."""
        where = scope.where(sql.SQL("m.legacy_id"))
        in_database = self.in_database and not exact
        select: sql.Composable
        if in_database:
            select = sql.SQL(
                "m.legacy_id, m.checksum, CASE WHEN {a} THEN NULL ELSE md5({l}) END"
            ).format(a=self._absent(), l=self.sql_line)
        else:
            select = sql.SQL("m.legacy_id, m.checksum, {a}, {items}").format(
                a=self._absent(), items=sql.SQL(", ").join(self.items)
            )
        query = sql.SQL(
            "COPY (SELECT {select} FROM {m} AS m LEFT JOIN {t} AS t ON t.{k} = m.uuid_id"
            " {joins} WHERE m.entity_type = {e}{where} ORDER BY m.legacy_id) TO STDOUT"
        ).format(
            select=select,
            m=mapping.table(self.state_schema),
            t=self.target,
            k=self.key,
            joins=sql.SQL(" ").join(self.joins),
            e=sql.Literal(self.load.name),
            where=where,
        )
        normalizers = self.normalizers
        previous = b""
        with conn.cursor() as cur, cur.copy(query) as copy:
            for line in copy_lines(copy):
                fields = line.split(b"\t")
                if fields[0] == previous:
                    # a parent's UUID mapped twice (a corrupt map, which validation reports)
                    # joins a row twice: its first reading stands
                    continue
                previous = fields[0]
                base = None if fields[1] == NULL else fields[1]
                if in_database:
                    yield int(fields[0]), base, None if fields[2] == NULL else fields[2]
                elif fields[2] == b"t":
                    yield int(fields[0]), base, None
                else:
                    canon = [f(v) for f, v in zip(normalizers, fields[3:], strict=True)]
                    yield (
                        int(fields[0]),
                        base,
                        canonical.checksum(canonical.checksum_line(canon)).encode(),
                    )

    def fields_by_ids(
        self, conn: psycopg.Connection[Any], ids: Sequence[int]
    ) -> dict[int, list[bytes]]:
        """Canonical fields (the compared columns) of the target rows mapped from ``ids``."""
        if not ids:
            return {}
        query = sql.SQL(
            "COPY (SELECT m.legacy_id, {items} FROM {m} AS m JOIN {t} AS t ON t.{k} = m.uuid_id"
            " {joins} WHERE m.entity_type = {e}{where}) TO STDOUT"
        ).format(
            items=sql.SQL(", ").join(self.items) if self.items else sql.SQL("NULL"),
            m=mapping.table(self.state_schema),
            t=self.target,
            k=self.key,
            joins=sql.SQL(" ").join(self.joins),
            e=sql.Literal(self.load.name),
            where=Scope(ids=ids).where(sql.SQL("m.legacy_id")),
        )
        normalizers = self.normalizers
        out: dict[int, list[bytes]] = {}
        with conn.cursor() as cur, cur.copy(query) as copy:
            for line in copy_lines(copy):
                fields = line.split(b"\t")
                out[int(fields[0])] = [f(v) for f, v in zip(normalizers, fields[1:], strict=False)]
        return out

    def unmapped(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Keys of the target rows (not soft-deleted) that no mapping points at."""
        query = sql.SQL("SELECT k::text FROM ({}) AS u ORDER BY 1").format(self._unmapped())
        return [str(r[0]) for r in conn.execute(query).fetchall()]

    def count_unmapped(self, conn: psycopg.Connection[Any], limit: int) -> tuple[int, list[str]]:
        """How many target rows no mapping points at, and the first ``limit`` of their keys:
        the anti-join once, then counted and cut (a window over it would sort every row)."""
        query = sql.SQL(
            "WITH u AS MATERIALIZED ({}) SELECT (SELECT count(*) FROM u),"
            " ARRAY(SELECT k::text FROM u ORDER BY k LIMIT {})"
        ).format(self._unmapped(), sql.Literal(limit))
        row = conn.execute(query).fetchone()
        return (int(row[0]), [str(k) for k in row[1]]) if row else (0, [])

    def _unmapped(self) -> sql.Composable:
        gone = sql.SQL("") if self.gone is None else sql.SQL(" AND NOT {}").format(self.gone)
        return sql.SQL(
            "SELECT t.{k} AS k FROM {t} AS t WHERE NOT EXISTS (SELECT 1 FROM {m} AS m"
            " WHERE m.entity_type = {e} AND m.uuid_id = t.{k}){gone}"
        ).format(
            k=self.key,
            t=self.target,
            m=mapping.table(self.state_schema),
            e=sql.Literal(self.load.name),
            gone=gone,
        )


def _type(load: EntityLoad, column: str) -> str:
    col = load.target.column(column)
    return col.type_name if col is not None else "text"


def bucket_range(bucket: int, width: int) -> tuple[int, int]:
    """The keys of a bucket of ``key / width`` truncated toward zero (0 spans both signs)."""
    if bucket > 0:
        return bucket * width, bucket * width + width - 1
    if bucket < 0:
        return bucket * width - width + 1, bucket * width
    return -width + 1, width - 1


def mapped_in_ranges(
    conn: psycopg.Connection[Any], schema: str, entity: str, ranges: list[tuple[int, int]]
) -> set[int]:
    """Legacy IDs of ``entity`` mapped within the inclusive ``ranges``."""
    # the ranges drive: one index range scan of the map each
    query = sql.SQL(
        "COPY (SELECT m.legacy_id FROM unnest({}::int8[], {}::int8[]) AS r(lo, hi)"
        " JOIN {} AS m ON m.entity_type = {} AND m.legacy_id BETWEEN r.lo AND r.hi) TO STDOUT"
    ).format(
        _int_array([lo for lo, _ in ranges]),
        _int_array([hi for _, hi in ranges]),
        mapping.table(schema),
        sql.Literal(entity),
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        return {int(line) for line in copy_lines(copy)}
