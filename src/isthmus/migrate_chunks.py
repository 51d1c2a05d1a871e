"""Key-range chunks: one large entity migrated by several processes at once, then finished.

    plan_chunks(ws, "products", 4)            → [(lo, hi), …]: about equal row counts
    migrate_chunk(ws, "products", lo, hi)     in any process, in any order, at the same time
    finish_chunked(ws, "products", chunks)    once, when every chunk is done

A chunk run is a migrate pass restricted to ``lo <= key <= hi`` (the same batches, writer
lanes and atomic commits), with a checkpoint of its own (``metadata.chunk = [lo, hi]``,
resumed after its ``last_processed_id`` when a run dies) and two advisory locks: the
entity's lock in *shared* mode, so chunk runs of one entity coexist while ``migrate`` and
sync jobs, which take it exclusively, run neither beside them nor while they run; and the
chunk's own lock, so the same chunk never runs twice at once. A chunk overlapping one that
runs elsewhere is refused as well (both would insert the same legacy keys).

Chunk checkpoints count neither as the entity migrated (``check_parents`` of its children),
nor as its table loaded (its parked keys, indexes and FKs wait), nor as a place where a
plain ``migrate`` resumes. ``finish_chunked`` takes the entity's lock exclusively (no chunk
still runs), checks that every chunk of the current pass completed and that together they
cover every source key, sets the deferred references, and writes one ``completed``
whole-entity checkpoint summarising the chunks; then it builds the parked DDL, refreshes
the planner's statistics and counts the open quarantine, as the end of ``migrate`` does.

A *pass* is what happened since the entity's newest whole-entity checkpoint: a chunk
completed in the current pass is not run again (a retried task does nothing), and after a
finish the next chunk runs start a new, differential pass.

Only UUID-keyed entities (a single integer key) are split. Their writes never depend on
whether the target was empty when a chunk began (new rows are found through the map, which
is unique by legacy key, and chunks are disjoint), so chunks need not agree on "fresh": the
table's parked DDL waits for the finish whatever order the chunks run in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import BigInteger, Connection, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import distinct_on

from isthmus import quarantine, references
from isthmus.errors import DatabaseError, IsthmusError, UsageError
from isthmus.loadplan import EntityLoad, build_load
from isthmus.migrate import _after, _Run
from isthmus.migrate_result import (
    EntityBusy,
    EntityResult,
    MigrationInterrupted,
    MigrationResult,
    Progress,
)
from isthmus.sessions import target_session
from isthmus.state.enums import CheckpointStatus, OperationType
from isthmus.state.models import MigrationCheckpoint
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.state.store_base import load
from isthmus.target import reflect_table
from isthmus.workspace import Workspace

log = logging.getLogger(__name__)

CHUNK = "chunk"  # the metadata key that makes a checkpoint a chunk's
KEY_MIN, KEY_MAX = -(2**63), 2**63 - 1  # the legacy IDs the map can hold (bigint)
_UNFINISHED = {CheckpointStatus.IN_PROGRESS, CheckpointStatus.PAUSED, CheckpointStatus.FAILED}

Chunk = tuple[int, int]
_WARM_MAX = 1_000_000  # parent mappings a chunk caches before it starts (24 bytes each)
_WARM_PAGE = 50_000


class ChunksUnfinished(IsthmusError):
    """finish_chunked: a chunk is not done, or the chunks miss some source keys."""

    exit_code = 3


class _AlreadyDone(Exception):  # control flow inside this module, never shown
    def __init__(self, checkpoint: MigrationCheckpoint) -> None:
        self.checkpoint = checkpoint


def parse_chunk(value: str | Chunk) -> Chunk:
    """``"LO:HI"`` (or a pair) as an inclusive key range; UsageError when it cannot be one."""
    if isinstance(value, tuple):
        lo, hi = value
    else:
        parts = value.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            lo, hi = int(parts[0]), int(parts[1])
        except ValueError:
            raise UsageError(
                f"--chunk {value!r}: expected LO:HI, two integer keys (e.g. 1:50000)"
            ) from None
    if lo > hi:
        raise UsageError(f"chunk {lo}:{hi}: LO must not be greater than HI")
    if lo < KEY_MIN or hi > KEY_MAX:
        raise UsageError(f"chunk {lo}:{hi}: keys must fit in 64 bits ({KEY_MIN}..{KEY_MAX})")
    return lo, hi


# -- planning ----------------------------------------------------------------------------------


def plan_chunks(ws: Workspace, entity: str, chunks: int) -> list[Chunk]:
    """``entity``'s source keys split into at most ``chunks`` contiguous inclusive ranges of
    about equal row count (NTILE inside the source, one pass over its key; by value between
    min and max where the database has no window functions). The ranges run from the
    smallest key to the largest, so together they hold every key once; [] for an empty
    table."""
    if chunks < 1:
        raise UsageError(f"entity {entity}: the number of chunks must be at least 1, not {chunks}")
    planned = ws.plan[entity].entity
    if planned.key is None:
        raise _not_splittable(entity)
    table, key = planned.source_table, planned.key
    try:
        tiles = ws.source.key_tiles(table, key, chunks)
        starts = [_key(entity, t[0]) for t in tiles if t[2]]
        last = _key(entity, tiles[-1][1]) if tiles else None
    except DatabaseError as exc:
        log.debug("no NTILE on %s (%s): splitting by value", table, exc)
        low, high = ws.source.key_range(table, key)
        if low is None or high is None:
            return []
        low, last = _key(entity, low), _key(entity, high)
        width = max(1, -(-(last - low + 1) // chunks))
        starts = list(range(low, last + 1, width))
    if last is None or not starts:
        return []
    bounds = [*starts[1:], last + 1]
    return [(lo, nxt - 1) for lo, nxt in zip(starts, bounds, strict=True) if nxt - 1 >= lo]


def _key(entity: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"entity {entity}: key value {value!r} is not an integer; it cannot be split into"
            " chunks (run `isthmus migrate` for it)"
        ) from None


def _not_splittable(entity: str) -> UsageError:
    return UsageError(
        f"entity {entity} keeps its own key (no single integer key): it cannot be split into"
        " chunks; run `isthmus migrate --entity` for it"
    )


# -- one chunk ---------------------------------------------------------------------------------


def migrate_chunk(
    ws: Workspace,
    entity: str,
    lo: int,
    hi: int,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> EntityResult:
    """Migrate the source rows of ``entity`` whose key is in [``lo``, ``hi``]: resumed from
    the chunk's unfinished checkpoint, skipped (status ``skipped``) when the chunk already
    completed in the current pass. Raises EntityBusy while the entity is migrated whole, or
    the chunk (or one overlapping it) by another process."""
    lo, hi = parse_chunk((lo, hi))
    with _session(ws, entity, batch_size, progress, (lo, hi)) as (run, load):
        run.check_parents([load])
        try:
            result = run.entity(load)
        except _AlreadyDone as done:
            cp = done.checkpoint
            return EntityResult(
                load.name,
                load.source_table,
                f"{load.target.schema}.{load.target.name}",
                checkpoint_id=cp.id,
                status="skipped",
                chunk=(lo, hi),
            )
        except MigrationInterrupted as exc:
            again = f"run `isthmus migrate --entity {entity} --chunk {lo}:{hi}` again"
            message = str(exc).replace("run `isthmus migrate` again", again)
            raise MigrationInterrupted(
                message.replace(" paused", f" chunk {lo}:{hi} paused")
            ) from None
        result.chunk = (lo, hi)
        # What finish_chunked needs to know: did this chunk write rows (statistics to refresh)?
        # A resumed run saw only part of the chunk, so it cannot say.
        written = None if result.resumed_after is not None else result.outcome.inserted
        if result.checkpoint_id is not None:
            with ws.engine.begin() as sa:
                run.store.merge_checkpoint_metadata(sa, result.checkpoint_id, {"inserted": written})
        return result


class _ChunkRun(_Run):
    """A migrate run over one key range of one entity."""

    def __init__(
        self,
        ws: Workspace,
        conn: psycopg.Connection[Any],
        batch_size: int,
        progress: Progress | None,
        chunk: Chunk,
    ) -> None:
        super().__init__(ws, conn, batch_size, progress)
        self.chunk = chunk

    def _chunk_lock(self, load: EntityLoad, chunk: Chunk) -> str:
        return f"isthmus-chunk:{self.schema}.{load.name}:{chunk[0]}:{chunk[1]}"

    def _lock(self, load: EntityLoad) -> None:
        """The entity's lock shared, then the chunk's exclusively (a 64-bit hash of its name)."""
        lo, hi = self.chunk
        cls, name = self._lock_key(load)
        if self.lock_conn is None or self.lock_conn.closed:
            self.lock_conn = self.ws.connect_target(autocommit=True)
        lock = self.lock_conn
        if not _one(lock, "SELECT pg_try_advisory_lock_shared(%s, hashtext(%s))", (cls, name)):
            raise EntityBusy(
                f"entity {load.name} is being migrated whole (`isthmus migrate` or a sync job)"
                " by another isthmus process right now: its chunks must wait"
            )
        chunk_lock = self._chunk_lock(load, self.chunk)
        if not _one(lock, "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (chunk_lock,)):
            lock.execute("SELECT pg_advisory_unlock_shared(%s, hashtext(%s))", (cls, name))
            raise EntityBusy(
                f"chunk {lo}:{hi} of entity {load.name} is being migrated by another isthmus"
                " process right now"
            )

    def _unlock(self, load: EntityLoad) -> None:
        if self.lock_conn is None or self.lock_conn.closed:
            return  # a closed session holds no locks
        cls, name = self._lock_key(load)
        try:
            self.lock_conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                (self._chunk_lock(load, self.chunk),),
            )
            self.lock_conn.execute(
                "SELECT pg_advisory_unlock_shared(%s, hashtext(%s))", (cls, name)
            )
        except psycopg.Error:
            log.debug("unlocking chunk %s of %s failed", self.chunk, name, exc_info=True)

    def _pass(
        self, load: EntityLoad, checkpoint: MigrationCheckpoint, result: EntityResult
    ) -> None:
        self._warm(load)
        super()._pass(load, checkpoint, result)

    def _warm(self, load: EntityLoad) -> None:
        """Cache the parents' mappings this chunk points at, one ordered read per parent. A
        process that migrated the parents has them cached already; a chunk's process starts
        cold, and looking up each batch's misses would cost it about a third of its time."""
        lo, hi = self.chunk
        for col in load.columns:
            if col.parent is None or col.role != "reference" or col.parent == load.name:
                continue
            try:
                low, high = self.ws.source.key_range(
                    load.source_table, col.source, where=(load.key_columns[0], lo, hi)
                )
                span = (_key(load.name, low), _key(load.name, high))
            except (UsageError, DatabaseError):  # no integer range: look up batch by batch
                continue
            with self.cache_lock:
                room = min(_WARM_MAX, self.cache.max_entries // 2 - len(self.cache))
                try:
                    for part in _mapped_ints(self.read_conn, self.schema, col.parent, span, room):
                        self.cache.put_ints(col.parent, part)
                except psycopg.Error:  # only a head start: the batches look up what is missing
                    log.debug("warming %s's mappings failed", col.parent, exc_info=True)

    def _bounds(
        self, load: EntityLoad, last: str | None
    ) -> tuple[Sequence[Any] | None, Sequence[Any] | None]:
        lo, hi = self.chunk
        if last is not None:
            return _after(load, last), (hi,)
        return (None if lo == KEY_MIN else (lo - 1,)), (hi,)

    def _checkpoint(self, load: EntityLoad) -> tuple[MigrationCheckpoint, bool]:
        """The chunk's unfinished checkpoint (True), or a new one (False); _AlreadyDone when
        the chunk completed in the current pass."""
        with self.ws.engine.connect() as sa:
            latest = _chunk_checkpoints(self.store, sa, load.name, self.chunk)
            start = _pass_start(self.store, sa, load.name)
        resume = latest[0] if latest and latest[0].status in _UNFINISHED else None
        if resume is None and latest and _in_pass(latest[0], start):
            raise _AlreadyDone(latest[0])
        total = fresh = None
        if resume is None:
            total = self.ws.source.count_keys(load.source_table, load.key_columns[0], [self.chunk])
            fresh = _parked(self.conn, self.schema, load)
        with self.ws.engine.begin() as sa:
            # One start at a time per entity: what runs, and this chunk's checkpoint, agree.
            sa.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                {"name": f"isthmus-chunk-start:{self.schema}.{load.name}"},
            )
            self._refuse_overlaps(sa, load)
            if resume is not None:
                if resume.status != CheckpointStatus.IN_PROGRESS:
                    resume = self.store.set_checkpoint_status(
                        sa, resume.id, CheckpointStatus.IN_PROGRESS
                    )
                return resume, True
            checkpoint = self.new_checkpoint(
                sa, load, total, fresh_target=fresh, **{CHUNK: list(self.chunk)}
            )
        return checkpoint, False

    def _refuse_overlaps(self, sa: Connection, load: EntityLoad) -> None:
        """EntityBusy when another process runs a chunk that shares keys with this one."""
        lo, hi = self.chunk
        t = self.store.checkpoints
        first = t.c.metadata[CHUNK][0].astext.cast(BigInteger)
        last = t.c.metadata[CHUNK][1].astext.cast(BigInteger)
        statement = select(first, last).where(
            t.c.operation_type == OperationType.DIFFERENTIAL_MIGRATION.value,
            t.c.entity_type == load.name,
            t.c.job_id.is_(None),
            t.c.status == CheckpointStatus.IN_PROGRESS.value,
            t.c.metadata.has_key(CHUNK),
            first <= hi,
            last >= lo,
        )
        assert self.lock_conn is not None
        for other_lo, other_hi in sa.execute(statement).all():
            other = (int(other_lo), int(other_hi))
            if other == self.chunk:
                continue  # this chunk's own checkpoint: its lock is ours
            name = self._chunk_lock(load, other)
            if _one(
                self.lock_conn, "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
            ):
                self.lock_conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,)
                )
                continue  # left in_progress by a process that died: nobody writes there
            raise EntityBusy(
                f"chunk {lo}:{hi} of entity {load.name} overlaps chunk {other[0]}:{other[1]},"
                " which another isthmus process is migrating right now"
            )


