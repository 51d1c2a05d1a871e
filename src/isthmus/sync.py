"""A job's run: compare its entities, apply the differences in the job's direction, record.

A run of a ``manual_sync`` or ``scheduled_sync`` job

1. takes the job's lock (a PostgreSQL advisory lock held by a connection of its own: one run
   per job at a time, across processes and machines; a process that dies drops it) and the
   entity locks that ``migrate`` takes, then moves the job to ``running`` — taking over a
   job left ``running`` by a process that died (its unfinished checkpoints are failed, and
   rows it created in the source without mapping them are matched, :mod:`isthmus.sync_apply`);
2. compares every entity (:func:`isthmus.diff.run_diff`, ``sync_operation`` checkpoints of
   the job; cursors make this cost the changes, not the table);
3. decides per record which way it flows (:mod:`isthmus.sync_rules`), parks records changed
   on both sides in the review queue under a ``manual`` rule (:mod:`isthmus.review`), writes
   and inserts parents first, then deletes children first, in batches of the job's
   ``max_records_per_batch``, one checkpoint per entity and batch; between batches it looks
   at the job's status, so ``jobs pause`` and ``jobs cancel`` stop it at a batch boundary;
4. records the run in the job's statistics and moves it to ``completed`` (a scheduled job
   then back to ``scheduled``, with ``next_run_at`` from its cron).

A ``differential_migration`` job's run is ``migrate`` of its entities.

What isthmus applies is written with the checksum both sides now hold as the mapping's base,
so the next run sees it unchanged on both sides: nothing is echoed back.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg

from isthmus import review, sync_rules
from isthmus.diff import DiffContext, run_diff
from isthmus.errors import IsthmusError, TransientDatabaseError, UsageError, first_line
from isthmus.jobs import VALIDATE_AFTER, next_run
from isthmus.migrate_job import Chunking, run_migration_job
from isthmus.migrate_result import Progress
from isthmus.resolve import Resolution
from isthmus.retry import with_retries
from isthmus.sessions import alive, backoff, database_error, entity_lock_key, retryable, try_lock
from isthmus.state.enums import CheckpointStatus, JobStatus, JobType, OperationType
from isthmus.state.models import STRATEGY_FOR_CONFLICT_RESOLUTION, SynchronizationJob
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.sync_apply import (
    DELETE_PHASES,
    UPSERT_PHASES,
    BatchApplier,
    reconcile_intents,
    settle_mappings,
)
from isthmus.validate import run_validate
from isthmus.workspace import Workspace

_JOB_LOCK_CLASS = 0x15_7A_07  # advisory lock class of "a job being run"
log = logging.getLogger(__name__)
T = TypeVar("T")


class JobBusy(IsthmusError):
    exit_code = 3


@dataclass
class EntitySync:
    entity: str
    method: str = "none"
    found: dict[str, dict[str, int]] = field(default_factory=dict)
    flow: dict[str, int] = field(default_factory=dict)
    parked: int = 0  # new review items
    applied: Resolution | None = None

    def to_dict(self) -> dict[str, Any]:
        applied = self.applied
        return {
            "entity": self.entity,
            "method": self.method,
            "found": self.found,
            "flow": self.flow,
            "parked_for_review": self.parked,
            "written": applied.written if applied else 0,
            "deleted": applied.deleted if applied else 0,
            "failed": (applied.quarantined + applied.left_open) if applied else 0,
            "notes": applied.notes[:20] if applied else [],
        }


@dataclass
class JobRun:
    job: str
    run_id: str
    status: str = "running"
    entities: list[EntitySync] = field(default_factory=list)
    records_synced: int = 0
    records_failed: int = 0
    seconds: float = 0.0
    took_over: bool = False
    reconciled: int = 0
    next_run_at: datetime | None = None
    error: str | None = None
    validation: dict[str, Any] | None = None  # the validation run after it, if the job asks

    @property
    def exit_code(self) -> int:
        if self.status == "failed":
            return 3
        invalid = self.validation is not None and not self.validation["passed"]
        return 1 if self.records_failed or invalid else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run_id": self.run_id,
            "status": self.status,
            "entities": [e.to_dict() for e in self.entities],
            "records_synced": self.records_synced,
            "records_failed": self.records_failed,
            "seconds": round(self.seconds, 3),
            "took_over": self.took_over,
            "reconciled": self.reconciled,
            "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None,
            "error": self.error,
            "validation": self.validation,
        }


def run_job(
    ws: Workspace,
    name: str,
    progress: Progress | None = None,
    chunking: Chunking | None = None,
) -> JobRun:
    """Run the job ``name`` once, here and now (see the module docstring); ``chunking``: a
    worker's way to share a differential_migration's large entities with other workers."""
    store = StateStore(ws.state_schema)

    def read(key: str | UUID) -> SynchronizationJob:
        require_current(ws.engine, ws.state_schema)
        with ws.engine.connect() as sa:
            return store.get_job(sa, key)

    job = _retried(ws, lambda: read(name), "reading the job")
    run = JobRun(job.job_name, uuid_mod.uuid4().hex[:12])
    lock = _retried(ws, lambda: _RunLock(ws, job), "connecting to the target")
    try:
        _retried(ws, lock.take, "taking the job's lock")
        # the job as it is now that no other run can change it (read before, it may show
        # a run that just ended)
        job = _retried(ws, lambda: read(job.id), "reading the job")
        job, run.took_over = _retried(
            ws, lambda: _start(ws, store, job, run.run_id), "starting the run"
        )
        started = time.perf_counter()
        try:
            _execute_retrying(ws, store, job, run, progress=progress, chunking=chunking, lock=lock)
        except BaseException as exc:
            run.seconds = time.perf_counter() - started
            run.status = "failed"
            run.error = first_line(exc)
            _retried(ws, lambda: _finish(ws, store, job, run), "recording the run")
            raise
        run.seconds = time.perf_counter() - started
        if run.status == "completed" and job.metadata.get(VALIDATE_AFTER):
            run.validation = _validate(ws, job)  # still under the job's lock: nothing moves
        _retried(ws, lambda: _finish(ws, store, job, run), "recording the run")
    finally:
        lock.close()
    return run


def _validate(ws: Workspace, job: SynchronizationJob) -> dict[str, Any]:
    """Validate the job's entities after its run; the reports are linked to the job."""
    types = job.metadata.get(VALIDATE_AFTER)
    named = [str(t) for t in types] if isinstance(types, list) else None
    result = run_validate(ws, named, job.entities_to_sync, job_id=job.id)
    return {
        "run_id": str(result.run_id),
        "passed": not result.failed,
        "failed": [f"{c.entity}:{c.validation_type}" for c in result.failed],
        "reports": len(result.reports),
        "seconds": round(result.seconds, 3),
    }


