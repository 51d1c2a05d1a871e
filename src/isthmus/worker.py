"""``isthmus worker``: executes job runs from the queue, queues cron-scheduled jobs when they
are due, and prunes history once a day.

The queue is procrastinate's, in the state schema of the target database
(:mod:`isthmus.queue`); any number of workers on any number of machines share it. Three tasks:

- ``isthmus.run_sync_job(job_name, due_at=None)``: one run of a job
  (:func:`isthmus.sync.run_job`, in a fresh :class:`~isthmus.workspace.Workspace` of the
  worker's config). Queued with the job's ``lock`` and ``queueing_lock``, so a job never has
  two runs waiting nor two runs executing at once, whatever the number of workers. A run
  that finds the job's advisory lock taken anyway (``JobBusy``: a run started by
  ``isthmus jobs run`` in another process, or another job holding one of its entities) is
  skipped, successfully, and logged; one asked for by hand is queued again for
  :data:`BUSY_RETRY_SECONDS` later, one queued by the schedule is queued again by the next
  tick while its job is due. A run queued by the schedule carries the ``next_run_at`` it was
  queued for and is skipped if the job has run since (or was paused or cancelled).
- ``isthmus.queue_due_jobs``: a procrastinate periodic task, every :data:`TICK_SECONDS`
  seconds (every worker tries to queue it; the database keeps one per tick). It queues a
  run of every ``scheduled_sync`` job whose ``next_run_at`` has come (also of one left
  ``running`` by a process that died: its run takes over), puts back in the queue the
  tasks of workers that stopped sending heartbeats (killed mid-run: their ``lock`` would
  otherwise hold the job forever), and deletes its own finished predecessors.
- ``isthmus.prune``: :func:`isthmus.prune.run_prune`, daily at :data:`PRUNE_CRON` (UTC).

Stopping: the first SIGINT or SIGTERM stops taking work and waits for the runs in progress
to finish; a second one exits at once (a run cut short is taken over by the job's next
run: batches are atomic, nothing is lost or duplicated).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from isthmus import jobs, queue, target_pool
from isthmus.config import Config
from isthmus.errors import first_line
from isthmus.migrate_job import Chunking, run_one_chunk
from isthmus.prune import run_prune
from isthmus.state.enums import JobStatus
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.sync import JobBusy, run_in_progress, run_job
from isthmus.workspace import Workspace

if TYPE_CHECKING:
    from procrastinate import App

TICK_SECONDS = 10
TICK_CRON = f"* * * * * */{TICK_SECONDS}"  # croniter (and procrastinate): a sixth field is seconds
PRUNE_CRON = "0 3 * * *"
BUSY_RETRY_SECONDS = 10  # a run asked for by hand waits this long when its job is busy
FETCH_POLLING_SECONDS = 2.0
RUN_CONNECTIONS = 3  # pooled state-store connections per concurrent run (isthmus.target_pool)

log = logging.getLogger("isthmus.worker")


@dataclass
class WorkerStats:
    """What this worker did; tasks run in threads, hence the lock."""

    runs: int = 0  # runs executed to the end
    failed: int = 0  # runs that raised
    busy: int = 0  # runs skipped: the job (or one of its entities) was locked
    skipped: int = 0  # scheduled runs no longer due when their turn came
    queued: int = 0  # runs this worker queued because their job was due
    recovered: int = 0  # queue jobs of dead workers put back
    pruned: int = 0  # prune passes
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def to_dict(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in ("runs", "failed", "busy", "skipped", "queued", "recovered", "pruned")
        }


@dataclass
class WorkerResult:
    name: str
    concurrency: int
    once: bool
    stopped: str  # "signal" or "queue empty"
    stats: WorkerStats

    @property
    def exit_code(self) -> int:
        return 3 if self.once and self.stats.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.name,
            "concurrency": self.concurrency,
            "once": self.once,
            "stopped": self.stopped,
            **self.stats.to_dict(),
        }


@dataclass(frozen=True)
class DueRun:
    job: str
    job_id: UUID
    due_at: str  # the job's next_run_at, ISO 8601, when it was found due
    takeover: bool  # left running by a process that died


def due_runs(ws: Workspace, now: datetime | None = None) -> list[DueRun]:
    """Scheduled jobs whose ``next_run_at`` has come, and scheduled jobs left ``running``
    past it by a process that died (nobody holds their run lock)."""
    due = jobs.due_jobs(ws, now, statuses=(JobStatus.SCHEDULED, JobStatus.RUNNING))
    found = [
        DueRun(j.job_name, j.id, j.next_run_at.isoformat(), takeover=False)
        for j in due
        if j.status == JobStatus.SCHEDULED and j.next_run_at is not None
    ]
    stuck = [j for j in due if j.status == JobStatus.RUNNING]
    if stuck:
        with ws.connect_target(autocommit=True) as conn:
            for j in stuck:
                if j.next_run_at is not None and not run_in_progress(conn, j.id):
                    found.append(DueRun(j.job_name, j.id, j.next_run_at.isoformat(), True))
    return found


def _not_due(ws: Workspace, name: str, due_at: str) -> str | None:
    """Why a run queued by the schedule for ``due_at`` should not run now, if it should not."""
    with ws.engine.connect() as conn:
        job = StateStore(ws.state_schema).get_job(conn, name)
    status = str(job.status)
    if status not in (JobStatus.SCHEDULED, JobStatus.RUNNING):
        return f"it is {status}"
    if job.next_run_at is None or job.next_run_at.isoformat() != due_at:
        return "it has run since it was queued"
    return None


def execute_run(
    config: Config,
    stats: WorkerStats,
    job_name: str,
    due_at: str | None,
    requeue: Callable[[], bool] | None = None,
    *,
    chunking: Chunking | None = None,
) -> Any:
    """The body of ``isthmus.run_sync_job``. A run asked for by hand (``due_at`` None) that
    finds its job busy is put back in the queue for later (``requeue``); a scheduled one is
    queued again by the next tick while its job is due."""
    with Workspace(config) as ws:
        if due_at is not None:
            reason = _not_due(ws, job_name, due_at)
            if reason:
                log.info("job %s: scheduled run skipped: %s", job_name, reason)
                stats.add(skipped=1)
                return {"job": job_name, "skipped": reason}
        try:
            run = run_job(ws, job_name, chunking=chunking)
        except JobBusy as exc:
            again = due_at is None and requeue is not None and requeue()
            log.warning(
                "%s: this run is skipped%s",
                exc,
                f" and queued again in {BUSY_RETRY_SECONDS} s" if again else "",
            )
            stats.add(busy=1)
            return {"job": job_name, "skipped": "busy"}
        except BaseException as exc:
            log.error("job %s: run failed: %s", job_name, first_line(exc))
            stats.add(failed=1)
            raise
    stats.add(runs=1)
    log.info(
        "job %s run %s: %s, %d record(s) applied, %d failed, %.2f s",
        run.job,
        run.run_id,
        run.status,
        run.records_synced,
        run.records_failed,
        run.seconds,
    )
    return {"job": run.job, "run_id": run.run_id, "status": run.status}


def execute_prune(config: Config, stats: WorkerStats) -> Any:
    """The body of ``isthmus.prune``."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        result = run_prune(ws)
    stats.add(pruned=1)
    log.info("pruned %d row(s) of history older than %d days", result.total, result.days)
    return result.to_dict()


