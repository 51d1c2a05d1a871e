"""Differential migration: every selected entity, in plan order, batch by batch, resumable.

For each entity the newest ``differential_migration`` checkpoint decides where to start:
an unfinished one (``in_progress`` left by a killed process, ``paused``, ``failed``) is
resumed after its ``last_processed_id``; a completed one (or none) starts a new pass over
the whole table, which writes only rows that are new or whose checksum changed. A batch's
target rows, mappings, quarantined rows and checkpoint progress commit in one transaction,
so a run killed at any instant loses nothing and duplicates nothing when run again.

References inside cycles (and self-references) are written by a second pass once every
row exists (``references.py``); deferred indexes and constraints go in at the end.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import Connection

from isthmus import quarantine, references
from isthmus.batch_writer import BatchWriter, Outcome
from isthmus.dialects.pgconn import translated
from isthmus.errors import (
    DatabaseError,
    TransientDatabaseError,
    UsageError,
    first_line,
)
from isthmus.loadplan import EntityLoad, build_load
from isthmus.mapping_cache import MappingCache
from isthmus.migrate_result import (
    EntityBusy,
    EntityResult,
    MigrationInterrupted,
    MigrationResult,
    Progress,
)
from isthmus.pipeline import Pipeline, Turn
from isthmus.retry import with_retries
from isthmus.sessions import (
    alive,
    backoff,
    entity_lock_key,
    retryable,
    synchronous,
    target_session,
    try_lock,
)
from isthmus.state.enums import CheckpointStatus, OperationType
from isthmus.state.models import MigrationCheckpoint
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.target import reflect_table
from isthmus.transform import Batch, transform
from isthmus.uuids import make_generator
from isthmus.workspace import Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

_LANES = 2  # connections writing batches at once
_UNFINISHED = {CheckpointStatus.IN_PROGRESS, CheckpointStatus.PAUSED, CheckpointStatus.FAILED}


Lanes = list[tuple[psycopg.Connection[Any], BatchWriter]]


def run_migration(
    ws: Workspace,
    entities: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> MigrationResult:
    config = ws.config
    plan = ws.plan
    selected = plan.select(entities)
    size = batch_size or config.migration.batch_size
    started = time.perf_counter()

    def start() -> _Run:
        require_current(ws.engine, ws.state_schema)
        conn = ws.connect_target()
        try:
            with translated():
                target_session(conn)
            return _Run(ws, conn, size, progress)
        except BaseException:
            conn.close()
            raise

    retries = config.migration
    run = with_retries(
        start,
        attempts=retries.retries + 1,
        first_delay=retries.retry_delay,
        what="connecting to the target",
    )
    conn = run.conn
    # Every step below is safe to run again: a transient fault (a dropped connection, a
    # restarted server, a deadlock, a timeout) is retried by ``run.retrying`` with backoff.
    try:

        def read_loads() -> list[EntityLoad]:
            schema = config.target.schema_
            caps = ws.source.capabilities
            tables = [reflect_table(run.conn, schema, p.entity.target_table) for p in selected]
            run.conn.commit()
            return [build_load(p, t, plan, caps) for p, t in zip(selected, tables, strict=True)]

        loads = run.retrying(read_loads, "reading the target tables")
        run.retrying(lambda: run.check_parents(loads), "reading the checkpoints")
        # Only an entity something points at needs its new mappings cached.
        run.referenced = {
            p.entity.references[c] for p in plan.entities for c in p.entity.references
        }
        results = [run.entity(load) for load in loads]
        # what follows commits rarely: durably, as a crash would otherwise forget it unseen
        run.durable = True
        run.retrying(lambda: synchronous(run.conn), "setting up the session")
        for load, result in zip(loads, results, strict=True):
            if load.deferred:
                result.references_updated = run.retrying(
                    functools.partial(references.link, run, load, result.outcome),
                    f"setting the deferred references of {load.name}",
                )
        pending = run.retrying(run.apply_pending_ddl, "applying the deferred keys and indexes")
        grown = [load for load, r in zip(loads, results, strict=True) if r.outcome.inserted]
        warnings = ws.source.take_warnings()
        try:  # planner statistics help later runs; their lack loses nothing
            run.retrying(lambda: run.analyze(grown), "analyzing the loaded tables")
        except DatabaseError as exc:
            log.warning("statistics not refreshed: %s", exc)
            warnings.append(f"statistics not refreshed: {exc}")
        names = [load.name for load in loads]
        open_count = run.retrying(lambda: run.open_quarantine(names), "counting quarantined rows")
    finally:
        conn.close()
        run.close()
    return MigrationResult(results, time.perf_counter() - started, warnings, pending, open_count)


class _Run:
    """One migrate run: the target connection, the ID cache, the checkpoint store."""

    def __init__(
        self,
        ws: Workspace,
        conn: psycopg.Connection[Any],
        batch_size: int,
        progress: Progress | None,
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.batch_size = batch_size
        self.progress = progress
        self.schema = ws.state_schema
        self.store = StateStore(ws.state_schema)
        self.cache = MappingCache()
        self.cache_lock = threading.Lock()
        self.read_conn = ws.connect_target(autocommit=True)
        self.writers: list[psycopg.Connection[Any]] = []  # the writing lanes besides ``conn``
        self.lock_conn: psycopg.Connection[Any] | None = None
        self.locked: EntityLoad | None = None  # the entity whose lock ``lock_conn`` holds
        self.pass_end: tuple[int, str | None] = (0, None)  # where the last pass committed up to
        self.durable = False  # commit synchronously (the steps after the entities' passes)
        self.referenced: set[str] = set()
        self.known: set[str] = set()  # entities whose mappings the planner knows of
        migration = ws.config.migration
        self.generator = make_generator(migration.uuid, migration.uuid_namespace)
        self.on_orphan = migration.on_orphan
        self.retries = migration.retries
        self.retry_delay = migration.retry_delay

    def check_parents(self, loads: Sequence[EntityLoad]) -> None:
        """Refuse to migrate a child whose parent entity was never migrated: every one of its
        rows would be an orphan. (Parents selected in this run come first, by plan order.)"""
        selected = {load.name for load in loads}
        completed = self._completed_entities()
        for load in loads:
            for parent in sorted(set(load.planned.entity.references.values()) - selected):
                if parent not in completed:
                    raise UsageError(
                        f"entity {load.name} references {parent}, which has not been migrated"
                        f" yet: run `isthmus migrate --entity {parent}` first, or include it"
                    )

    def _completed_entities(self) -> set[str]:
        statement = sql.SQL(
            "SELECT DISTINCT entity_type FROM {} WHERE operation_type = 'differential_migration'"
            " AND job_id IS NULL AND status = 'completed' AND NOT metadata ? 'chunk'"
        ).format(sql.Identifier(self.schema, "migration_checkpoints"))
        rows = self.conn.execute(statement).fetchall()
        self.conn.commit()
        return {str(r[0]) for r in rows}

    def close(self) -> None:
        for conn in [self.read_conn, self.conn, *self.writers, self.lock_conn]:
            if conn is not None:
                conn.close()

    def retrying(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation`` (a step that is safe to run again); on a transient database
        error wait with backoff, drop the connections the fault may have broken, and run it
        again on new ones, up to ``[migration] retries`` times. Any other database error leaves as a
        clear isthmus error."""
        attempts = 0
        while True:
            try:
                if attempts:
                    self._heal()
                return operation()
            except Exception as exc:
                error = retryable(exc)
                attempts += 1
                self._recover(error, attempts, what)

    def _heal(self) -> None:
        """Before an attempt that follows a fault: new connections for those ``_recover``
        closed, and the entity's lock taken again if its session was lost."""
        if self.conn.closed:
            conn = self.ws.connect_target()
            target_session(conn)
            if self.durable:
                synchronous(conn)
            self.conn = conn
        if self.read_conn.closed:
            self.read_conn = self.ws.connect_target(autocommit=True)
        if self.locked is not None and not alive(self.lock_conn):
            if self.lock_conn is not None:
                self.lock_conn.close()
            log.warning(
                "the lock of entity %s was lost with its session: taking it again", self.locked.name
            )
            self._lock(self.locked)

    def resolve(self, parent: str, ids: Sequence[int]) -> dict[int, bytes]:
        """Parents' UUIDs for the reading thread: its own connection (the writer thread owns
        ``conn``), and the cache under a lock (the writer adds the new mappings)."""
        with self.cache_lock:
            if self.read_conn.closed or self.read_conn.broken:
                self.read_conn = self.ws.connect_target(autocommit=True)
            return self.cache.resolve_hex(self.read_conn, self.schema, parent, ids)

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, load: EntityLoad) -> tuple[MigrationCheckpoint, bool]:
        """The checkpoint to continue (True) or a new one for a new pass (False)."""
        with self.ws.engine.begin() as sa:
            latest = self.store.latest_checkpoint(  # the whole entity's, not a chunk's
                sa, OperationType.DIFFERENTIAL_MIGRATION, load.name, without_metadata_key="chunk"
            )
            if latest is not None and latest.status in _UNFINISHED:
                if latest.status != CheckpointStatus.IN_PROGRESS:
                    latest = self.store.set_checkpoint_status(
                        sa, latest.id, CheckpointStatus.IN_PROGRESS
                    )
                return latest, True
        total = self.ws.source.count(load.source_table)
        fresh = self._target_is_empty(load)
        with self.ws.engine.begin() as sa:
            checkpoint = self.new_checkpoint(sa, load, total, fresh_target=fresh)
        return checkpoint, False

    def new_checkpoint(
        self, sa: Connection, load: EntityLoad, total: int | None, **metadata: Any
    ) -> MigrationCheckpoint:
        """A new ``in_progress`` migration checkpoint of ``load``: its tables and
        ``metadata`` recorded with it."""
        checkpoint = self.store.create_checkpoint(
            sa,
            operation_type=OperationType.DIFFERENTIAL_MIGRATION,
            entity_type=load.name,
            batch_size=self.batch_size,
            records_total=total,
            metadata={
                "source_table": load.source_table,
                "target_table": f"{load.target.schema}.{load.target.name}",
                **metadata,
            },
        )
        return self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.IN_PROGRESS)

    def _target_is_empty(self, load: EntityLoad) -> bool:
        statement = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(
            sql.Identifier(load.target.schema, load.target.name)
        )
        row = self.conn.execute(statement).fetchone()
        self.conn.commit()
        return bool(row and row[0])

    def _set_status(
        self, checkpoint_id: UUID, status: CheckpointStatus, error: str | None = None
    ) -> None:
        with self.ws.engine.begin() as sa:
            self.store.set_checkpoint_status(sa, checkpoint_id, status, error)

    def _progress_statement(self) -> sql.Composed:
        return sql.SQL(
            "UPDATE {} SET last_processed_id = %s, records_processed = %s,"
            " records_total = greatest(coalesce(records_total, 0), %s) WHERE id = %s"
        ).format(sql.Identifier(self.schema, "migration_checkpoints"))

    # -- one entity ----------------------------------------------------------------------------

    def entity(self, load: EntityLoad) -> EntityResult:
        result = EntityResult(
            load.name, load.source_table, f"{load.target.schema}.{load.target.name}"
        )
        started = time.perf_counter()
        self.retrying(lambda: self._lock(load), f"taking the lock of entity {load.name}")
        self.locked = load
        try:
            checkpoint, resumed = self.retrying(
                lambda: self._checkpoint(load), f"reading the checkpoint of {load.name}"
            )
            result.checkpoint_id = checkpoint.id
            result.resumed_after = checkpoint.last_processed_id if resumed else None
            try:
                self._pass(load, checkpoint, result)
                self._complete(load, checkpoint.id, result)
            except KeyboardInterrupt:
                self._interrupted(checkpoint.id, load)
            except Exception as exc:
                self._failed(checkpoint.id, exc)
                raise
        finally:
            self.locked = None
            self._unlock(load)
            result.seconds = time.perf_counter() - started
            if self.progress:
                self.progress.finish(load.name)
        return result

    def _pass(
        self, load: EntityLoad, checkpoint: MigrationCheckpoint, result: EntityResult
    ) -> None:
        processed = checkpoint.records_processed
        last = checkpoint.last_processed_id
        total = checkpoint.records_total or 0
        fresh = bool(checkpoint.metadata.get("fresh_target"))
        if self.progress:
            self.progress.start(load.name, total, processed)
        attempts = 0
        committed = result.rows_read  # rows committed when the last fault came
        while True:
            pipeline: Pipeline[tuple[Batch, str, int]] | None = None
            try:
                if attempts:  # after a fault: new connections, and where the last commit left it
                    self._heal()
                    processed, last = self._reread(checkpoint.id)
                lanes = self._lanes(load, fresh)
                pipeline = self._pipeline(load, checkpoint, result, lanes)
                after, upto = self._bounds(load, last)
                for columns in self.ws.source.stream_columns(
                    load.source_table,
                    load.read_columns,
                    load.key_columns,
                    after=after,
                    upto=upto,
                    batch_size=self.batch_size,
                ):
                    batch = transform(load, columns, self.resolve)
                    last = _last_key(load, batch.keys[-1], batch.rows[len(batch) - 1])
                    processed += len(batch)
                    pipeline.submit((batch, last, processed))
                pipeline.close()
                self.pass_end = (processed, last)
                return
            except BaseException as exc:
                if pipeline is not None:
                    pipeline.abort()
                error = retryable(exc)
                if result.rows_read > committed:  # batches went in since the last fault:
                    attempts = 0  # this is a new one (a submitted batch is not progress)
                    committed = result.rows_read
                attempts += 1
                self._recover(error, attempts, f"migrating {load.name}")

    def _pipeline(
        self,
        load: EntityLoad,
        checkpoint: MigrationCheckpoint,
        result: EntityResult,
        lanes: Lanes,
    ) -> Pipeline[tuple[Batch, str, int]]:
        """Writes each submitted batch on a lane, committing them in order."""

        def write(job: tuple[Batch, str, int], lane: int, turn: Turn) -> None:
            batch, last_key, done = job
            conn, writer = lanes[lane]
            outcome = self._commit_batch(
                conn=conn,
                writer=writer,
                batch=batch,
                turn=turn,
                checkpoint_id=checkpoint.id,
                last=last_key,
                processed=done,
            )
            # counted first: committed, the batch is done even if what follows fails
            result.rows_read += len(batch)
            result.outcome.add(outcome)
            if self.progress:
                self.progress.advance(load.name, len(batch))
            if outcome.new_mappings and load.name in self.referenced:
                with self.cache_lock:
                    self.cache.put_ints(load.name, outcome.new_mappings)
            if outcome.inserted and load.name not in self.known:
                self._make_known(load.name)

        return Pipeline(write, lanes=len(lanes), name=load.name)

    def _bounds(
        self, load: EntityLoad, last: str | None
    ) -> tuple[Sequence[Any] | None, Sequence[Any] | None]:
        """The keys a pass reads: after ``last`` (where it stands), to the end of the table."""
        return _after(load, last), None

    def _make_known(self, entity: str) -> None:
        """Statistics of the map taken before an entity had mappings (an earlier run's
        ANALYZE) say it has none: the planner then reads each batch's mappings through the
        other index, scanning all of the entity's so far. One ANALYZE (a sample, well under a
        second) once its first batch is in sets that right; never analyzed is fine too."""
        self.known.add(entity)
        statement = sql.SQL(
            "SELECT NOT (most_common_vals::text::text[] @> ARRAY[%s]) FROM pg_stats"
            " WHERE schemaname = %s AND tablename = 'legacy_id_mappings'"
            " AND attname = 'entity_type'"
        )
        try:
            with self.ws.connect_target(autocommit=True) as conn:
                row = conn.execute(statement, (entity, self.schema)).fetchone()
                if row is not None and row[0] is not False:
                    conn.execute(
                        sql.SQL("ANALYZE {}").format(
                            sql.Identifier(self.schema, "legacy_id_mappings")
                        )
                    )
        except (psycopg.Error, DatabaseError) as exc:  # an optimisation: never worth a retry
            log.debug("ANALYZE of the mappings for %s skipped: %s", entity, exc)

    def _lanes(
        self, load: EntityLoad, fresh: bool
    ) -> list[tuple[psycopg.Connection[Any], BatchWriter]]:
        """A connection and a writer per writing thread: PostgreSQL works on two batches at
        once (the mapping table's three indexes make its side the slower one)."""
        self._heal()
        while len(self.writers) < _LANES:
            conn = self.ws.connect_target()
            target_session(conn)
            self.writers.append(conn)
        lanes = []
        for conn in [self.conn, *self.writers[: _LANES - 1]]:
            writer = BatchWriter(
                conn,
                load,
                state_schema=self.schema,
                generator=self.generator,
                on_orphan=self.on_orphan,
                fresh=fresh,
            )
            conn.commit()
            lanes.append((conn, writer))
        return lanes

    def _commit_batch(
        self,
        *,
        conn: psycopg.Connection[Any],
        writer: BatchWriter,
        batch: Batch,
        turn: Turn,
        checkpoint_id: UUID,
        last: str,
        processed: int,
    ) -> Outcome:
        try:
            # Opens the transaction, so the writer's blocks are savepoints inside it.
            conn.execute("SET LOCAL synchronous_commit = off")
            outcome = writer.write(batch, _batch_id(checkpoint_id, processed), checkpoint_id)
            with turn:  # every earlier batch has committed: this one may
                conn.execute(
                    self._progress_statement(),
                    (last, processed, processed, checkpoint_id),
                    prepare=True,  # once per batch, on the same connection: plan it once
                )
                conn.commit()
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
            raise
        return outcome

    def _recover(self, exc: TransientDatabaseError, attempts: int, what: str) -> None:
        """After a transient fault while doing ``what``: give up once ``[migration] retries``
        retries failed too (the checkpoint keeps where the run stands), else wait with backoff and
        close the data connections, which may look fine while their server session is gone
        (``_heal`` and ``_lanes`` open new ones; the lock's is checked by ``_heal``)."""
        if attempts > self.retries:
            raise type(exc)(
                f"{what}: {exc} (gave up after {self.retries} retries; the next run resumes"
                " from the checkpoint)"
            ) from exc
        delay = backoff(self.retry_delay, attempts)
        log.warning(
            "%s: transient error (attempt %d/%d), resuming in %.1fs: %s",
            what,
            attempts,
            self.retries,
            delay,
            exc,
        )
        time.sleep(delay)
        for conn in [self.conn, self.read_conn, *self.writers]:
            conn.close()
        self.writers = []

    def _complete(self, load: EntityLoad, checkpoint_id: UUID, result: EntityResult) -> None:
        """Mark the pass's checkpoint completed, in one transaction with the check that it
        still stands where the pass ended. Batches commit with ``synchronous_commit = off``:
        a server that crashed and came back may have forgotten the last ones, even though
        the run saw them commit and reconnected since (or never noticed: a pooled
        connection is replaced silently). Then the pass goes on from the checkpoint as the
        server has it. The completion's own commit is synchronous, so it makes every batch
        before it durable."""
        for _ in range(self.retries + 1):
            if self.retrying(
                lambda: self._completed_at(checkpoint_id, *self.pass_end),
                f"completing the checkpoint of {load.name}",
            ):
                return
            log.warning(
                "%s: the target forgot its last batches (did the server restart?): migrating"
                " them again",
                load.name,
            )
            current = self.retrying(
                lambda: self._get_checkpoint(checkpoint_id),
                f"reading the checkpoint of {load.name}",
            )
            self._pass(load, current, result)
        raise TransientDatabaseError(
            f"migrating {load.name}: the target keeps forgetting committed batches"
        )

    def _completed_at(self, checkpoint_id: UUID, processed: int, last: str | None) -> bool:
        """Complete the checkpoint if it says ``processed`` rows up to ``last``; False if it
        says less (the server forgot batches)."""
        with self.ws.engine.begin() as sa:
            current = self.store.get_checkpoint(sa, checkpoint_id)
            if current.status == CheckpointStatus.COMPLETED:
                return True  # done by an attempt whose answer was lost with its connection
            if (current.records_processed, current.last_processed_id) != (processed, last):
                return False
            self.store.set_checkpoint_status(sa, checkpoint_id, CheckpointStatus.COMPLETED)
        return True

    def _get_checkpoint(self, checkpoint_id: UUID) -> MigrationCheckpoint:
        with self.ws.engine.connect() as sa:
            return self.store.get_checkpoint(sa, checkpoint_id)

    def _reread(self, checkpoint_id: UUID) -> tuple[int, str | None]:
        with self.ws.engine.connect() as sa:
            checkpoint = self.store.get_checkpoint(sa, checkpoint_id)
        return checkpoint.records_processed, checkpoint.last_processed_id

    def _interrupted(self, checkpoint_id: UUID, load: EntityLoad) -> None:
        self.conn.close()
        for conn in self.writers:
            conn.close()
        self._set_status(checkpoint_id, CheckpointStatus.PAUSED)
        _, last = self._reread(checkpoint_id)
        where = f"after key {last}" if last else "at the start"
        raise MigrationInterrupted(
            f"interrupted: {load.name} paused {where}; run `isthmus migrate` again to resume"
        )

    def _failed(self, checkpoint_id: UUID, exc: Exception) -> None:
        try:
            self._set_status(checkpoint_id, CheckpointStatus.FAILED, first_line(exc)[:2000])
        except Exception:  # the original error matters more than this one
            log.debug("could not mark checkpoint %s failed", checkpoint_id, exc_info=True)

    # -- locks, DDL, quarantine ---------------------------------------------------------------

    def _lock_key(self, load: EntityLoad) -> tuple[int, str]:
        return entity_lock_key(self.schema, load.name)

    def _lock(self, load: EntityLoad) -> None:
        """A session advisory lock on a connection of its own (one that nothing else uses,
        so no reconnect can drop it); released by ``_unlock`` or when the process dies."""
        if self.lock_conn is None or self.lock_conn.closed:
            self.lock_conn = self.ws.connect_target(autocommit=True)
        if not try_lock(self.lock_conn, self._lock_key(load)):
            raise EntityBusy(
                f"entity {load.name} is being migrated by another isthmus process right now"
            )

    def _unlock(self, load: EntityLoad) -> None:
        if self.lock_conn is None or self.lock_conn.closed:
            return  # a closed session holds no locks
        cls, name = self._lock_key(load)
        try:
            self.lock_conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (cls, name))
        except psycopg.Error:
            log.debug("unlocking %s failed", name, exc_info=True)

    def apply_pending_ddl(self) -> list[dict[str, Any]]:
        from isthmus import target_ddl

        loaded = self._completed_tables()
        results = target_ddl.apply_pending_ddl(self.conn, self.schema, loaded)
        self.conn.commit()
        return [r.to_dict() for r in results]

    def _completed_tables(self) -> set[str]:
        statement = sql.SQL(
            "SELECT DISTINCT ON (entity_type) metadata->>'target_table', status FROM {}"
            " WHERE operation_type = 'differential_migration' AND job_id IS NULL"
            " AND NOT metadata ? 'chunk' ORDER BY entity_type, created_at DESC"
        ).format(sql.Identifier(self.schema, "migration_checkpoints"))
        rows = self.conn.execute(statement).fetchall()
        self.conn.commit()
        return {str(r[0]).split(".", 1)[-1] for r in rows if r[0] and r[1] == "completed"}

    def analyze(self, loads: Sequence[EntityLoad]) -> None:
        """Fresh planner statistics for the tables that grew: a bulk load outruns autovacuum,
        and a map the planner thinks empty makes every later diff and lookup scan it. The
        map is vacuumed too, so that key counts read its index alone."""
        if not loads:
            return
        tables = [sql.Identifier(load.target.schema, load.target.name) for load in loads]
        with self.ws.connect_target(autocommit=True) as conn:  # VACUUM runs outside a block
            conn.execute(
                sql.SQL("VACUUM (ANALYZE) {}").format(
                    sql.Identifier(self.schema, "legacy_id_mappings")
                )
            )
            for table in tables:
                conn.execute(sql.SQL("ANALYZE {}").format(table))

    def open_quarantine(self, entities: Sequence[str]) -> int:
        count = quarantine.count_open(self.conn, self.schema, entities)
        self.conn.commit()
        return count


def _after(load: EntityLoad, last: str | None) -> Sequence[Any] | None:
    if last is None:
        return None
    if load.uuid_keyed:
        try:
            return (int(last),)
        except ValueError:  # SQLite: a text value in an integer key column sorts last
            return (last,)
    return tuple(json.loads(last))


def _last_key(load: EntityLoad, key: Any, row: Sequence[bytes]) -> str:
    if load.uuid_keyed:
        if key is None:  # an unreadable key still moves the cursor past its row
            from isthmus.copytext import unescape

            return unescape(row[0]).decode("utf-8", "replace")
        return str(key)
    return json.dumps(list(key), ensure_ascii=False)


def _batch_id(checkpoint_id: UUID, processed: int) -> str:
    """``migration_batch``: the checkpoint (its first 12 hex digits) and the rows done so far."""
    return f"{checkpoint_id.hex[:12]}:{processed}"