def run_in_progress(conn: psycopg.Connection[Any], job_id: UUID) -> bool:
    """Whether some process holds the job's run lock right now (``conn``: autocommit), i.e.
    a job left ``running`` without it was left so by a process that died."""
    key = (_JOB_LOCK_CLASS, str(job_id))
    if try_lock(conn, key):
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
        return False
    return True


class _RunLock:
    """The job's lock and its entities', held by a connection of their own."""

    def __init__(self, ws: Workspace, job: SynchronizationJob) -> None:
        self.ws = ws
        self.job = job
        self.conn = ws.connect_target(autocommit=True)

    def take(self) -> None:
        if self.conn.closed:  # dropped by a fault: its locks with it
            self.conn = self.ws.connect_target(autocommit=True)
        _lock(self.conn, self.ws, self.job)

    def ensure(self) -> None:
        """After a fault: the locks taken again on a new connection if their session was
        dropped (JobBusy if another process took them meanwhile)."""
        if not alive(self.conn):
            self.conn.close()
            self.conn = self.ws.connect_target(autocommit=True)
            log.warning(
                "job %s: its lock was lost with its session; taking it again", self.job.job_name
            )
            self.take()

    def close(self) -> None:
        self.conn.close()


def _lock(lock: psycopg.Connection[Any], ws: Workspace, job: SynchronizationJob) -> None:
    if not try_lock(lock, (_JOB_LOCK_CLASS, str(job.id))):
        raise JobBusy(f"job {job.job_name} is running in another isthmus process right now")
    if job.job_type == JobType.DIFFERENTIAL_MIGRATION:
        return  # migrate takes each entity's lock itself, as it reaches it
    for entity in job.entities_to_sync:
        if not try_lock(lock, entity_lock_key(ws.state_schema, entity)):
            raise JobBusy(
                f"job {job.job_name}: entity {entity} is being migrated or synced by another "
                "isthmus process right now"
            )


def _start(
    ws: Workspace, store: StateStore, job: SynchronizationJob, run_id: str
) -> tuple[SynchronizationJob, bool]:
    """Move the job to ``running`` (holding its lock); True when it took over a dead run."""
    status = str(job.status)
    if status in ("failed", "cancelled"):
        raise UsageError(
            f"job {job.job_name} is {status}: it cannot run again (a {status} job has no way "
            "out in the job state machine); create a new job"
        )
    metadata = {
        **job.metadata,
        "run": {
            "id": run_id,
            "owner": f"{socket.gethostname()}:{os.getpid()}",
            "started_at": datetime.now(UTC).isoformat(),
        },
    }
    took_over = status == "running"  # we hold the lock: whoever set it is gone
    with ws.engine.begin() as sa:
        if status == "completed":
            store.set_job_status(sa, job.id, JobStatus.SCHEDULED)
        job = store.set_job_status(sa, job.id, JobStatus.RUNNING, metadata=metadata)
        if took_over:
            _fail_orphans(sa, store, job.id, run_id)
    return job, took_over