def share_chunks(app: App) -> Chunking:
    """How a differential_migration run shares its large entities' chunks with the other
    workers: each chunk a task of the queue (at most one waiting per chunk), and those
    nobody took withdrawn once the entity is finished."""
    from procrastinate import exceptions

    def defer(entity: str, lo: int, hi: int, batch_size: int) -> object:
        deferrer = app.configure_task(
            queue.CHUNK_TASK, queueing_lock=f"isthmus-chunk:{entity}:{lo}:{hi}"
        )
        try:
            return deferrer.defer(entity=entity, lo=lo, hi=hi, batch_size=batch_size)
        except exceptions.AlreadyEnqueued:
            return None

    def withdraw(handles: Sequence[object]) -> None:
        for handle in handles:
            if isinstance(handle, int):
                app.job_manager.cancel_job_by_id(handle, delete_job=True)

    return Chunking(defer, withdraw)


async def queue_due(app: App, config: Config, stats: WorkerStats) -> int:
    """Queue a run of every due job (a job with a run waiting already is left alone)."""
    from procrastinate import exceptions

    def find() -> list[DueRun]:
        with Workspace(config) as ws:
            return due_runs(ws)

    queued = 0
    for run in await asyncio.to_thread(find):
        lock = queue.job_lock(run.job_id)
        deferrer = app.configure_task(queue.RUN_TASK, lock=lock, queueing_lock=lock)
        try:
            await deferrer.defer_async(job_name=run.job, due_at=run.due_at)
        except exceptions.AlreadyEnqueued:
            continue
        queued += 1
        log.info(
            "job %s is due (%s)%s: queued",
            run.job,
            run.due_at,
            ", left running by a process that stopped" if run.takeover else "",
        )
    stats.add(queued=queued)
    return queued


