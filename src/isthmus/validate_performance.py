"""performance_check: was the migration fast, and is the target fast to use?

Per entity, three measurements, each bounded by ``query_samples`` (never one query per row):

- **throughput** of the newest completed migration or sync work on the entity, read from its
  checkpoints (nothing is re-run): rows / seconds. A ``migrate`` pass is one checkpoint; a
  chunked pass is its chunks, which run in parallel (first start to last end); a sync run is
  its apply batches of this entity (same ``job_id`` and ``metadata.run``), which run one after
  another between other entities' batches (their durations are added). A sync's comparison
  checkpoints (``command = "sync"``) count rows compared, not moved, and are left out. A run
  of fewer than ``JUDGE_MIN_ROWS`` rows lasting under ``JUDGE_MIN_SECONDS`` is recorded but
  not judged: its rate is fixed costs (connections, locks, checkpoints, DDL, ANALYZE). A
  resumed pass counts from its first start (the pause included): the rate is a lower bound.
- **ID-map lookups**, legacy→uuid and uuid→legacy, one row each (what a sync and an app
  translating old IDs do), for legacy IDs drawn at random points of the entity's key range
  (one query: an index probe per point, whatever the size of the map).
- **target queries** an application runs: a row by its key, a row joined to its parent per
  reference, and a page of the children of one parent (``WHERE fk = $1``: slow when the FK
  column has no index, which is also listed, as advice, in ``unindexed_foreign_keys``). Keys
  and FK values come from one ``TABLESAMPLE SYSTEM`` of the table (a few pages, not a scan).

Each statement is prepared and run once untimed (parse and plan are not paid per call), then
timed alone with ``perf_counter``, round trip included: the latency an application sees.
p50/p95 are nearest-rank. A series stops early once so many samples exceed its threshold
that its p95 must too: a missing index must not make the check itself run for minutes.
"""

from __future__ import annotations

import random
import time
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.numeric import Int8

from isthmus.config import ValidationConfig
from isthmus.dialects.pgconn import translated
from isthmus.loadplan import ColumnLoad, EntityLoad
from isthmus.mapping import table as mapping_table
from isthmus.target import TargetTable
from isthmus.validate_check import Check
from isthmus.workspace import Workspace

JUDGE_MIN_ROWS = 10_000  # a run is judged when it moved at least this many rows …
JUDGE_MIN_SECONDS = 10.0  # … or lasted at least this long
PAGE = 100  # rows of one "children of a parent" page

Conn = psycopg.Connection[Any]
Row = tuple[Any, ...]

_DONE = sql.SQL(
    "status = 'completed' AND records_processed > 0"
    " AND started_at IS NOT NULL AND completed_at IS NOT NULL"
)
_NEWEST = sql.SQL(
    "SELECT id, operation_type, job_id, metadata FROM {cp} WHERE entity_type = %s AND {done}"
    " AND NOT metadata ? 'chunk' AND (operation_type = 'differential_migration'"
    "  OR (operation_type = 'sync_operation' AND coalesce(metadata->>'command', '') <> 'sync'))"
    " ORDER BY completed_at DESC, created_at DESC LIMIT 1"
)
_SPAN = sql.SQL("extract(epoch FROM max(completed_at) - min(started_at))")
_ADDED = sql.SQL("sum(extract(epoch FROM completed_at - started_at))")
_GROUP = sql.SQL(
    "SELECT count(*), coalesce(sum(records_processed), 0), ({seconds})::float8"
    " FROM {cp} WHERE {where} AND {done}"
)
# one index probe per random point of the entity's legacy key range
_MAP_SAMPLE = sql.SQL(
    "WITH b AS (SELECT min(legacy_id) AS lo, max(legacy_id) AS hi FROM {m}"
    "  WHERE entity_type = %(e)s),"
    " p AS (SELECT (lo + floor(random() * (hi::numeric - lo + 1)))::bigint AS at"
    "  FROM b, generate_series(1, %(n)s) WHERE lo IS NOT NULL)"
    " SELECT DISTINCT ON (hit.legacy_id) hit.legacy_id, hit.uuid_id FROM p CROSS JOIN LATERAL"
    " (SELECT legacy_id, uuid_id FROM {m} WHERE entity_type = %(e)s AND legacy_id >= p.at"
    "  ORDER BY legacy_id LIMIT 1) AS hit"
)
_RELTUPLES = """SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s"""
_FOREIGN_KEYS = """SELECT k.conname, a.attname, pc.relname, pa.attname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
JOIN pg_class pc ON pc.oid = k.confrelid
JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
WHERE k.contype = 'f' AND n.nspname = %s AND c.relname = %s ORDER BY k.conname"""
_LEADING = """SELECT a.attname FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE n.nspname = %s AND c.relname = %s AND i.indisvalid AND i.indpred IS NULL"""


