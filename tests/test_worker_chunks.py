"""A differential_migration job run by workers: large entities split into key-range chunks
that the workers take in parallel, then finished; the target equals the source."""

from __future__ import annotations

import json
from pathlib import Path

from isthmus import commands
from isthmus.queue import CHUNK_TASK
from isthmus.urls import DatabaseURL
from migrate_support import check_equal, make_setup
from test_worker import rows, stop, sync_job, wait_for


def test_workers_share_the_chunks_of_a_large_entity(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=4, migration="chunk_rows = 1000")
    assert setup.counts["products"] >= 2 * 1000
    commands.jobs_create(setup.config, "load", "differential_migration")
    queued = setup.cli("jobs", "run", "load", "--queue")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    workers = [setup.popen("worker") for _ in range(2)]
    try:
        wait_for(
            "the job to complete",
            lambda: sync_job(setup, "load")["status"] == "completed",
            timeout=120,
        )
    except AssertionError:
        said = [stop(w)[2] for w in workers]
        raise AssertionError("\n---\n".join(text[-4000:] for text in said)) from None
    outcomes = [stop(w) for w in workers]
    for code, out, err in outcomes:
        assert code == 0, out + err
    check_equal(setup.config)
    last = sync_job(setup, "load")["metadata"]["last_run"]
    methods = {e["entity"]: e["method"] for e in last["entities"]}
    assert methods["products"] == "chunks"  # 2,880 rows: chunks of about 1,000
    assert methods["orders"] == methods["offices"] == "migrate"  # too small to split
    assert last["records_synced"] == sum(setup.counts.values())
    # a chunk was migrated by a queued chunk task (the run itself migrates chunks directly)
    logs = "".join(err for _, _, err in outcomes)
    assert "products chunk" in logs and ": completed," in logs, logs[-3000:]
    ran = rows(
        setup,
        "SELECT count(*) AS n FROM isthmus.procrastinate_jobs WHERE task_name = %s",
        CHUNK_TASK,
    )
    assert ran[0]["n"] >= 1
    summaries = rows(
        setup,
        "SELECT entity_type, metadata->'chunks' AS chunks FROM isthmus.migration_checkpoints"
        " WHERE operation_type = 'differential_migration' AND metadata ? 'chunk_checkpoints'",
    )
    assert {s["entity_type"] for s in summaries} == {"products"}
    assert len(summaries[0]["chunks"]) == 2
    # a later differential run by the same job changes nothing and still passes
    again = setup.cli("--json", "jobs", "run", "load")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["records_synced"] == 0