# -- finishing ---------------------------------------------------------------------------------


def finish_chunked(
    ws: Workspace,
    entity: str,
    chunks: Sequence[Chunk] | None = None,
    batch_size: int | None = None,
) -> MigrationResult:
    """Close a chunked pass of ``entity``: every chunk (``chunks``, or all the current pass
    ran) must have completed and the chunks must cover every source key, else
    ChunksUnfinished says which are not. Then, as the end of ``migrate`` does: the deferred
    (cyclic and self-) references, a whole-entity ``completed`` checkpoint, the parked keys,
    indexes and FKs, fresh statistics, and the open quarantine count."""
    started = time.perf_counter()
    with _session(ws, entity, batch_size, None, None) as (run, load):
        run.check_parents([load])
        run._lock(load)  # exclusively: no chunk of it (nor a migrate or sync) runs now
        try:
            done = _completed_chunks(run, load, chunks)
            ranges = [_range(cp) for cp in done]
            _check_coverage(ws, load, ranges)
            result = EntityResult(
                load.name,
                load.source_table,
                f"{load.target.schema}.{load.target.name}",
                status="finished",
            )
            if load.deferred:
                result.references_updated = references.link(run, load, result.outcome)
            result.checkpoint_id = _summarise(run, load, done)
            pending = run.apply_pending_ddl()
            if any(cp.metadata.get("inserted") != 0 for cp in done):
                run.analyze([load])
            warnings = ws.source.take_warnings()
            open_count = run.open_quarantine([load.name])
        finally:
            run._unlock(load)
        result.seconds = time.perf_counter() - started
    return MigrationResult([result], result.seconds, warnings, pending, open_count)