def check_performance(
    ws: Workspace, conn: Conn, load: EntityLoad, settings: ValidationConfig, check: Check
) -> Check:
    """Fill ``check`` with the entity's throughput, lookup and query timings (module doc)."""
    check.criteria = {
        "min_rows_per_second": settings.min_rows_per_second,
        "max_lookup_ms": settings.max_lookup_ms,
        "max_query_ms": settings.max_query_ms,
        "query_samples": settings.query_samples,
        "judge_min_rows": JUDGE_MIN_ROWS,
        "judge_min_seconds": JUDGE_MIN_SECONDS,
        "throughput": "rows / seconds of the newest completed migrate pass (chunked: first "
        "chunk start to last end) or sync run's apply batches (durations added); judged only "
        "from judge_min_rows rows or judge_min_seconds",
        "lookups": "one-row ID-map lookups each way, legacy IDs at random points of the key "
        "range; each direction's p95 against max_lookup_ms",
        "queries": f"row by key, row joined to its parent, a page of {PAGE} children of one "
        "parent (per reference), keys from a TABLESAMPLE; each p95 against max_query_ms",
        "timing": "prepared, one untimed warm-up, each execution timed alone with its round "
        "trip; nearest-rank p50/p95; a series stops once its p95 must exceed the limit",
    }
    try:
        with translated():
            _measure(ws, conn, load, settings, check)
        conn.commit()  # only read: ends the transaction, undoes nothing of the caller's
    except BaseException:
        with suppress(psycopg.Error):  # a broken connection: the first error is the news
            conn.rollback()
        raise
    return check.finish()


def _measure(
    ws: Workspace, conn: Conn, load: EntityLoad, settings: ValidationConfig, check: Check
) -> None:
    throughput = _throughput(conn, ws.state_schema, load.name)
    check.metadata["throughput"] = throughput
    rate = throughput["rows_per_second"]
    if throughput["judged"] and rate is not None and rate < settings.min_rows_per_second:
        slow = {k: throughput[k] for k in ("rows_per_second", "rows", "seconds", "operation")}
        check.findings.add("slow_throughput", {**slow, "threshold": settings.min_rows_per_second})
    if load.uuid_keyed:
        check.metadata["lookups"] = _lookups(conn, ws.state_schema, load.name, settings, check)
    else:
        check.metadata["lookups"] = _stats([]) | {"note": "the entity keeps its key: no ID map"}
    queries = _queries(ws, conn, load, settings.query_samples, settings.max_query_ms)
    check.metadata["queries"] = queries
    if not queries:
        check.metadata["queries_note"] = "the sample found no target row: nothing was timed"
    for q in queries:
        check.records_validated += q["samples"]
        if q["p95_ms"] is not None and q["p95_ms"] > settings.max_query_ms:
            sample = {"name": q["name"], "p95_ms": q["p95_ms"], "threshold": settings.max_query_ms}
            check.findings.add("slow_query", sample)
    check.metadata["unindexed_foreign_keys"] = _unindexed(ws, conn, load)


def _throughput(conn: Conn, schema: str, entity: str) -> dict[str, Any]:
    cp = sql.Identifier(schema, "migration_checkpoints")
    newest = conn.execute(_NEWEST.format(cp=cp, done=_DONE), (entity,)).fetchone()
    if newest is None:
        return _stats_of_run(0, 0, 0.0, None) | {
            "note": "no completed migration or sync run of this entity moved rows"
        }
    checkpoint_id, operation, job_id, meta = newest
    where: sql.Composable = sql.SQL("id = %s")
    params: list[Any] = [checkpoint_id]
    seconds = _ADDED
    if operation == "differential_migration" and meta.get("chunk_checkpoints"):
        where, params, seconds = sql.SQL("id = ANY(%s::uuid[])"), [meta["chunk_checkpoints"]], _SPAN
    elif operation == "sync_operation" and job_id is not None and "run" in meta:
        where = sql.SQL(
            "entity_type = %s AND operation_type = 'sync_operation' AND job_id = %s"
            " AND metadata->>'run' = %s"
        )
        params = [entity, job_id, str(meta["run"])]
    query = _GROUP.format(seconds=seconds, cp=cp, where=where, done=_DONE)
    count, rows, secs = conn.execute(query, params).fetchone() or (0, 0, 0.0)
    return _stats_of_run(int(count), int(rows), float(secs or 0.0), str(operation))


