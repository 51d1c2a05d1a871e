"""Completeness and data integrity of an entity that keeps its key (a join table, a text key).

Such rows have no mapping and no integer order both databases agree on (text keys sort by
each server's collation), so the two sides are not merged as streams: each side's rows are
put in canonical form (references read back as legacy parent IDs), and (key, checksum, line)
of every row goes by COPY into a temporary table of the target's session; one FULL JOIN on
the canonical key then finds the rows missing, extra, duplicated or different. Memory stays
flat (the rows wait on the server's disk, not here) and both checks share the one load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psycopg import sql

from isthmus import canonical
from isthmus.canonical import NORMALIZERS
from isthmus.copytext import copy_lines
from isthmus.diff_detail import field_text
from isthmus.row_checksums import canonical_columns

if TYPE_CHECKING:
    import psycopg

    from isthmus.loadplan import EntityLoad
    from isthmus.validate import EntityValidation
    from isthmus.validate_check import Check

BATCH = 20_000
_SOURCE = "isthmus_validate_source"
_TARGET = "isthmus_validate_target"


def check_kept_completeness(v: EntityValidation, check: Check) -> Check:
    counts = loaded(v)
    conn = v.conn
    for kind, where in (
        ("missing_in_target", "t.k IS NULL"),
        ("extra_in_target", "s.k IS NULL"),
    ):
        total, samples = _joined(conn, where, check.limit)
        check.findings.add_many(kind, [{"key": _key(k)} for k, _, _ in samples], total)
    for kind, table in (("duplicate_key_in_source", _SOURCE), ("duplicate_key_in_target", _TARGET)):
        rows = conn.execute(
            sql.SQL("SELECT k, count(*) FROM {} GROUP BY k HAVING count(*) > 1 ORDER BY k").format(
                sql.Identifier(table)
            )
        ).fetchall()
        for k, n in rows:
            check.findings.add(kind, {"key": _key(k), "rows": int(n)})
    conn.commit()
    check.records_validated = counts[0] + counts[1]
    check.metadata.update({"source_rows": counts[0], "target_rows": counts[1]})
    check.criteria["compared"] = "canonical keys of every row on both sides (kept key)"
    return check.finish()


def check_kept_data(v: EntityValidation, check: Check) -> Check:
    counts = loaded(v)
    total, rows = _joined(v.conn, "s.s <> t.s", check.limit)
    columns = [c.source for c in v.load.columns]
    samples = []
    differing: dict[str, int] = {}
    for k, source_line, target_line in rows:
        diff: dict[str, dict[str, str | None]] = {}
        for name, a, b in zip(
            columns, source_line.split(b"\t"), target_line.split(b"\t"), strict=False
        ):
            if a != b:
                diff[name] = {"source": field_text(a), "target": field_text(b)}
                differing[name] = differing.get(name, 0) + 1
        samples.append({"key": _key(k), "columns": diff})
    check.findings.add_many("value_mismatch", samples, total)
    if differing:
        check.extra_details["columns_differing"] = differing
        check.extra_details["columns_counted_over"] = len(samples)
    check.records_validated = min(counts)
    check.metadata["method"] = "kept key: canonical rows joined in the target"
    check.criteria["compared"] = "canonical checksums of every column, row by row (kept key)"
    check.criteria["checksum_algorithm"] = canonical.CHECKSUM_ALGORITHM
    return check.finish()


def loaded(v: EntityValidation) -> tuple[int, int]:
    """Fill both temporary tables for ``v``'s entity (once per entity); their row counts."""
    if v.kept_counts is not None:
        return v.kept_counts
    conn = v.conn
    for table in (_SOURCE, _TARGET):
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (k bytea, s bytea, line bytea)").format(
                sql.Identifier(table)
            )
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    keys = v.load.key_count
    reader = v.ws.connect_target()  # the rows stream out of it into this session's tables
    try:
        reader.execute("SET TimeZone = 'UTC'")
        reader.execute("SET DateStyle = 'ISO, YMD'")
        counts = (
            _copy_in(conn, _SOURCE, _source_rows(v), keys),
            _copy_in(conn, _TARGET, _target_rows(reader, v.load, v.schema), keys),
        )
    finally:
        reader.close()
    for table in (_SOURCE, _TARGET):
        conn.execute(sql.SQL("CREATE INDEX ON {} (k)").format(sql.Identifier(table)))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    conn.commit()
    v.kept_counts = counts
    return counts


def _source_rows(v: EntityValidation) -> Iterator[list[bytes]]:
    load = v.load
    fns = [c.normalizer.canonical for c in load.columns]
    for columns in v.ws.source.stream_columns(
        load.source_table, load.read_columns, load.key_columns, batch_size=BATCH
    ):
        canon = [list(map(fn, col)) for fn, col in zip(fns, columns, strict=True)]
        yield from map(list, zip(*canon, strict=True))


def _target_rows(
    conn: psycopg.Connection[Any], load: EntityLoad, schema: str
) -> Iterator[list[bytes]]:
    items, joins, kinds = canonical_columns(load.columns, schema)
    fns = [c.tolerant(NORMALIZERS[k]) for c, k in zip(load.columns, kinds, strict=True)]
    query = sql.SQL("COPY (SELECT {} FROM {} AS t {}) TO STDOUT").format(
        sql.SQL(", ").join(items),
        sql.Identifier(load.target.schema, load.target.name),
        sql.SQL(" ").join(joins),
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for line in copy_lines(copy):
            yield [fn(f) for fn, f in zip(fns, line.split(b"\t"), strict=True)]


def _copy_in(
    conn: psycopg.Connection[Any], table: str, rows: Iterator[list[bytes]], keys: int
) -> int:
    n = 0
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY {} (k, s, line) FROM STDIN").format(sql.Identifier(table))) as copy,
    ):
        buffer: list[bytes] = []
        for fields in rows:
            line = canonical.checksum_line(fields)
            key = canonical.checksum_line(fields[:keys])
            buffer.append(
                b"\t".join((_bytea(key), canonical.checksum(line).encode(), _bytea(line)))
            )
            n += 1
            if len(buffer) >= BATCH:
                copy.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            copy.write(b"\n".join(buffer) + b"\n")
    return n


def _bytea(value: bytes) -> bytes:
    """``value`` as a bytea field of COPY text format (hex)."""
    return b"\\\\x" + value.hex().encode()


def _joined(
    conn: psycopg.Connection[Any], where: str, limit: int
) -> tuple[int, list[tuple[bytes, bytes, bytes]]]:
    condition = sql.SQL(where)  # one of this module's literal conditions
    joined = sql.SQL("FROM {s} AS s FULL JOIN {t} AS t ON s.k = t.k WHERE ").format(
        s=sql.Identifier(_SOURCE), t=sql.Identifier(_TARGET)
    )
    row = conn.execute(sql.SQL("SELECT count(*) ") + joined + condition).fetchone()
    total = int(row[0]) if row else 0
    rows = conn.execute(
        sql.SQL("SELECT coalesce(s.k, t.k), coalesce(s.line, ''), coalesce(t.line, '') ")
        + joined
        + condition
        + sql.SQL(" ORDER BY 1 LIMIT {}").format(sql.Literal(limit))
    ).fetchall()
    conn.commit()
    return total, [(bytes(k), bytes(a), bytes(b)) for k, a, b in rows]


def _key(k: bytes) -> list[str | None] | str | None:
    parts = [field_text(f) for f in k.split(b"\t")]
    return parts[0] if len(parts) == 1 else parts