def _completed_chunks(
    run: _Run, load: EntityLoad, chunks: Sequence[Chunk] | None
) -> list[MigrationCheckpoint]:
    """The completed checkpoint of each chunk of the current pass, in key order; raises
    ChunksUnfinished naming every chunk that is not done."""
    with run.ws.engine.connect() as sa:
        start = _pass_start(run.store, sa, load.name)
        newest = {_range(cp): cp for cp in _chunk_checkpoints(run.store, sa, load.name, None)}
    if chunks is None:  # the chunks this pass ran
        wanted = sorted(
            r
            for r, cp in newest.items()
            if _in_pass(cp, start) or (cp.status in _UNFINISHED and _after_start(cp, start))
        )
        if not wanted:
            raise ChunksUnfinished(
                f"entity {load.name}: no chunk has been migrated since its last whole migration"
            )
    else:
        wanted = sorted(parse_chunk(c) for c in chunks)
    problems: list[str] = []
    done: list[MigrationCheckpoint] = []
    for chunk in wanted:
        cp = newest.get(chunk)
        where = f"chunk {chunk[0]}:{chunk[1]}"
        if cp is None:
            problems.append(f"{where} was never run")
        elif cp.status in _UNFINISHED:
            at = f"after key {cp.last_processed_id}" if cp.last_processed_id else "at its start"
            problems.append(f"{where} is {cp.status} {at}")
        elif not _in_pass(cp, start):
            problems.append(f"{where} has not run since the last whole migration")
        else:
            done.append(cp)
    if problems:
        raise ChunksUnfinished(
            f"entity {load.name} cannot be finished: {'; '.join(problems)}"
            " (run those chunks with `isthmus migrate --entity"
            f" {load.name} --chunk LO:HI`, then finish again)"
        )
    return done