def _stats_of_run(count: int, rows: int, secs: float, operation: str | None) -> dict[str, Any]:
    return {
        "rows_per_second": round(rows / secs, 1) if secs > 0 else None,
        "rows": rows,
        "seconds": round(secs, 3),
        "checkpoints": count,
        "operation": operation,
        "judged": secs > 0 and (rows >= JUDGE_MIN_ROWS or secs >= JUDGE_MIN_SECONDS),
    }


def _lookups(
    conn: Conn, schema: str, entity: str, settings: ValidationConfig, check: Check
) -> dict[str, Any]:
    m = mapping_table(schema)
    sampled = {"e": entity, "n": settings.query_samples}
    pairs = conn.execute(_MAP_SAMPLE.format(m=m), sampled).fetchall()
    if not pairs:
        return _stats([]) | {"note": "the ID map holds no row of this entity"}
    random.shuffle(pairs)  # not in key order, which would walk neighbouring index pages
    limit = settings.max_lookup_ms
    by_legacy = sql.SQL("SELECT uuid_id FROM {} WHERE entity_type = %s AND legacy_id = %s")
    by_uuid = sql.SQL("SELECT legacy_id FROM {} WHERE entity_type = %s AND uuid_id = %s")
    legacy_ids = [(entity, Int8(legacy)) for legacy, _ in pairs]
    uuids = [(entity, uuid) for _, uuid in pairs]
    series = {
        "legacy_to_uuid": _timed(conn, by_legacy.format(m), legacy_ids, limit),
        "uuid_to_legacy": _timed(conn, by_uuid.format(m), uuids, limit),
    }
    every: list[float] = []
    out: dict[str, Any] = {}
    for direction, (times, stopped) in series.items():
        every += times
        out[direction] = _stats(times, stopped)
        check.records_validated += len(times)
        p95 = out[direction]["p95_ms"]
        if p95 is not None and p95 > limit:
            check.findings.add(
                "slow_lookup", {"direction": direction, "p95_ms": p95, "threshold": limit}
            )
    return _stats(every) | out


def _references(load: EntityLoad) -> list[ColumnLoad]:
    return [c for c in load.columns if c.parent is not None and c.role != "key"]


def _queries(
    ws: Workspace, conn: Conn, load: EntityLoad, n: int, limit: float
) -> list[dict[str, Any]]:
    t = load.target
    table = sql.Identifier(t.schema, t.name)
    keys = load.target_key
    refs = _references(load)
    rows = _sample(conn, t, keys + [c.target for c in refs], n)
    if not rows:
        return []

    def by_key(alias: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(*filter(None, [alias, k]))) for k in keys
        )

    get = sql.SQL("SELECT * FROM {} WHERE {}").format(table, by_key(""))
    out = [_query(conn, "primary_key", get, [r[: len(keys)] for r in rows], limit)]
    catalog = {fk[1]: fk for fk in _foreign_keys(conn, t.schema, t.name)}
    for at, col in enumerate(refs, start=len(keys)):
        with_fk = [r for r in rows if r[at] is not None]
        if not with_fk:
            continue
        parent = ws.plan[str(col.parent)].entity
        fk = sql.Identifier(col.target)
        pk = parent.target_key
        if not parent.uuid_keyed:  # the column the target's constraint references, if any
            found = catalog.get(col.target)
            pk = found[3] if found and found[2] == parent.target_table else None
        if pk is not None:
            parent_table = sql.Identifier(t.schema, parent.target_table)
            join = sql.SQL("SELECT p.* FROM {} AS c JOIN {} AS p ON p.{} = c.{} WHERE {}").format(
                table, parent_table, sql.Identifier(pk), fk, by_key("c")
            )
            by_child = [r[: len(keys)] for r in with_fk]
            out.append(_query(conn, f"parent:{col.target}", join, by_child, limit))
        page = sql.SQL("SELECT * FROM {} WHERE {} = %s LIMIT {}").format(table, fk, PAGE)
        of_parent = [(r[at],) for r in with_fk]
        out.append(_query(conn, f"children:{col.target}", page, of_parent, limit))
    return out