async def recover_stalled(app: App, own: int | None, stats: WorkerStats) -> int:
    """Queue jobs left ``doing`` by workers that stopped sending heartbeats: back to the
    queue (or, when a run of the same job waits there already, failed)."""
    from procrastinate import exceptions
    from procrastinate.jobs import Status

    manager = app.job_manager
    recovered = 0
    for job in await manager.get_stalled_jobs():
        if job.id is None or job.id == own:
            continue
        try:
            await manager.retry_job(job)
            outcome = "queued again"
        except exceptions.ConnectorException:
            if await manager.get_job_status_async(job.id) != Status.DOING:
                continue  # another tick dealt with it meanwhile
            await manager.finish_job_by_id_async(
                job_id=job.id, status=Status.FAILED, delete_job=False
            )
            outcome = "failed (a run of the same job waits already)"
        recovered += 1
        log.warning(
            "queue job %s (%s) was left running by a worker that stopped: %s",
            job.id,
            job.call_string,
            outcome,
        )
    stats.add(recovered=recovered)
    return recovered


async def _forget_ticks(app: App, own: int | None) -> None:
    """The tick runs every few seconds: its finished predecessors are of no interest."""
    await app.connector.execute_query_async(
        query="DELETE FROM procrastinate_jobs WHERE task_name = %(task)s"
        " AND status = 'succeeded' AND id < %(own)s",
        task=queue.TICK_TASK,
        own=own or 0,
    )