def _check_coverage(ws: Workspace, load: EntityLoad, ranges: Sequence[Chunk]) -> None:
    """ChunksUnfinished when source rows have a key in no chunk (inserted beyond the plan's
    range since, or left in a gap between the chunks)."""
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    spans = [(lo, hi) for lo, hi in merged]
    outside = ws.source.count_keys(load.source_table, load.key_columns[0], spans, inside=False)
    if outside:
        covered = ", ".join(f"{lo}:{hi}" for lo, hi in spans) or "none"
        raise ChunksUnfinished(
            f"entity {load.name} cannot be finished: {outside} source row(s) have keys in no"
            f" chunk (the chunks cover {covered}); migrate a chunk that holds them, or run"
            f" `isthmus migrate --entity {load.name}`"
        )


def _summarise(run: _Run, load: EntityLoad, done: Sequence[MigrationCheckpoint]) -> UUID:
    """The whole-entity checkpoint that records the pass as completed."""
    processed = sum(cp.records_processed for cp in done)
    total = sum(max(cp.records_total or 0, cp.records_processed) for cp in done)
    keys = [k for k in (_as_int(cp.last_processed_id) for cp in done) if k is not None]
    last = str(max(keys)) if keys else None
    with run.ws.engine.begin() as sa:
        summary = run.new_checkpoint(
            sa,
            load,
            total,
            fresh_target=any(bool(cp.metadata.get("fresh_target")) for cp in done),
            chunks=[list(_range(cp)) for cp in done],
            chunk_checkpoints=[str(cp.id) for cp in done],
        )
        run.store.record_progress(
            sa, summary.id, last_processed_id=last, records_processed=processed
        )
        run.store.set_checkpoint_status(sa, summary.id, CheckpointStatus.COMPLETED)
    return summary.id


