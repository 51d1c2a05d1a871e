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
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from psycopg import sql

from isthmus import mapping
from isthmus.dialects import segment_sql
from isthmus.dialects.segment_sql import Span
from isthmus.diff_classify import Found, classify
from isthmus.diff_source import sums_by_ids
from isthmus.diff_target import Scope, bucket_range, mapped_in_ranges

if TYPE_CHECKING:
    from isthmus.diff import EntityRun

WIDTH = 16  # legacy IDs per bucket: 75k buckets for 1.2M rows, a few rows read per difference
SLICE_ROWS = 400_000  # rows compared per slice: at most ~25k buckets held here at once


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
    """Compare the entity slice by slice (:func:`slices`), so that the per-bucket sums held
    here stay bounded whatever the table's size."""
    found = found or Found()
    for span in slices(run):
        _compare_span(run, source_forms, target_forms, found, span)
    found.created_in_target = run.side.unmapped(run.conn)
    run.conn.commit()
    return found


def slices(run: EntityRun) -> list[Span]:
    """Inclusive legacy-ID bounds of slices of about ``SLICE_ROWS`` mapped rows (the map's
    key range cut evenly, at bucket boundaries; the first and last are open, so every source
    key falls in one)."""
    query = sql.SQL(
        "SELECT count(*), min(legacy_id), max(legacy_id) FROM {} WHERE entity_type = %s"
    ).format(mapping.table(run.schema))
    row = run.conn.execute(query, (run.load.name,)).fetchone()
    run.conn.commit()
    if row is None or not row[0] or row[0] <= SLICE_ROWS:
        return [(None, None)]
    count, low, high = int(row[0]), int(row[1]), int(row[2])
    pieces = -(-count // SLICE_ROWS)
    step = max(WIDTH, (high - low) // pieces // WIDTH * WIDTH)
    cuts = [c for c in range((low // WIDTH + 1) * WIDTH, high + 1, step) if c > 0][: pieces - 1]
    if not cuts:
        return [(None, None)]
    bounds: list[Span] = [(None, cuts[0] - 1)]
    bounds += [(a, b - 1) for a, b in itertools.pairwise(cuts)]
    bounds.append((cuts[-1], None))
    return bounds


def _compare_span(
    run: EntityRun, source_forms: list[str], target_forms: list[str], found: Found, span: Span
) -> None:
    load, side, conn, source = run.load, run.side, run.conn, run.ws.source
    key = load.key_columns[0]
    flavor = source.capabilities.segment_flavor
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            source.segment_sums, load.source_table, key, source_forms, WIDTH, span
        )
        gone = sql.SQL("") if side.gone is None else sql.SQL(" AND NOT {}").format(side.gone)
        query = sql.SQL(
            "SELECT m.legacy_id / {w}, count(*), sum({h}) FROM {m} AS m JOIN {t} AS t"
            " ON t.{k} = m.uuid_id {joins} WHERE m.entity_type = {e}{gone}{span} GROUP BY 1"
        ).format(
            w=sql.Literal(WIDTH),
            h=sql.SQL(segment_sql.pg_row_hash(target_forms, flavor)),
            m=mapping.table(run.schema),
            t=side.target,
            k=side.key,
            joins=sql.SQL(" ").join(side.joins),
            e=sql.Literal(load.name),
            gone=gone,
            span=sql.SQL(segment_sql.span_condition("m.legacy_id", span)),
        )
        # buckets aggregated in memory, not sorted on disk; no JIT: compiling the row
        # expressions costs more than it saves on one pass
        conn.execute("SET LOCAL work_mem = '512MB'")
        conn.execute("SET LOCAL jit = off")
        rows = conn.execute(query).fetchall()
        in_target = {int(b): (int(n), int(s)) for b, n, s in rows}
        del rows
        in_source = pending.result()
        dirty = sorted(
            b for b in set(in_source) | set(in_target) if in_source.get(b) != in_target.get(b)
        )
        clean = sum(n for b, (n, _) in in_source.items() if in_target.get(b) == (n, _))
        found.compared += clean
        found.equal += clean
        if dirty:
            ranges = [bucket_range(b, WIDTH) for b in dirty]
            keys = pool.submit(source.keys_in_ranges, load.source_table, key, ranges)
            ids = sorted(set(keys.result()) | mapped_in_ranges(conn, run.schema, load.name, ranges))
            classify(sums_by_ids(source, load, ids), side.mapped(conn, Scope(ids=ids)), found)
    conn.commit()
