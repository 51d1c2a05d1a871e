"""Pooled state-store connections (a worker's): reused across runs, handed back clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from diff_support import ids as source_ids
from diff_support import migrated
from isthmus import commands, target_pool
from isthmus.urls import DatabaseURL
from isthmus.workspace import Workspace


@pytest.fixture
def pooled() -> Iterator[None]:
    target_pool.enable(max_size=4)
    try:
        yield
    finally:
        target_pool.close_all()


def wait_until_available() -> None:
    deadline = time.monotonic() + 10
    while next(iter(target_pool.stats().values()))["pool_available"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_connection_given_back_is_reset(pooled: None, fresh_pg_url: DatabaseURL) -> None:
    engine = target_pool.engine(fresh_pg_url.raw)
    with engine.connect() as conn:
        default = conn.execute(text("SHOW work_mem")).scalar()
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        conn.execute(text("SET work_mem = '77MB'"))
        conn.execute(text("SELECT pg_advisory_lock(42)"))
        conn.commit()
    wait_until_available()  # given back, reset by the pool in the background
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == pid  # reused
        assert conn.execute(text("SHOW work_mem")).scalar() == default
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid()"
            )
        ).scalar()
        assert held == 0


def test_job_runs_in_one_process_share_a_bounded_pool(
    pooled: None, sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    target_pool.close_all()  # the setup below runs without pooling
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    commands.jobs_create(setup.config, "pooled", "manual_sync")
    target_pool.enable(max_size=4)
    from dialect_support import run_sql

    for n in range(3):
        keys = source_ids(sqlite_url, "patients")[n * 10 : n * 10 + 10]
        update = "UPDATE patients SET notes = %s WHERE id = %s"
        run_sql(sqlite_url, [(update, [f"run {n}", k]) for k in keys])
        ran = commands.jobs_run(setup.config, "pooled")
        assert ran.status == "completed" and ran.records_synced == 10
    (stats,) = target_pool.stats().values()
    assert stats["connections_num"] <= 4
    assert stats["requests_num"] >= 10 * stats["connections_num"]  # reused, run after run
    with Workspace(setup.config) as ws:
        assert ws.engine is Workspace(setup.config).engine  # one engine per process
    # the last run's lock went with its connection: another process may run the job
    said = setup.cli("--json", "jobs", "run", "pooled")
    assert said.returncode == 0, said.stdout + said.stderr
