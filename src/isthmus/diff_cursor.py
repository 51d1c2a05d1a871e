"""The cursor diff: only what changed since the last diff, whatever the table's size.

An entity with ``updated_at`` (and its target column) whose last diff left cursor marks is
compared on a few sets of legacy IDs instead of every row:

- source rows with ``updated_at`` at or after the last source mark less the overlap
  (``[diff] cursor_overlap_seconds``: a transaction that committed late with an earlier
  time is still seen), and target rows likewise by the target column;
- the records the earlier diffs left unresolved (they have not necessarily changed since);
- deletes, found without reading keys: the source and the ID map count their keys per
  bucket inside each database, and only buckets whose (count, sum) differ are read; target
  rows gone from under a mapping are one anti-join inside PostgreSQL.

Those IDs are then compared exactly like the full diff does (same checksums, same rules).
A row changed without touching ``updated_at`` is only seen by a full diff: ``isthmus diff``
runs one whenever an entity has no marks yet.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from isthmus import mapping
from isthmus.dialects import open_source
from isthmus.diff_classify import Found, classify
from isthmus.diff_source import source_sums, sums_by_ids
from isthmus.diff_target import Scope, bucket_range, mapped_in_ranges

if TYPE_CHECKING:
    from isthmus.dialects.base import SourceDialect
    from isthmus.diff import EntityRun
    from isthmus.loadplan import EntityLoad
    from isthmus.workspace import Workspace

log = logging.getLogger(__name__)
_BUCKET = 64  # keys per bucket of the delete pass: scattered deletes dirty few keys


def capture_deletes(run: EntityRun) -> bool:
    """Put the delete-capturing trigger on the entity's target table (idempotent); False when
    the target refuses (no right to create triggers): the cursor diff then scans instead."""
    name = sql.Identifier(f"isthmus_deletions_{run.schema}")
    statement = sql.SQL(
        "CREATE OR REPLACE TRIGGER {name} AFTER DELETE ON {t} REFERENCING OLD TABLE AS"
        " isthmus_gone FOR EACH STATEMENT EXECUTE FUNCTION {f}({s}, {e}, {k})"
    ).format(
        name=name,
        t=run.side.target,
        f=sql.Identifier(run.schema, "record_target_deletion"),
        s=sql.Literal(run.schema),
        e=sql.Literal(run.load.name),
        k=sql.Literal(run.load.columns[0].target),
    )
    exists = run.conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
        (f"isthmus_deletions_{run.schema}", run.side.target.as_string(run.conn)),
    ).fetchone()
    run.conn.commit()
    if exists:  # no DDL (and no lock on the table) on every run
        return True
    try:
        run.conn.execute(statement)
        run.conn.commit()
    except psycopg.Error as exc:
        run.conn.rollback()
        log.warning("%s: cannot capture deletes in the target (%s)", run.load.name, exc)
        return False
    return True


def marks(run: EntityRun) -> dict[str, Any] | None:
    """Where both cursors stand before this diff reads anything."""
    entity = run.load.planned.entity
    if not entity.updated_at or not entity.target_updated_at:
        return None
    captured = capture_deletes(run)
    source_mark = run.ws.source.max_value(run.load.source_table, entity.updated_at)
    query = sql.SQL("SELECT max({}) FROM {}").format(
        sql.Identifier(entity.target_updated_at), run.side.target
    )
    row = run.conn.execute(query).fetchone()
    clock = run.conn.execute("SELECT now()").fetchone()
    run.conn.commit()
    return {
        "source_column": entity.updated_at,
        "target_column": entity.target_updated_at,
        "source_mark": _text(source_mark),
        "target_mark": _text(row[0] if row else None),
        "target_clock": _text(clock[0] if clock else None),
        "deletes_captured": captured,
    }


def previous_marks(run: EntityRun) -> dict[str, Any] | None:
    """The marks of the entity's last completed comparison (``isthmus diff`` or a job's sync
    run: both leave what they did not settle open), when they are usable."""
    statement = sql.SQL(
        "SELECT metadata->'cursor' FROM {} WHERE entity_type = %s AND status = 'completed'"
        " AND metadata->>'command' IN ('diff', 'sync')"
        " AND metadata->'cursor'->>'source_column' = %s"
        " ORDER BY created_at DESC LIMIT 1"
    ).format(sql.Identifier(run.schema, "migration_checkpoints"))
    column = run.load.planned.entity.updated_at
    row = run.conn.execute(statement, (run.load.name, column)).fetchone()
    run.conn.commit()
    found = row[0] if row else None
    entity = run.load.planned.entity
    if (
        not isinstance(found, dict)
        or found.get("source_column") != entity.updated_at
        or found.get("target_column") != entity.target_updated_at
        or found.get("source_mark") is None
        or found.get("target_mark") is None
    ):
        return None
    return found


def compare(run: EntityRun, previous: dict[str, Any]) -> Found:
    load, side, conn, source = run.load, run.side, run.conn, run.ws.source
    entity = load.planned.entity
    overlap = timedelta(seconds=run.config.cursor_overlap_seconds)
    assert entity.updated_at and entity.target_updated_at
    since_source = _back(previous["source_mark"], overlap)
    since_target = _back(previous["target_mark"], overlap)

    changed = dict(source_sums(source, load, since=(entity.updated_at, since_source)))
    target_ids, created = _target_changed(run, entity.target_updated_at, since_target)
    open_ids, open_created = _still_open(run)
    pending = run.prefetched_deletes
    in_source = (
        pending.result() if pending is not None else source_deletes(source, conn, run.schema, load)
    )
    deleted = in_source | _target_deletes(run, previous, overlap)

    ids = sorted(set(changed) | target_ids | open_ids | deleted)
    rest = [i for i in ids if i not in changed]
    sums = dict(changed)
    sums.update(sums_by_ids(source, load, rest))
    found = Found()
    classify(sorted(sums.items()), side.mapped(conn, Scope(ids=ids)), found)
    found.created_in_target = _unmapped(run, sorted(set(created) | open_created))
    conn.commit()
    return found


def _target_changed(run: EntityRun, column: str, since: str) -> tuple[set[int], list[str]]:
    """Legacy IDs of the target rows changed since ``since``, and the changed rows that no
    mapping points at (created in the target)."""
    gone = sql.SQL("") if run.side.gone is None else sql.SQL(" AND NOT {}").format(run.side.gone)
    query = sql.SQL(
        "SELECT m.legacy_id, t.{k}::text FROM {t} AS t LEFT JOIN {m} AS m ON"
        " m.entity_type = %s AND m.uuid_id = t.{k} WHERE t.{c} >= %s{gone}"
    ).format(
        k=run.side.key,
        t=run.side.target,
        m=mapping.table(run.schema),
        c=sql.Identifier(column),
        gone=gone,
    )
    rows = run.conn.execute(query, (run.load.name, since)).fetchall()
    ids = {int(r[0]) for r in rows if r[0] is not None}
    return ids, [str(r[1]) for r in rows if r[0] is None]


def _still_open(run: EntityRun) -> tuple[set[int], set[str]]:
    """What unresolved differentials of the entity still list."""
    query = sql.SQL(
        "SELECT legacy_ids, metadata->'created_in_target' FROM {} WHERE NOT resolved"
        " AND metadata->>'entity' = %s"
    ).format(sql.Identifier(run.schema, "data_differentials"))
    ids: set[int] = set()
    created: set[str] = set()
    for legacy_ids, listed in run.conn.execute(query, (run.load.name,)):
        ids.update(int(i) for i in legacy_ids)
        if isinstance(listed, list):
            created.update(str(u) for u in listed)
    return ids, created


def source_deletes(
    source: SourceDialect, conn: psycopg.Connection[Any], schema: str, load: EntityLoad
) -> set[int]:
    """Legacy IDs in the map but not in the source, and in the source but not in the map,
    read only in the key buckets where the two disagree. Each database counts its own
    buckets, both at once."""
    table, key = load.source_table, load.key_columns[0]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(source.key_buckets, table, key, _BUCKET)
        query = sql.SQL(
            "SELECT legacy_id / %s, count(*), sum(legacy_id) FROM {} WHERE entity_type = %s"
            " GROUP BY 1"
        ).format(mapping.table(schema))
        rows = conn.execute(query, (_BUCKET, load.name)).fetchall()
        mapped = {int(b): (int(n), int(s)) for b, n, s in rows}
        in_source = pending.result()
        dirty = sorted(b for b in set(in_source) | set(mapped) if in_source.get(b) != mapped.get(b))
        if not dirty:
            return set()
        ranges = [bucket_range(b, _BUCKET) for b in dirty]
        keys = pool.submit(source.keys_in_ranges, table, key, ranges)
        in_map = mapped_in_ranges(conn, schema, load.name, ranges)
        return set(keys.result()) ^ in_map


def prefetch_deletes(ws: Workspace, loads: list[EntityLoad]) -> dict[str, Future[set[int]]]:
    """Start the delete pass of every entity at once, each on connections of its own: the
    passes are key scans inside the two databases, which then work side by side."""
    if len(loads) < 2:
        return {}
    pool = ThreadPoolExecutor(min(len(loads), 3), thread_name_prefix="isthmus-deletes")

    def one(load: EntityLoad) -> set[int]:
        source = open_source(ws.config.source.database_url)
        conn = ws.connect_target(autocommit=True)
        try:
            return source_deletes(source, conn, ws.state_schema, load)
        finally:
            conn.close()
            source.close()

    futures = {load.name: pool.submit(one, load) for load in loads}
    pool.shutdown(wait=False)
    return futures


def _target_deletes(run: EntityRun, previous: dict[str, Any], overlap: timedelta) -> set[int]:
    """Legacy IDs whose mapped target row is gone: from the captured deletes when the
    trigger was in place at the last marks, else by an anti-join of the map and the table.
    (Soft-deleted rows changed their ``updated_at``; the comparison sees them gone.)"""
    if previous.get("deletes_captured") and previous.get("target_clock"):
        query = sql.SQL(
            "SELECT m.legacy_id FROM {d} AS d JOIN {m} AS m ON m.entity_type = d.entity_type"
            " AND m.uuid_id = d.target_key WHERE d.entity_type = %s AND d.deleted_at >= %s"
        ).format(d=sql.Identifier(run.schema, "target_deletions"), m=mapping.table(run.schema))
        since = _back(str(previous["target_clock"]), overlap)
        rows = run.conn.execute(query, (run.load.name, since)).fetchall()
        return {int(r[0]) for r in rows}
    absent = sql.SQL("t.{} IS NULL").format(run.side.key)
    if run.side.gone is not None:
        absent = sql.SQL("({} OR {})").format(absent, run.side.gone)
    query = sql.SQL(
        "SELECT m.legacy_id FROM {m} AS m LEFT JOIN {t} AS t ON t.{k} = m.uuid_id"
        " WHERE m.entity_type = %s AND {absent}"
    ).format(m=mapping.table(run.schema), t=run.side.target, k=run.side.key, absent=absent)
    return {int(r[0]) for r in run.conn.execute(query, (run.load.name,)).fetchall()}


def _unmapped(run: EntityRun, keys: list[str]) -> list[str]:
    """Of ``keys`` (target rows), those still present and still without a mapping."""
    if not keys:
        return []
    gone = sql.SQL("") if run.side.gone is None else sql.SQL(" AND NOT {}").format(run.side.gone)
    query = sql.SQL(
        "SELECT t.{k}::text FROM {t} AS t WHERE t.{k} = ANY(%s::uuid[]) AND NOT EXISTS"
        " (SELECT 1 FROM {m} AS m WHERE m.entity_type = %s AND m.uuid_id = t.{k}){gone}"
        " ORDER BY 1"
    ).format(k=run.side.key, t=run.side.target, m=mapping.table(run.schema), gone=gone)
    return [str(r[0]) for r in run.conn.execute(query, (keys, run.load.name)).fetchall()]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _back(mark: str, overlap: timedelta) -> str:
    """``mark`` less ``overlap`` when it is a time (a version number stays as it is)."""
    try:
        when = datetime.fromisoformat(mark)
    except ValueError:
        return mark
    return (when - overlap).isoformat(sep=" ")