def build_app(
    ws: Workspace, stats: WorkerStats | None = None, *, periodic: bool = True, pool_size: int = 4
) -> App:
    """The procrastinate App of the workers of ``ws``'s config, with isthmus's tasks (and,
    with ``periodic``, the due-jobs tick and the daily prune as periodic tasks)."""
    from procrastinate import JobContext, exceptions

    app = queue.make_app(ws, pool_size=pool_size)
    config = ws.config
    counts = stats or WorkerStats()

    @app.task(name=queue.RUN_TASK, pass_context=True)
    def run_sync_job(context: JobContext, job_name: str, due_at: str | None = None) -> Any:
        this = context.job

        def requeue() -> bool:
            deferrer = app.configure_task(
                queue.RUN_TASK,
                lock=this.lock,
                queueing_lock=this.queueing_lock,
                schedule_in={"seconds": BUSY_RETRY_SECONDS},
            )
            try:
                deferrer.defer(job_name=job_name)
            except exceptions.AlreadyEnqueued:
                return False  # a run of the job waits in the queue already
            return True

        return execute_run(config, counts, job_name, due_at, requeue, chunking=share_chunks(app))

    @app.task(name=queue.CHUNK_TASK)
    def migrate_chunk(entity: str, lo: int, hi: int, batch_size: int) -> Any:
        with Workspace(config) as chunk_ws:
            status = run_one_chunk(chunk_ws, entity, lo, hi, batch_size)
        return {"entity": entity, "chunk": [lo, hi], "status": status}

    @app.task(name=queue.PRUNE_TASK, lock=queue.PRUNE_TASK, queueing_lock=queue.PRUNE_TASK)
    def prune(timestamp: int) -> Any:
        return execute_prune(config, counts)

    # no ``lock`` on the tick: a tick left ``doing`` by a dead worker must not keep the next
    # ones (which recover it) from running; two ticks at once are harmless
    @app.task(name=queue.TICK_TASK, queueing_lock=queue.TICK_TASK, priority=100, pass_context=True)
    async def queue_due_jobs(context: JobContext, timestamp: int) -> Any:
        own = context.job.id
        queued = await queue_due(app, config, counts)
        recovered = await recover_stalled(app, own, counts)
        await _forget_ticks(app, own)
        return {"queued": queued, "recovered": recovered}

    if periodic:
        app.periodic(cron=PRUNE_CRON, periodic_id="daily")(prune)
        app.periodic(cron=TICK_CRON, periodic_id="due-jobs")(queue_due_jobs)
    return app


def run_worker(config: Config, concurrency: int = 1, once: bool = False) -> WorkerResult:
    """Execute queued runs (``concurrency`` at a time) until stopped by a signal; with
    ``once``, queue the due jobs, execute what is in the queue and return when it is empty
    (no periodic tasks then: the daily prune is ``isthmus prune``'s job)."""
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    stats = WorkerStats()
    name = f"isthmus@{socket.gethostname()}:{os.getpid()}"
    # runs share the process's pool of state-store connections (isthmus.target_pool)
    target_pool.enable(max_size=RUN_CONNECTIONS * concurrency + 2)
    try:
        with Workspace(config) as ws:
            require_current(ws.engine, ws.state_schema)
            queue.install_queue(ws)
            app = build_app(ws, stats, periodic=not once, pool_size=concurrency + 3)
            stopped = asyncio.run(
                _serve(app, config, stats, name=name, concurrency=concurrency, once=once)
            )
    finally:
        target_pool.close_all()
    return WorkerResult(name, concurrency, once, stopped, stats)


async def _serve(
    app: App, config: Config, stats: WorkerStats, *, name: str, concurrency: int, once: bool
) -> str:
    loop = asyncio.get_running_loop()
    async with app.open_async():
        if once:
            # no periodic tick here: put back what dead workers left ``doing`` (a killed
            # `worker --once` too), or its job's lock would keep every later run out
            await recover_stalled(app, None, stats)
            await queue_due(app, config, stats)
        runner = asyncio.create_task(
            app.run_worker_async(
                name=name,
                concurrency=concurrency,
                wait=not once,
                listen_notify=not once,
                fetch_job_polling_interval=FETCH_POLLING_SECONDS,
                install_signal_handlers=False,
            )
        )
        stopping = threading.Event()

        def on_signal(signame: str) -> None:
            if not stopping.is_set():
                stopping.set()
                log.warning(
                    "%s: stopping once the runs in progress finish (again: stop at once)",
                    signame,
                )
                runner.cancel()
                return
            sys.stderr.write(
                "isthmus: stopped at once; a run cut short is taken over by its job's next run\n"
            )
            sys.stderr.flush()
            os._exit(130)

        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig.name)
                handled.append(sig)
        try:
            await runner
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
            return "signal"
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
    return "queue empty" if once else "stopped"