def _query(
    conn: Conn, name: str, query: sql.Composed, params: list[Row], limit: float
) -> dict[str, Any]:
    times, stopped = _timed(conn, query, params, limit)
    return {"name": name, "sql": query.as_string(conn), **_stats(times, stopped)}


def _sample(conn: Conn, t: TargetTable, columns: list[str], n: int) -> list[Row]:
    """Up to ``n`` rows' ``columns`` from a few random pages (the first rows when the table
    was never analysed, or when the pages drawn were empty)."""
    found = conn.execute(_RELTUPLES, (t.schema, t.name)).fetchone()
    estimate = float(found[0]) if found else -1.0
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    table = sql.Identifier(t.schema, t.name)
    rows: list[Row] = []
    if estimate > 0:  # about 20 rows per wanted one, at least 1000: a few pages
        percent = min(100.0, 100.0 * max(20 * n, 1_000) / estimate)
        sampled = sql.SQL(
            "SELECT {} FROM {} TABLESAMPLE SYSTEM (%s::float4) ORDER BY random() LIMIT %s"
        ).format(cols, table)
        rows = conn.execute(sampled, (percent, n)).fetchall()
    if not rows:
        first = sql.SQL("SELECT {} FROM {} LIMIT %s").format(cols, table)
        rows = conn.execute(first, (n,)).fetchall()
    return rows


def _timed(
    conn: Conn, query: sql.Composed, params: list[Row], limit_ms: float
) -> tuple[list[float], bool]:
    """Each execution's milliseconds, and whether the series stopped early: once more than
    5 % of ``params`` exceeded ``limit_ms``, the p95 is over it whatever follows."""
    times: list[float] = []
    allowed = len(params) - _rank(len(params), 95)
    over = 0
    with conn.cursor() as cur:
        cur.execute(query, params[0], prepare=True).fetchall()  # warm-up: prepare and plan
        for one in params:
            started = time.perf_counter()
            cur.execute(query, one, prepare=True).fetchall()
            times.append((time.perf_counter() - started) * 1000.0)
            over += times[-1] > limit_ms
            if over > allowed:
                return times, True
    return times, False


def _rank(n: int, percent: int) -> int:
    """The nearest rank (1-based) of ``percent`` among ``n`` values."""
    return max(1, (percent * n + 99) // 100)


def _stats(times: list[float], stopped: bool = False) -> dict[str, Any]:
    ordered = sorted(times)
    out: dict[str, Any] = {"p50_ms": None, "p95_ms": None, "samples": len(ordered)}
    if ordered:
        out["p50_ms"] = round(ordered[_rank(len(ordered), 50) - 1], 3)
        out["p95_ms"] = round(ordered[_rank(len(ordered), 95) - 1], 3)
    if stopped:
        out["stopped_early"] = True
    return out


def _foreign_keys(conn: Conn, schema: str, name: str) -> list[Row]:
    """(constraint, first column, parent table, its column) of each FK of the table."""
    return conn.execute(_FOREIGN_KEYS, (schema, name)).fetchall()


def _unindexed(ws: Workspace, conn: Conn, load: EntityLoad) -> list[dict[str, Any]]:
    """FK columns (the target's constraints, the plan's references) no index begins with."""
    t = load.target
    found = [(c, p, name) for name, c, p, _ in _foreign_keys(conn, t.schema, t.name)]
    for c in _references(load):
        found.append((c.target, ws.plan[str(c.parent)].entity.target_table, None))
    leading = {r[0] for r in conn.execute(_LEADING, (t.schema, t.name)).fetchall()}
    columns: dict[str, dict[str, Any]] = {}
    for column, parent_table, constraint in found:
        if column not in leading:
            info = {"column": column, "parent_table": parent_table, "constraint": constraint}
            columns.setdefault(column, info)
    return list(columns.values())