def _fail_orphans(sa: Any, store: StateStore, job_id: UUID, run_id: str) -> None:
    """Checkpoints a dead run left ``in_progress`` (no process owns them any more)."""
    for checkpoint in store.list_checkpoints(
        sa, job_id=job_id, status=CheckpointStatus.IN_PROGRESS, limit=10_000
    ):
        store.set_checkpoint_status(
            sa,
            checkpoint.id,
            CheckpointStatus.FAILED,
            f"interrupted: its run stopped without finishing; taken over by run {run_id}",
        )


def _retried(ws: Workspace, operation: Callable[[], T], what: str) -> T:
    """``operation`` (one step of a run, safe to repeat) retried with backoff on a transient
    database error, as ``[migration] retries`` says; psycopg's and SQLAlchemy's errors leave
    as isthmus ones."""

    def attempt() -> T:
        try:
            return operation()
        except Exception as exc:
            error = database_error(exc)
            if error is None or error is exc:
                raise
            raise error from exc

    settings = ws.config.migration
    return with_retries(
        attempt, attempts=settings.retries + 1, first_delay=settings.retry_delay, what=what
    )


def _execute_retrying(
    ws: Workspace,
    store: StateStore,
    job: SynchronizationJob,
    run: JobRun,
    *,
    progress: Progress | None,
    chunking: Chunking | None,
    lock: _RunLock,
) -> None:
    """``_execute``; after a transient database error (a dropped connection, a restarted
    server, a deadlock, a timeout) it waits with backoff and does the sync's work again, as
    a run taking over a dead one would (its unfinished checkpoints failed, its intents
    reconciled), up to ``[migration] retries`` times; what a failed attempt committed is not
    found again but still counted. (A differential_migration retries each step itself.)"""
    if job.job_type == JobType.DIFFERENTIAL_MIGRATION:
        _execute(ws, store, job, run, progress, chunking=chunking)
        return
    retries, first_delay = ws.config.migration.retries, ws.config.migration.retry_delay
    attempts = 0
    carried = 0  # records the attempts that failed applied (and committed)
    while True:
        try:
            if attempts:
                lock.ensure()
                with ws.engine.begin() as sa:
                    _fail_orphans(sa, store, job.id, run.run_id)
            _execute(ws, store, job, run, progress, chunking=chunking)
            run.records_synced += carried
            return
        except Exception as exc:
            error = retryable(exc)
            # what it applied is not found again: counted now (what it could not apply is
            # compared again, and counted, by the next attempt)
            done = sum(e.applied.written + e.applied.deleted for e in run.entities if e.applied)
            carried += done
            attempts = 1 if done else attempts + 1  # after progress, a new fault
            if attempts > retries:
                run.records_synced = carried  # the failed run's statistics still say so
                raise TransientDatabaseError(
                    f"job {job.job_name}: {error} (gave up after {retries} retries)"
                ) from exc
            run.entities.clear()
            run.records_synced = run.records_failed = 0
            delay = backoff(first_delay, attempts)
            log.warning(
                "job %s: transient error (attempt %d/%d), running it again in %.1fs: %s",
                job.job_name,
                attempts,
                retries,
                delay,
                error,
            )
            time.sleep(delay)


def _execute(
    ws: Workspace,
    store: StateStore,
    job: SynchronizationJob,
    run: JobRun,
    progress: Progress | None,
    *,
    chunking: Chunking | None = None,
) -> None:
    if job.job_type == JobType.DIFFERENTIAL_MIGRATION:
        result = run_migration_job(
            ws, job.entities_to_sync, job.max_records_per_batch, progress, chunking
        )
        seen = set()
        for entity in result.entities:
            if entity.entity not in seen:  # an entity's chunks and its finish: one line
                seen.add(entity.entity)
                method = "chunks" if entity.entity in result.chunked else "migrate"
                run.entities.append(EntitySync(entity.entity, method=method))
        run.records_synced += result.rows_written
        run.records_failed += result.rows_failed
        run.status = "completed"
        return
    conn = ws.connect_target()
    try:
        _sync(ws, store, conn, job, run, progress=progress)
    finally:
        conn.close()


