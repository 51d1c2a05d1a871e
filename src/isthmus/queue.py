"""The worker queue: procrastinate's tables in the state schema of the target database.

Every isthmus worker, on any machine, that reads the same config shares one queue: the
``procrastinate_*`` tables next to the control tables (``target.state_schema``). Nothing
else is shared, so running workers on several machines needs only the config and a way
to reach the target database.

procrastinate's SQL names its tables, types and functions without a schema (its triggers
too), so every connection it opens gets ``search_path`` set to the state schema through
libpq's ``options``; its schema is applied the same way. :func:`install_queue` applies it once
(``isthmus init``, a worker starting, a run being queued), under an advisory lock so that
several processes starting at once do not apply it twice.

A job run is queued with two locks derived from the job's id (:func:`job_lock`):
``queueing_lock`` keeps at most one run of a job waiting in the queue, ``lock`` keeps a
worker from starting a run while another run of the same job is being executed anywhere.
Behind both, :func:`isthmus.sync.run_job` holds the job's advisory lock for the length of a
run, so a run started outside the queue (``isthmus jobs run``) is never doubled either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import sql

from isthmus.dialects.pgconn import translated
from isthmus.errors import UsageError
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.workspace import Workspace

if TYPE_CHECKING:  # procrastinate is imported only by the commands that use the queue
    from procrastinate import App

RUN_TASK = "isthmus.run_sync_job"
TICK_TASK = "isthmus.queue_due_jobs"
PRUNE_TASK = "isthmus.prune"
CHUNK_TASK = "isthmus.migrate_chunk"  # one key-range chunk of a differential_migration

_INSTALL_LOCK_CLASS = 0x15_7A_08  # advisory lock class of "installing the queue"


def job_lock(job_id: UUID | str) -> str:
    """The procrastinate ``lock`` and ``queueing_lock`` of a synchronization job's runs."""
    return f"isthmus-job:{job_id}"


def connection_options(conninfo: str, schema: str) -> str:
    """libpq ``options`` for a queue connection: the target's own, plus the search path."""
    from psycopg.conninfo import conninfo_to_dict

    own = str(conninfo_to_dict(conninfo).get("options") or "").strip()
    return f"{own} -c search_path={schema}".strip()


def make_app(ws: Workspace, *, pool_size: int = 4) -> App:
    """A procrastinate App (no tasks of its own) on the queue in ``ws``'s state schema."""
    from procrastinate import App, PsycopgConnector

    conninfo = ws.target_conninfo
    connector = PsycopgConnector(
        conninfo=conninfo,
        kwargs={"options": connection_options(conninfo, ws.state_schema)},
        min_size=1,
        max_size=max(pool_size, 2),
        name="isthmus-queue",
    )
    return App(connector=connector)


def installed(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the state schema holds procrastinate's tables. A plain read of pg_class, not
    ``to_regclass``: that one answers from the session's catalog cache, which may still say
    "absent" after another session created the table while this one waited for the lock."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'procrastinate_jobs')",
        (schema,),
    ).fetchone()
    return bool(row and row[0])


def install_queue(ws: Workspace) -> bool:
    """Apply procrastinate's schema in the state schema unless it is there; True when it
    was applied now. The state schema must exist (``isthmus init``)."""
    from procrastinate import __version__ as procrastinate_version
    from procrastinate.schema import SchemaManager

    schema = ws.state_schema
    with translated(), ws.connect_target() as conn:
        if installed(conn, schema):  # the usual case: no lock taken
            conn.rollback()
            return False
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_INSTALL_LOCK_CLASS, schema)
        )
        if installed(conn, schema):  # another process applied it while we waited
            conn.rollback()
            return False
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(SchemaManager.get_schema())
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(schema, "procrastinate_jobs"),
                sql.Literal(f"isthmus worker queue, procrastinate {procrastinate_version}"),
            )
        )
        conn.commit()
    return True


@dataclass(frozen=True)
class QueuedRun:
    """A job run handed to the workers: the procrastinate job that will execute it."""

    job: str
    queue_job_id: int
    already_queued: bool  # a run of this job was waiting already: that one is returned

    exit_code = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "queued": True,
            "queue_job_id": self.queue_job_id,
            "already_queued": self.already_queued,
        }


def defer_run(ws: Workspace, name: str) -> QueuedRun:
    """Queue one run of the job ``name`` for the workers (``jobs run --queue``): at most one
    run of a job waits in the queue, so asking again returns the waiting one."""
    from procrastinate import exceptions

    require_current(ws.engine, ws.state_schema)
    install_queue(ws)
    with ws.engine.connect() as conn:
        job = StateStore(ws.state_schema).get_job(conn, name)
    status = str(job.status)
    if status in ("failed", "cancelled"):
        raise UsageError(
            f"job {job.job_name} is {status}: it cannot run again (a {status} job has no way "
            "out in the job state machine); create a new job"
        )
    lock = job_lock(job.id)
    with make_app(ws, pool_size=1).open() as app:
        for _attempt in range(5):
            deferrer = app.configure_task(RUN_TASK, lock=lock, queueing_lock=lock)
            try:
                queued = deferrer.defer(job_name=job.job_name)
                return QueuedRun(job.job_name, queued, already_queued=False)
            except exceptions.AlreadyEnqueued:
                waiting = app.job_manager.list_jobs(queueing_lock=lock, status="todo")
                if waiting and waiting[0].id is not None:
                    return QueuedRun(job.job_name, waiting[0].id, already_queued=True)
            time.sleep(0.05)  # the waiting one was taken meanwhile: queue ours
    raise UsageError(f"job {job.job_name}: could not queue a run (the queue kept changing)")