# -- the command's shapes ----------------------------------------------------------------------


def run_chunked(
    ws: Workspace,
    entity: str,
    *,
    chunk: Chunk | None = None,
    chunks: int | None = None,
    finish: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> MigrationResult:
    """``migrate --chunk LO:HI`` (one chunk), ``--chunks N`` (plan N, run each here in turn,
    skipping those done in this pass, then finish) or ``--finish``."""
    started = time.perf_counter()
    if finish:
        return finish_chunked(ws, entity, batch_size=batch_size)
    if chunk is not None:
        result = migrate_chunk(ws, entity, *chunk, batch_size=batch_size, progress=progress)
        warnings = ws.source.take_warnings()
        with ws.connect_target() as conn:
            open_count = quarantine.count_open(conn, ws.state_schema, [entity])
        return MigrationResult([result], time.perf_counter() - started, warnings, [], open_count)
    planned = plan_chunks(ws, entity, chunks or 1)
    results = [
        migrate_chunk(ws, entity, lo, hi, batch_size=batch_size, progress=progress)
        for lo, hi in planned
    ]
    finished = finish_chunked(ws, entity, planned, batch_size=batch_size)
    return MigrationResult(
        [*results, *finished.entities],
        time.perf_counter() - started,
        finished.warnings,
        finished.pending_ddl,
        finished.open_quarantine,
    )


# -- shared ------------------------------------------------------------------------------------


@contextmanager
def _session(
    ws: Workspace,
    entity: str,
    batch_size: int | None,
    progress: Progress | None,
    chunk: Chunk | None,
) -> Iterator[tuple[_Run, EntityLoad]]:
    """The entity's load and a run on it (a chunk's, or the plain one that finishes)."""
    require_current(ws.engine, ws.state_schema)
    (planned,) = ws.plan.select([entity])
    if not planned.entity.uuid_keyed:
        raise _not_splittable(entity)
    size = batch_size or ws.config.migration.batch_size
    conn = ws.connect_target()
    run: _Run | None = None
    try:
        target_session(conn)
        table = reflect_table(conn, ws.config.target.schema_, planned.entity.target_table)
        load = build_load(planned, table, ws.plan, ws.source.capabilities)
        conn.commit()
        if chunk is None:
            run = _Run(ws, conn, size, progress)
        else:
            label = f"{entity} {chunk[0]}:{chunk[1]}"
            run = _ChunkRun(ws, conn, size, _Labelled(progress, label) if progress else None, chunk)
        yield run, load
    finally:
        conn.close()
        if run is not None:
            run.close()


class _Labelled:
    """Progress under the chunk's name, so that chunks of one entity get bars of their own."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress = progress
        self.label = label

    def start(self, entity: str, total: int, done: int) -> None:
        self.progress.start(self.label, total, done)

    def advance(self, entity: str, rows: int) -> None:
        self.progress.advance(self.label, rows)

    def finish(self, entity: str) -> None:
        self.progress.finish(self.label)


def _chunk_checkpoints(
    store: StateStore, sa: Connection, entity: str, chunk: Chunk | None
) -> list[MigrationCheckpoint]:
    """The newest checkpoint of ``chunk`` (a list of one, or none), or with ``chunk=None``
    the newest of every chunk range the entity ever ran."""
    t = store.checkpoints
    statement = select(t).where(
        t.c.operation_type == OperationType.DIFFERENTIAL_MIGRATION.value,
        t.c.entity_type == entity,
        t.c.job_id.is_(None),
        t.c.metadata.has_key(CHUNK),
    )
    if chunk is not None:
        statement = statement.where(t.c.metadata[CHUNK] == func.jsonb_build_array(*chunk))
        statement = statement.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(1)
    else:  # the same SQL text in both places (bound parameters would differ)
        by_range = t.c.metadata.op("->")(literal_column(f"'{CHUNK}'"))
        statement = statement.order_by(by_range, t.c.created_at.desc(), t.c.id.desc()).ext(
            distinct_on(by_range)
        )
    return [load(MigrationCheckpoint, row) for row in sa.execute(statement)]


def _pass_start(store: StateStore, sa: Connection, entity: str) -> datetime | None:
    """When the entity's newest whole-entity checkpoint began: the current pass is after."""
    latest = store.latest_checkpoint(
        sa, OperationType.DIFFERENTIAL_MIGRATION, entity, without_metadata_key=CHUNK
    )
    return None if latest is None else latest.created_at


def _in_pass(cp: MigrationCheckpoint, start: datetime | None) -> bool:
    """Completed after the pass began."""
    if cp.status != CheckpointStatus.COMPLETED:
        return False
    return start is None or (cp.completed_at is not None and cp.completed_at > start)


def _after_start(cp: MigrationCheckpoint, start: datetime | None) -> bool:
    return start is None or cp.created_at > start


def _range(cp: MigrationCheckpoint) -> Chunk:
    value: Any = cp.metadata[CHUNK]
    return int(value[0]), int(value[1])


def _parked(conn: psycopg.Connection[Any], schema: str, load: EntityLoad) -> bool:
    """Whether the table's keys and indexes are still parked (a bare table being loaded)."""
    statement = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE target_table = %s AND applied_at IS NULL)"
    ).format(sql.Identifier(schema, "pending_ddl"))
    row = conn.execute(statement, (load.target.name,)).fetchone()
    conn.commit()
    return bool(row and row[0])


def _mapped_ints(
    conn: psycopg.Connection[Any], schema: str, entity: str, span: Chunk, limit: int
) -> Iterator[dict[int, int]]:
    """legacy ID → UUID (as an int) of ``entity``'s mappings in ``span``, in key order and
    parts of at most ``_WARM_PAGE``; nothing when there are more than ``limit`` (the cache
    stays bounded: those are then looked up batch by batch)."""
    table = sql.Identifier(schema, "legacy_id_mappings")
    where = sql.SQL("entity_type = %s AND legacy_id BETWEEN %s AND %s")
    count = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, where), (entity, *span)
    ).fetchone()
    if count is None or not 0 < count[0] <= limit:
        return
    page = sql.SQL(
        "SELECT legacy_id, uuid_send(uuid_id) FROM {} WHERE {} ORDER BY legacy_id LIMIT {}"
    ).format(table, where, sql.Literal(_WARM_PAGE))
    low, high = span
    with conn.cursor(binary=True) as cur:
        while low <= high:
            rows = cur.execute(page, (entity, low, high)).fetchall()
            if not rows:
                return
            yield {legacy: int.from_bytes(raw, "big") for legacy, raw in rows}
            low = rows[-1][0] + 1


def _one(conn: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def _as_int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None