def _sync(
    ws: Workspace,
    store: StateStore,
    conn: psycopg.Connection[Any],
    job: SynchronizationJob,
    run: JobRun,
    *,
    progress: Progress | None,
) -> None:
    bidirectional = str(job.sync_direction) == "bidirectional"
    rule = str(job.conflict_resolution)
    run.reconciled = reconcile_intents(ws, conn, job.id)
    context = DiffContext(
        operation=OperationType.SYNC_OPERATION,
        job_id=job.id,
        command="sync",
        resolution=STRATEGY_FOR_CONFLICT_RESOLUTION[rule],
    )
    compared = run_diff(ws, job.entities_to_sync, progress, context)

    def should_stop() -> str | None:
        with ws.engine.connect() as sa:
            status = str(store.get_job(sa, job.id).status)
        return status if status in ("paused", "cancelled") else None

    applier = BatchApplier(
        ws, conn, job.id, run.run_id, should_stop, rule=rule, bidirectional=bidirectional
    )
    batch = job.max_records_per_batch
    flows: list[tuple[EntitySync, sync_rules.Flow]] = []
    for diffed in compared.entities:
        entry = EntitySync(diffed.entity, diffed.method, diffed.found.counts())
        entry.applied = Resolution(diffed.checkpoint_id or job.id, diffed.entity, "sync", rule)
        run.entities.append(entry)
        if diffed.skipped or diffed.checkpoint_id is None:
            continue
        flow = sync_rules.flow(diffed.found, bidirectional=bidirectional, rule=rule)
        entry.flow = flow.counts()
        entry.parked = review.park(
            ws,
            conn,
            applier.load(diffed.entity),
            job,
            checkpoint_id=diffed.checkpoint_id,
            items=flow.review,
        )
        flows.append((entry, flow))
    plan: list[tuple[EntitySync, str, list[Any]]] = []
    for entry, flow in flows:  # parents first
        plan.extend((entry, phase, getattr(flow, phase)) for phase in UPSERT_PHASES)
    for entry, flow in reversed(flows):  # children first
        plan.extend((entry, phase, getattr(flow, phase)) for phase in DELETE_PHASES)
    for entry, phase, items in plan:
        assert entry.applied is not None
        stop = applier.apply(entry.entity, phase, items, batch, entry.applied)
        if stop is not None:
            run.status = stop
            break
    else:
        run.status = "completed"
        for diffed in compared.entities:
            settle_mappings(ws, conn, diffed.entity, diffed.found)
    for entry in run.entities:
        if entry.applied:
            run.records_synced += entry.applied.written + entry.applied.deleted
            run.records_failed += entry.applied.quarantined + entry.applied.left_open
    if run.status == "completed":
        _close_differentials(ws, store, compared.entities, run)


def _close_differentials(ws: Workspace, store: StateStore, diffed: list[Any], run: JobRun) -> None:
    """The run's differentials are settled, except where a record could not be applied
    (those stay open and are compared again next run) or waits in the review queue."""
    failed = {e.entity for e in run.entities if e.applied and e.applied.left_open}
    with ws.engine.begin() as sa:
        for entity in diffed:
            if entity.entity in failed:
                continue
            for d in entity.differentials:
                store.mark_differential_resolved(
                    sa, UUID(d["id"]), metadata={"resolution": {"sync_run": run.run_id}}
                )


def _finish(ws: Workspace, store: StateStore, job: SynchronizationJob, run: JobRun) -> None:
    """Statistics and the job's next status. A paused or cancelled job was moved there by
    whoever paused or cancelled it; a failed run fails the job, as the state machine says."""
    duration = int(run.seconds * 1000)
    now = datetime.now(UTC)
    scheduled = job.job_type == JobType.SCHEDULED_SYNC and job.schedule_config
    run.next_run_at = next_run(job.schedule_config, now) if scheduled else None
    with ws.engine.begin() as sa:
        updated = store.record_job_run(
            sa,
            job.id,
            records_synced=run.records_synced,
            records_failed=run.records_failed,
            duration_ms=duration,
            next_run_at=run.next_run_at,
            ran_at=now,
        )
        metadata = {**updated.metadata, "last_run": run.to_dict()}
        metadata.pop("run", None)
        status = str(updated.status)
        if status != "running":  # paused or cancelled meanwhile: it stays so
            store.set_job_status(sa, job.id, status, metadata=metadata)
        elif run.status == "failed":
            store.set_job_status(sa, job.id, JobStatus.FAILED, metadata=metadata)
        else:
            store.set_job_status(sa, job.id, JobStatus.COMPLETED, metadata=metadata)
            if scheduled:
                store.set_job_status(sa, job.id, JobStatus.SCHEDULED)
