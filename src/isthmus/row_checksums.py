"""Checksums of source rows and of target rows, keyed by legacy ID, streamed in key order.

Both sides go through the canonical form of :mod:`isthmus.canonical` over the same
columns; a target reference is read back as the legacy ID of the parent it points at (a
UUID mapped to no parent reads as ``unmapped:<uuid>``, which no source value equals). Equal
checksums for a legacy ID mean the target row is a faithful copy of the source row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from isthmus import canonical, mapping
from isthmus.canonical import NORMALIZERS
from isthmus.copytext import copy_lines
from isthmus.dialects.base import SourceDialect
from isthmus.loadplan import ColumnLoad, EntityLoad


def source_checksums(
    source: SourceDialect, load: EntityLoad, batch_size: int = 10_000
) -> Iterator[tuple[int, str]]:
    """(legacy ID, checksum) of each source row of a UUID-keyed entity, in key order."""
    key = load.columns[0]
    positions = [load.columns.index(c) for c in load.checksummed]
    for rows in source.stream_text(
        load.source_table, load.read_columns, load.key_columns, batch_size=batch_size
    ):
        for row in rows:
            fields = [load.columns[p].normalizer.canonical(row[p]) for p in positions]
            yield (
                int(key.normalizer.canonical(row[0])),
                canonical.checksum(canonical.checksum_line(fields)),
            )


def canonical_columns(
    columns: Sequence[ColumnLoad], state_schema: str
) -> tuple[list[sql.Composable], list[sql.Composable], list[canonical.CanonKind]]:
    """What reads ``columns`` of a target row (alias ``t``) in canonical form: the select
    items, the joins they need (a reference becomes its parent's legacy ID through the map)
    and the kind that normalises each item."""
    ident = sql.Identifier
    table = mapping.table(state_schema)
    selects: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    kinds: list[canonical.CanonKind] = []
    for n, col in enumerate(columns):
        if col.parent is not None and col.role in ("reference", "deferred"):
            alias = ident(f"p{n}")
            joins.append(
                sql.SQL(
                    "LEFT JOIN {m} AS {a} ON {a}.entity_type = {e} AND {a}.uuid_id = t.{c}"
                ).format(m=table, a=alias, e=sql.Literal(col.parent), c=ident(col.target))
            )
            selects.append(
                sql.SQL(
                    "CASE WHEN t.{c} IS NULL THEN NULL"
                    " ELSE coalesce({a}.legacy_id::text, 'unmapped:' || t.{c}::text) END"
                ).format(c=ident(col.target), a=alias)
            )
            kinds.append("integer")
        else:
            selects.append(sql.SQL("t.{}").format(ident(col.target)))
            kinds.append(col.kind)
    return selects, joins, kinds


def target_checksums(
    conn: psycopg.Connection[Any], load: EntityLoad, state_schema: str
) -> Iterator[tuple[int, str]]:
    """(legacy ID, checksum) of each mapped target row of a UUID-keyed entity, in key order."""
    ident = sql.Identifier
    key = load.columns[0]
    table = mapping.table(state_schema)
    items, joins, kinds = canonical_columns(load.checksummed, state_schema)
    selects: list[sql.Composable] = [sql.SQL("m.legacy_id"), *items]
    query = sql.SQL(
        "COPY (SELECT {cols} FROM {t} AS t JOIN {m} AS m ON m.entity_type = {e}"
        " AND m.uuid_id = t.{k} {joins} ORDER BY m.legacy_id) TO STDOUT"
    ).format(
        cols=sql.SQL(", ").join(selects),
        t=ident(load.target.schema, load.target.name),
        m=table,
        e=sql.Literal(load.name),
        k=ident(key.target),
        joins=sql.SQL(" ").join(joins),
    )
    normalizers = [c.tolerant(NORMALIZERS[k]) for c, k in zip(load.checksummed, kinds, strict=True)]
    with conn.cursor() as cur, cur.copy(query) as copy:
        for line in copy_lines(copy):
            fields = line.split(b"\t")
            canon = [f(v) for f, v in zip(normalizers, fields[1:], strict=True)]
            yield int(fields[0]), canonical.checksum(canonical.checksum_line(canon))
