"""The segment diff: checksums of key buckets computed inside both databases at once; only
the buckets that disagree are read and compared row by row.

Source and target each print every compared column in a *segment form* both databases agree
on (:mod:`isthmus.dialects.segment_sql`; a target reference reads as its legacy parent ID
through the map), hash each row, and sum the hashes per bucket of ``WIDTH`` legacy IDs. A
bucket whose (rows, sum) agree holds the same rows with the same values; the others are
compared exactly as the full diff does (canonical checksums, base attribution), so the cost
grows with the number of differences rather than with the table. Target rows no mapping
points at are found by one anti-join.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from psycopg import sql

from isthmus import mapping
from isthmus.dialects import segment_sql
from isthmus.diff_classify import Found, classify
from isthmus.diff_source import sums_by_ids
from isthmus.diff_target import Scope, bucket_range, mapped_in_ranges
from isthmus.prefetch import ahead

if TYPE_CHECKING:
    from isthmus.diff import EntityRun

WIDTH = 16  # legacy IDs per bucket: 75k buckets for 1.2M rows, a few rows read per difference
DIRTY_BATCH = 2_000  # disagreeing buckets whose rows are read and compared together


def forms(run: EntityRun) -> tuple[list[str], list[str]] | None:
    """(source forms, target forms) of the compared columns, or None when a column has none
    in one of the databases (the entity is then compared in full)."""
    flavor = run.ws.source.capabilities.segment_flavor
    if flavor is None:
        return None
    entity = run.load.planned.entity
    source_forms: list[str] = []
    target_forms: list[str] = []
    for col, item in zip(run.load.checksummed, run.side.items, strict=True):
        described = entity.source.column(col.source)
        if described is None or run.load.target.column(col.target) is None:
            return None
        src = run.ws.source.segment_form(run.load.source_table, described, col.kind)
        tgt = segment_sql.pg_form(item.as_string(run.conn), None, col.kind, flavor)
        if src is None or tgt is None:
            return None
        source_forms.append(src)
        target_forms.append(tgt)
    return source_forms, target_forms


def compare(
    run: EntityRun, source_forms: list[str], target_forms: list[str], found: Found | None = None
) -> Found:
    """Both databases sum their buckets at once and stream them in bucket order; the two
    streams are merged here, and the rows of disagreeing buckets are compared a few
    thousand buckets at a time: what is held here follows the differences, not the table."""
    found = found or Found()
    load, conn, source = run.load, run.conn, run.ws.source
    key = load.key_columns[0]
    in_source = ahead(source.segment_sums(load.source_table, key, source_forms, WIDTH), 8)
    dirty: list[int] = []
    for bucket, here, there in _merged(in_source, _target_sums(run, target_forms)):
        if here == there:
            found.compared += here[0]
            found.equal += here[0]
            continue
        dirty.append(bucket)
        if len(dirty) >= DIRTY_BATCH:
            _compare_rows(run, dirty, found)
            dirty = []
    if dirty:
        _compare_rows(run, dirty, found)
    found.created_in_target = run.side.unmapped(conn)
    conn.commit()
    return found


_cursor_numbers = itertools.count()
Sums = tuple[int, int]  # (rows, sum of row hashes) of a bucket
_NONE: Sums = (0, 0)


def _merged(
    source: Iterator[tuple[int, int, int]], target: Iterator[tuple[int, int, int]]
) -> Iterator[tuple[int, Sums, Sums]]:
    """(bucket, source sums, target sums) of every bucket either side has, in order."""
    s = next(source, None)
    t = next(target, None)
    while s is not None or t is not None:
        if t is None or (s is not None and s[0] < t[0]):
            assert s is not None
            yield s[0], (s[1], s[2]), _NONE
            s = next(source, None)
        elif s is None or t[0] < s[0]:
            yield t[0], _NONE, (t[1], t[2])
            t = next(target, None)
        else:
            yield s[0], (s[1], s[2]), (t[1], t[2])
            s = next(source, None)
            t = next(target, None)


def _target_sums(run: EntityRun, target_forms: list[str]) -> Iterator[tuple[int, int, int]]:
    """The target's bucket sums in bucket order, through a server-side cursor."""
    load, side, conn = run.load, run.side, run.conn
    gone = sql.SQL("") if side.gone is None else sql.SQL(" AND NOT {}").format(side.gone)
    query = sql.SQL(
        "SELECT m.legacy_id / {w}, count(*), sum({h}) FROM {m} AS m JOIN {t} AS t"
        " ON t.{k} = m.uuid_id {joins} WHERE m.entity_type = {e}{gone} GROUP BY 1 ORDER BY 1"
    ).format(
        w=sql.Literal(WIDTH),
        h=sql.SQL(segment_sql.pg_row_hash(target_forms, run.ws.source.capabilities.segment_flavor)),
        m=mapping.table(run.schema),
        t=side.target,
        k=side.key,
        joins=sql.SQL(" ").join(side.joins),
        e=sql.Literal(load.name),
        gone=gone,
    )
    # buckets aggregated in memory, not sorted on disk; no JIT: compiling the row
    # expressions costs more than it saves on one pass
    conn.execute("SET LOCAL work_mem = '512MB'")
    conn.execute("SET LOCAL jit = off")
    # every bucket is read: plan for the whole result, not a cursor's fast first rows
    conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
    with conn.cursor(name=f"isthmus_buckets_{next(_cursor_numbers)}") as cur:
        cur.itersize = 20_000
        cur.execute(query)
        for b, n, total in cur:
            yield int(b), int(n), int(total)


def _compare_rows(run: EntityRun, buckets: list[int], found: Found) -> None:
    """Compare the rows of ``buckets`` exactly, as the full diff does."""
    load, side, conn, source = run.load, run.side, run.conn, run.ws.source
    ranges = [bucket_range(b, WIDTH) for b in buckets]
    with ThreadPoolExecutor(1) as pool:
        keys = pool.submit(source.keys_in_ranges, load.source_table, load.key_columns[0], ranges)
        ids = sorted(set(keys.result()) | mapped_in_ranges(conn, run.schema, load.name, ranges))
    classify(sums_by_ids(source, load, ids), side.mapped(conn, Scope(ids=ids)), found)
