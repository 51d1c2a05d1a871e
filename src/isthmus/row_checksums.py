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
from isthmus.dialects.base import SourceDialect
from isthmus.loadplan import ColumnLoad, EntityLoad


def source_checksums(
    source: SourceDialect, load: EntityLoad, batch_size: int = 10_000
) -> Iterator[tuple[int, str]]:
    """(legacy ID, checksum) of each source row of a UUID-keyed entity, in key order: what
    the diff reads (:func:`isthmus.diff_source.source_sums`), checksums as text."""
    from isthmus.diff_source import source_sums

    for legacy_id, checksum in source_sums(source, load, batch_size=batch_size):
        yield legacy_id, checksum.decode()


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
    """(legacy ID, checksum) of each mapped target row of a UUID-keyed entity, in key order,
    canonical forms made in Python (the diff's exact reading of the target)."""
    from isthmus.diff_target import TargetSide

    for legacy_id, _base, checksum in TargetSide(load, state_schema).mapped(conn, exact=True):
        if checksum is not None:
            yield legacy_id, checksum.decode()
