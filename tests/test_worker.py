"""``isthmus worker`` against real databases: the queue lives in the state schema, a
cron-scheduled job runs through a worker on its schedule, two workers never run one job twice
at once, ``jobs run --queue`` hands a run to ``worker --once``, and the daily prune is there."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from croniter import croniter

from dialect_support import run_sql
from diff_support import ids as source_ids
from diff_support import migrated, target_one, uuid_of
from isthmus import commands
from isthmus.config import Config, config_from_dict
from isthmus.errors import UsageError
from isthmus.queue import PRUNE_TASK, RUN_TASK, TICK_TASK, install_queue, job_lock
from isthmus.state.enums import JobStatus
from isthmus.state.schema import upgrade_state_schema
from isthmus.state.store import StateStore
from isthmus.sync import _JOB_LOCK_CLASS
from isthmus.urls import DatabaseURL, parse_url
from isthmus.worker import (
    FETCH_POLLING_SECONDS,
    PRUNE_CRON,
    TICK_CRON,
    WorkerStats,
    build_app,
    due_runs,
    recover_stalled,
)
from isthmus.workspace import Workspace
from migrate_support import Setup

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 45) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop(worker: subprocess.Popen[str]) -> tuple[int, str, str]:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, err = worker.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, err = worker.communicate()
    return worker.returncode, out, err


def rows(setup: Setup, query: str, *params: Any) -> list[dict[str, Any]]:
    with setup.target_conn() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def sync_job(setup: Setup, name: str) -> dict[str, Any]:
    (row,) = rows(
        setup,
        "SELECT id, status::text AS status, last_run_at, next_run_at, metadata"
        " FROM isthmus.synchronization_jobs WHERE job_name = %s",
        name,
    )
    return row


def queue_jobs(setup: Setup, task: str = RUN_TASK) -> dict[int, dict[str, Any]]:
    found = rows(
        setup,
        "SELECT id, status::text AS status, lock, queueing_lock, args, scheduled_at"
        " FROM isthmus.procrastinate_jobs WHERE task_name = %s ORDER BY id",
        task,
    )
    return {r["id"]: r for r in found}


def events(setup: Setup, job_id: int) -> dict[str, datetime]:
    found = rows(
        setup,
        "SELECT type::text AS type, max(at) AS at FROM isthmus.procrastinate_events"
        " WHERE job_id = %s GROUP BY type",
        job_id,
    )
    return {r["type"]: r["at"] for r in found}


def plant_note(setup: Setup, note: str) -> int:
    """A source change for a run to carry over: a patient's notes."""
    patient = source_ids(setup.source, "patients")[0]
    run_sql(setup.source, [("UPDATE patients SET notes = %s WHERE id = %s", [note, patient])])
    return patient


def target_note(setup: Setup, patient: int) -> Any:
    return target_one(
        setup,
        "SELECT notes FROM public.patients WHERE id = %s",
        (uuid_of(setup, "patients", patient),),
    )


