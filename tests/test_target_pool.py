"""Pooled target connections (a worker's): reused across runs, handed back clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def test_a_connection_given_back_is_reset(pooled: None, fresh_pg_url: DatabaseURL) -> None:
    conninfo = fresh_pg_url.raw
    conn = target_pool.connect(conninfo)
    default = conn.execute("SHOW work_mem").fetchone()
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    conn.execute("SET work_mem = '77MB'")
    conn.execute("SELECT pg_advisory_lock(42)")
    conn.execute("CREATE TEMP TABLE scratch (x int)")
    conn.commit()
    conn.close()  # back to the pool, not closed: reset there in the background
    deadline = time.monotonic() + 10
    while next(iter(target_pool.stats().values()))["pool_available"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    again = target_pool.connect(conninfo, autocommit=True)
    assert again.execute("SELECT pg_backend_pid()").fetchone() == pid  # the same backend
    assert again.autocommit is True
    assert again.execute("SHOW work_mem").fetchone() == default
    held = again.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    ).fetchone()
    assert held == (0,)
    assert again.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)
    again.close()


def test_job_runs_in_one_process_share_connections_and_release_their_locks(
    pooled: None, sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    target_pool.close_all()  # the setup below migrates without pooling
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    commands.jobs_create(setup.config, "pooled", "manual_sync")
    target_pool.enable(max_size=4)
    from dialect_support import run_sql

    for n in range(3):
        keys = source_ids(sqlite_url, "patients")[n * 10 : n * 10 + 10]
        run_sql(
            sqlite_url,
            [("UPDATE patients SET notes = %s WHERE id = %s", [f"run {n}", k]) for k in keys],
        )
        ran = commands.jobs_run(setup.config, "pooled")
        assert ran.status == "completed" and ran.records_synced == 10
    (stats,) = target_pool.stats().values()
    assert stats["connections_num"] <= 4
    assert stats["requests_num"] >= 2 * stats["connections_num"]  # reused, run after run
    with Workspace(setup.config) as ws:
        assert ws.engine is Workspace(setup.config).engine  # one engine per process
    # the lock of the last run went with its connection: another process may run the job
    said = setup.cli("--json", "jobs", "run", "pooled")
    assert said.returncode == 0, said.stdout + said.stderr