def test_a_cron_scheduled_job_runs_through_a_worker_on_its_schedule(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    patient = plant_note(setup, "noted on schedule")
    with pytest.raises(UsageError, match="not a cron expression"):
        commands.jobs_create(setup.config, "x", "scheduled_sync", cron="* * * * * * *")
    # a sixth field is seconds: due every second
    created = commands.jobs_create(
        setup.config, "each_second", "scheduled_sync", cron="* * * * * *"
    )
    assert created.schedule_config == {"cron": "* * * * * *", "timezone": "UTC"}
    assert created.next_run_at is not None
    assert created.next_run_at - datetime.now(UTC) <= timedelta(seconds=1)
    wait_for("the job to be due", lambda: datetime.now(UTC) > created.next_run_at)  # type: ignore[operator]
    assert target_note(setup, patient) != "noted on schedule"

    worker = setup.popen("worker")
    try:
        ran = wait_for(
            "a scheduled run to finish",
            lambda: (
                (j := sync_job(setup, "each_second"))["metadata"].get("run_count", 0) >= 1
                and j["status"] == "scheduled"
                and j
            ),
        )
    finally:
        code, out, err = stop(worker)
    assert code == 0, err
    assert "stopped (signal)" in out, out
    assert target_note(setup, patient) == "noted on schedule"
    assert ran["last_run_at"] > created.created_at
    assert ran["next_run_at"] > ran["last_run_at"]
    assert ran["metadata"]["last_run"]["status"] == "completed"
    # it went through the queue: queued by the schedule with the job's locks
    runs = list(queue_jobs(setup).values())
    assert runs, "no run was queued"
    lock = job_lock(created.id)
    assert {(r["lock"], r["queueing_lock"]) for r in runs} == {(lock, lock)}
    assert runs[0]["args"]["job_name"] == "each_second"
    assert runs[0]["args"]["due_at"] == created.next_run_at.isoformat()
    assert runs[0]["status"] == "succeeded"


def test_two_workers_never_run_the_same_job_twice_at_once(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    config = setup.config
    commands.jobs_create(config, "shared", "manual_sync")
    patient = plant_note(setup, "noted by one worker at a time")
    # asked three times before any worker runs: one run waits in the queue
    asked = [commands.jobs_run(config, "shared", queue=True) for _ in range(3)]
    first = asked[0].queue_job_id
    assert [(q.queue_job_id, q.already_queued) for q in asked] == [
        (first, False),
        (first, True),
        (first, True),
    ]

    # the run will block on a target table this connection holds, so it lasts while we look
    blocker = psycopg.connect(setup.target.raw)
    blocker.execute("LOCK TABLE public.products IN ACCESS EXCLUSIVE MODE")
    workers = [setup.popen("worker", "--concurrency", "2") for _ in range(2)]
    try:
        wait_for(
            "the first run to be executing, blocked on products",
            lambda: (
                queue_jobs(setup)[first]["status"] == "doing"
                and rows(
                    setup,
                    "SELECT 1 FROM pg_locks WHERE relation = 'public.products'::regclass"
                    " AND NOT granted",
                )
            ),
        )
        # asked again while it runs: one more run waits, not more
        again = [commands.jobs_run(config, "shared", queue=True) for _ in range(3)]
        second = again[0].queue_job_id
        assert second != first
        assert [(q.queue_job_id, q.already_queued) for q in again] == [
            (second, False),
            (second, True),
            (second, True),
        ]
        wait_for(
            "both workers to be up",
            lambda: len(rows(setup, "SELECT id FROM isthmus.procrastinate_workers")) == 2,
        )
        # three idle slots on two workers poll the queue meanwhile: none may take it
        time.sleep(FETCH_POLLING_SECONDS * 2 + 0.5)
        statuses = {i: j["status"] for i, j in queue_jobs(setup).items()}
        assert statuses == {first: "doing", second: "todo"}
        assert sync_job(setup, "shared")["status"] == "running"
    finally:
        blocker.rollback()
        blocker.close()
        try:
            wait_for(
                "both runs to finish",
                lambda: all(j["status"] == "succeeded" for j in queue_jobs(setup).values()),
            )
        finally:
            stopped = [stop(w) for w in workers]
    for code, _out, err in stopped:
        assert code == 0, err
        assert "busy" not in err, err

    one, two = events(setup, first), events(setup, second)
    assert one["started"] < one["succeeded"] <= two["started"] < two["succeeded"]
    job = sync_job(setup, "shared")
    assert job["metadata"]["run_count"] == 2  # both executed for real, one after the other
    assert job["status"] == "completed"
    assert target_note(setup, patient) == "noted by one worker at a time"


def set_paused(config: Config, name: str) -> None:
    with Workspace(config) as ws, ws.engine.begin() as conn:
        store = StateStore(ws.state_schema)
        for status in (JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.PAUSED):
            store.set_job_status(conn, name, status)


def test_jobs_run_queue_is_executed_by_worker_once(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    commands.jobs_create(setup.config, "later", "manual_sync")
    patient = plant_note(setup, "noted by worker --once")

    said = setup.cli("--json", "jobs", "run", "later", "--queue")
    assert said.returncode == 0, said.stderr
    doc = json.loads(said.stdout)
    assert doc["queued"] is True and doc["already_queued"] is False and doc["job"] == "later"
    queued = doc["queue_job_id"]
    assert queue_jobs(setup)[queued]["status"] == "todo"
    assert sync_job(setup, "later")["last_run_at"] is None  # nothing ran here
    text = setup.cli("jobs", "run", "later", "--queue")
    assert text.returncode == 0 and f"queue job {queued}" in text.stdout, text.stdout
    assert "waits in the queue already" in text.stdout
    missing = setup.cli("jobs", "run", "nope", "--queue")
    assert missing.returncode == 2 and "no job named 'nope'" in missing.stderr

    once = setup.cli("--json", "worker", "--once", timeout=120)
    assert once.returncode == 0, once.stderr
    report = json.loads(once.stdout)
    assert (report["stopped"], report["runs"], report["failed"]) == ("queue empty", 1, 0)
    assert queue_jobs(setup)[queued]["status"] == "succeeded"
    assert target_note(setup, patient) == "noted by worker --once"
    assert sync_job(setup, "later")["status"] == "completed"

    # resume --queue: refused unless paused; a paused job is resumed by the worker
    refused = setup.cli("jobs", "resume", "later", "--queue")
    assert refused.returncode == 2 and "not paused" in refused.stderr
    set_paused(setup.config, "later")
    resumed = setup.cli("--json", "jobs", "resume", "later", "--queue")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["queued"] is True
    assert sync_job(setup, "later")["status"] == "paused"
    again = setup.cli("worker", "--once", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "1 run(s) done" in again.stdout, again.stdout
    job = sync_job(setup, "later")
    assert job["status"] == "completed" and job["metadata"]["run_count"] == 2

    # a run that finds its job busy (run by another process) is skipped, and put back
    with setup.target_conn() as holder:
        holder.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", (_JOB_LOCK_CLASS, str(job["id"]))
        )
        busy = commands.jobs_run(setup.config, "later", queue=True).queue_job_id
        skipped = setup.cli("--json", "worker", "--once", timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    assert (json.loads(skipped.stdout)["busy"], json.loads(skipped.stdout)["runs"]) == (1, 0)
    assert "running in another isthmus process" in skipped.stderr
    assert "queued again in 10 s" in skipped.stderr
    after = queue_jobs(setup)
    assert after[busy]["status"] == "succeeded"
    (retry,) = [j for i, j in after.items() if i > busy]
    assert retry["status"] == "todo" and retry["scheduled_at"] > datetime.now(UTC)
    assert sync_job(setup, "later")["metadata"]["run_count"] == 2


def test_the_queue_lives_in_the_state_schema_with_a_daily_prune(
    fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    config = config_from_dict(
        {
            "source": {"url": f"sqlite:///{tmp_path / 'legacy.db'}"},
            "target": {"url": fresh_pg_url.raw, "state_schema": "isthmus"},
        }
    )
    first = commands.init(config)
    assert first.created and first.queue_created
    second = commands.init(config)
    assert not (second.created or second.upgraded or second.queue_created)
    with psycopg.connect(fresh_pg_url.raw, autocommit=True) as conn:
        where = conn.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = 'procrastinate_jobs'"
        ).fetchall()
        assert where == [("isthmus",)]
        # an old finished queue job for the prune task to remove
        (old,) = conn.execute(
            "INSERT INTO isthmus.procrastinate_jobs (queue_name, task_name, status)"
            " VALUES ('default', 't', 'succeeded') RETURNING id"
        ).fetchone() or (None,)
        conn.execute(
            "INSERT INTO isthmus.procrastinate_events (job_id, type, at)"
            " VALUES (%s, 'succeeded', now() - interval '40 days')",
            (old,),
        )

    with Workspace(config) as ws:
        app = build_app(ws)
        registered = {
            (p.task.name, p.periodic_id): p.cron
            for p in app.periodic_registry.periodic_tasks.values()
        }
        assert registered == {
            (PRUNE_TASK, "daily"): PRUNE_CRON,
            (TICK_TASK, "due-jobs"): TICK_CRON,
        }
        ticks = croniter(PRUNE_CRON, datetime.now(UTC))
        assert ticks.get_next(datetime) + timedelta(days=1) == ticks.get_next(datetime)
        ticks = croniter(TICK_CRON, datetime.now(UTC))
        assert ticks.get_next(datetime) + timedelta(seconds=10) == ticks.get_next(datetime)
        pruned = app.tasks[PRUNE_TASK](timestamp=0)
    assert pruned["deleted"]["procrastinate_jobs"] == 1 and pruned["days"] == 30

    # a state schema without the queue: three processes starting at once apply it once
    bare = config_from_dict(
        {
            "source": {"url": f"sqlite:///{tmp_path / 'legacy.db'}"},
            "target": {"url": fresh_pg_url.raw, "state_schema": "bare"},
        }
    )
    with Workspace(bare) as ws:
        upgrade_state_schema(ws.engine, "bare")
    results: list[bool] = []
    barrier = threading.Barrier(3)

    def install() -> None:
        with Workspace(bare) as ws:
            barrier.wait()
            results.append(install_queue(ws))

    threads = [threading.Thread(target=install) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, True]


def test_runs_left_behind_by_dead_processes_are_picked_up_again(
    fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    legacy = tmp_path / "legacy.db"
    run_sql(
        parse_url(f"sqlite:///{legacy}"),
        ["CREATE TABLE offices (id INTEGER PRIMARY KEY, name TEXT)"],
    )
    config = config_from_dict(
        {"source": {"url": f"sqlite:///{legacy}"}, "target": {"url": fresh_pg_url.raw}}
    )
    commands.init(config)
    job = commands.jobs_create(config, "nightly", "scheduled_sync", cron="0 2 * * *")
    with Workspace(config) as ws:
        assert due_runs(ws) == []  # not due before 02:00
        # a run started, then its process died: the job stays running past its time
        with ws.engine.begin() as sa_conn:
            StateStore(ws.state_schema).set_job_status(sa_conn, job.id, JobStatus.RUNNING)
        with ws.connect_target(autocommit=True) as pg:
            pg.execute(
                "UPDATE isthmus.synchronization_jobs SET next_run_at = now() - interval '1 minute',"
                " last_run_at = now() - interval '1 day' WHERE id = %s",
                (job.id,),
            )
        (due,) = due_runs(ws)
        assert (due.job, due.takeover) == ("nightly", True)
        with ws.connect_target(autocommit=True) as holder:  # a live run holds the job's lock
            holder.execute(
                "SELECT pg_advisory_lock(%s, hashtext(%s))", (_JOB_LOCK_CLASS, str(job.id))
            )
            assert due_runs(ws) == []

    # a worker killed mid-run: no heartbeat for a minute, its queue jobs still 'doing'
    # (procrastinate's triggers name its tables without a schema: its search path)
    queue_conn = psycopg.connect(
        fresh_pg_url.raw, autocommit=True, options="-c search_path=isthmus"
    )
    with queue_conn:

        def one(query: str, *params: Any) -> Any:
            row = queue_conn.execute(query, params).fetchone()
            assert row is not None
            return row[0]

        dead = one(
            "INSERT INTO isthmus.procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '1 minute') RETURNING id"
        )
        doing = "INSERT INTO isthmus.procrastinate_jobs (queue_name, task_name, lock,"
        doing += " queueing_lock, status, worker_id) VALUES ('default', %s, %s, %s, %s, %s)"
        doing += " RETURNING id"
        alone = one(doing, RUN_TASK, "a", "a", "doing", dead)
        doubled = one(doing, RUN_TASK, "b", "b", "doing", dead)
        waiting = one(doing, RUN_TASK, "b", "b", "todo", None)
        alive = one("INSERT INTO isthmus.procrastinate_workers DEFAULT VALUES RETURNING id")
        running = one(doing, RUN_TASK, "c", "c", "doing", alive)

    async def recover() -> int:
        async with app.open_async():
            return await recover_stalled(app, None, WorkerStats())

    with Workspace(config) as ws:
        app = build_app(ws)
        assert asyncio.run(recover()) == 2
    with psycopg.connect(fresh_pg_url.raw, autocommit=True) as conn:
        found = conn.execute("SELECT id, status::text FROM isthmus.procrastinate_jobs").fetchall()
    statuses: dict[int, str] = dict(found)
    # back in the queue; failed where another run of its job waits; a live worker's untouched
    assert statuses == {alone: "todo", doubled: "failed", waiting: "todo", running: "doing"}
