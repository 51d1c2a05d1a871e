"""The HTTP API against real databases, through FastAPI's TestClient: every route, its
success and its bad input (a 4xx with one clear line, never a 500), the bearer token on
every mutation, job runs in the background, the review queue resolved over HTTP, /metrics,
and ``serve``'s refusal to start without auth off loopback."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from conftest import PgDatabases
from dialect_support import run_sql
from diff_support import CONFLICTED, MISSING, migrated, plant_everything, uuid_of, value
from diff_support import ids as source_ids
from isthmus import commands, jobs
from isthmus.api import create_app
from isthmus.api.auth import TOKEN_VARIABLE, is_loopback
from isthmus.api.errors import Conflict
from isthmus.api.tasks import Tasks
from isthmus.errors import UsageError
from isthmus.sessions import try_lock
from isthmus.state.store import StateStore
from isthmus.sync import _JOB_LOCK_CLASS
from isthmus.urls import DatabaseURL, parse_url
from isthmus.workspace import Workspace
from migrate_support import Setup, cli_env, fetch, isthmus_executable, write_config

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NIL = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def setup(pg_databases: PgDatabases, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A migrated demo (SQLite → PostgreSQL) the module's tests share."""
    directory = tmp_path_factory.mktemp("api")
    source = parse_url(f"sqlite:///{directory / 'legacy.db'}")
    return migrated(source, pg_databases.create("isthmus_api"), directory)


@pytest.fixture(scope="module")
def client(setup: Setup) -> Iterator[TestClient]:
    with TestClient(create_app(setup.config, token=TOKEN)) as c:
        yield c


def error_of(response: Response, status: int) -> str:
    """The response's one-line error, after checking its status."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


def wait_for_task(client: TestClient, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
        if task["status"] != "running":
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def set_job_status(setup: Setup, name: str, status: str) -> None:
    """Move a job as a run in another process would (no run happens here)."""
    with Workspace(setup.config) as ws, ws.engine.begin() as conn:
        StateStore(ws.state_schema).set_job_status(conn, name, status)


# -- the schema, errors, auth ------------------------------------------------------------------


def test_openapi_schema_lists_every_route_and_marks_mutations(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes == {
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs/{name}"),
        ("POST", "/api/jobs/{name}/run"),
        ("POST", "/api/jobs/{name}/resume"),
        ("POST", "/api/jobs/{name}/pause"),
        ("POST", "/api/jobs/{name}/cancel"),
        ("GET", "/api/tasks"),
        ("GET", "/api/tasks/{task_id}"),
        ("GET", "/api/checkpoints"),
        ("GET", "/api/differentials"),
        ("POST", "/api/differentials/{differential_id}/resolve"),
        ("GET", "/api/review"),
        ("POST", "/api/review/{item_id}/resolve"),
        ("GET", "/api/quarantine"),
        ("GET", "/api/mappings/{entity}/{legacy_id}"),
        ("GET", "/api/reports"),
        ("GET", "/api/reports/{report_id}"),
        ("GET", "/api/reports/{report_id}/html"),
        ("POST", "/api/validate"),
        ("GET", "/api/health"),
        ("GET", "/metrics"),
    }
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            secured = bool(op.get("security"))
            assert secured == (method == "post"), (method, path)
    assert "bearer" in schema["components"]["securitySchemes"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_every_mutation_needs_the_token(client: TestClient, setup: Setup) -> None:
    mutations = [
        ("/api/jobs", {"name": "x", "type": "manual_sync"}),
        ("/api/jobs/nightly/run", None),
        ("/api/jobs/nightly/resume", None),
        ("/api/jobs/nightly/pause", None),
        ("/api/jobs/nightly/cancel", None),
        (f"/api/differentials/{NIL}/resolve", None),
        (f"/api/review/{NIL}/resolve", {"winner": "source"}),
        ("/api/validate", {}),
    ]
    for path, body in mutations:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ):
            said = client.post(path, json=body, headers=headers)
            message = error_of(said, 401)
            assert TOKEN not in message and TOKEN not in said.text
            assert said.headers["www-authenticate"] == "Bearer"
    with Workspace(setup.config) as ws:
        assert all(j.job_name != "x" for j in jobs.list_jobs(ws))
    # reads need none
    for path in ("/api/jobs", "/api/checkpoints", "/api/review", "/api/reports", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_without_a_token_mutations_are_open_and_the_schema_says_so(setup: Setup) -> None:
    with TestClient(create_app(setup.config, token=None)) as open_client:
        said = open_client.post("/api/jobs/no-such-job/pause")
        assert "no-such-job" in error_of(said, 404)
        schema = open_client.get("/openapi.json").json()
        assert not any(
            op.get("security") for ops in schema["paths"].values() for op in ops.values()
        )


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    error_of(client.get("/api/nothing-here"), 404)
    error_of(client.delete("/api/jobs", headers=AUTH), 405)
    page = client.get("/", follow_redirects=False)  # the dashboard (without it: /docs)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_an_unexpected_error_is_a_masked_one_line_500(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ws: Workspace) -> list[Any]:
        raise RuntimeError("lost postgresql://admin:hunter2@db.example/app\nand more")

    monkeypatch.setattr(jobs, "list_jobs", broken)
    with TestClient(create_app(setup.config, token=TOKEN), raise_server_exceptions=False) as c:
        message = error_of(c.get("/api/jobs"), 500)
    assert "hunter2" not in message and "admin:***@db.example" in message
    assert message.startswith("internal error: RuntimeError")


def test_an_uninitialised_or_unreachable_state_schema_is_503(
    setup: Setup, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    bare = pg_databases.create("isthmus_api_bare")
    config_path = write_config(tmp_path / "bare.toml", setup.source, bare)
    from isthmus.config import load_config

    with TestClient(create_app(load_config(config_path), token=TOKEN)) as c:
        assert "isthmus init" in error_of(c.get("/api/jobs"), 503)
        assert "isthmus init" in error_of(c.get("/api/checkpoints"), 503)
        health = c.get("/api/health")
        assert health.status_code == 503
        assert health.json()["state_schema"]["ok"] is False
        assert health.json()["source"]["ok"] is True
        assert "isthmus_state_up 0.0" in c.get("/metrics").text
    closed = parse_url("postgresql://postgres@127.0.0.1:1/nowhere")
    config_path = write_config(tmp_path / "closed.toml", setup.source, closed)
    with TestClient(create_app(load_config(config_path), token=TOKEN)) as c:
        error_of(c.get("/api/jobs"), 503)
        assert c.get("/api/health").status_code == 503


def test_health(client: TestClient, setup: Setup, tmp_path: Path) -> None:
    said = client.get("/api/health")
    assert said.status_code == 200, said.text
    body = said.json()
    assert body["status"] == "ok" and body["state_schema"]["ok"] and body["source"]["ok"]
    from isthmus.config import load_config

    gone = parse_url(f"sqlite:///{tmp_path / 'missing.db'}")
    config_path = write_config(tmp_path / "gone.toml", gone, setup.target)
    with TestClient(create_app(load_config(config_path), token=TOKEN)) as c:
        down = c.get("/api/health")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    assert down.json()["state_schema"]["ok"] is True
    assert "missing.db" in down.json()["source"]["detail"]


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_create_list_show_and_bad_input(client: TestClient) -> None:
    created = client.post(
        "/api/jobs",
        json={"name": "nightly", "type": "manual_sync", "entities": ["patients", "offices"]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["job_name"] == "nightly" and job["status"] == "scheduled"
    assert job["entities_to_sync"] == ["offices", "patients"]  # plan order
    assert "already exists" in error_of(
        client.post("/api/jobs", json={"name": "nightly", "type": "manual_sync"}, headers=AUTH),
        409,
    )
    bad = [
        ({"name": "x", "type": "manual_sync", "entities": ["nope"]}, 400, "nope"),
        ({"name": "x", "type": "scheduled_sync"}, 400, "cron"),
        ({"name": "x", "type": "scheduled_sync", "cron": "every day"}, 400, "cron"),
        ({"name": "x", "type": "weekly"}, 422, "body type"),
        ({"name": "   ", "type": "manual_sync"}, 422, "body name"),
        ({"name": "a\x00b", "type": "manual_sync"}, 422, "body name"),
        ({"type": "manual_sync"}, 422, "body name"),
        ({"name": "x", "type": "manual_sync", "batch_size": 0}, 422, "batch_size"),
        ({"name": "x", "type": "manual_sync", "validate": ["everything"]}, 422, "validate"),
        ({"name": "x", "type": "manual_sync", "surprise": 1}, 422, "surprise"),
    ]
    for body, status, named in bad:
        message = error_of(client.post("/api/jobs", json=body, headers=AUTH), status)
        assert named in message, (body, message)
    error_of(client.post("/api/jobs", content=b"{not json", headers=AUTH), 422)
    scheduled = client.post(
        "/api/jobs",
        json={
            "name": "every-15",
            "type": "scheduled_sync",
            "cron": "*/15 * * * *",
            "batch_size": 500,
            "validate": ["completeness_check"],
        },
        headers=AUTH,
    ).json()
    assert scheduled["next_run_at"] and scheduled["max_records_per_batch"] == 500
    assert scheduled["metadata"]["validate_after"] == ["completeness_check"]

    listed = client.get("/api/jobs").json()
    assert [j["job_name"] for j in listed] == ["every-15", "nightly"]
    shown = client.get("/api/jobs/nightly").json()
    assert shown["job"]["id"] == job["id"]
    assert shown["recent_checkpoints"] == [] and shown["open_review_items"] == 0
    assert shown["task"] is None
    assert client.get(f"/api/jobs/{job['id']}").json()["job"]["job_name"] == "nightly"
    assert "no-such" in error_of(client.get("/api/jobs/no-such"), 404)
    error_of(client.get("/api/jobs/%00"), 422)
    error_of(client.get("/api/jobs/" + "x" * 201), 422)


def test_a_run_started_over_http_completes_in_the_background(
    client: TestClient, setup: Setup
) -> None:
    client.post("/api/jobs", json={"name": "bg", "type": "manual_sync"}, headers=AUTH)
    patient = source_ids(setup.source, "patients")[0]
    run_sql(setup.source, [("UPDATE patients SET phone = 'via http' WHERE id = %s", (patient,))])

    started = client.post("/api/jobs/bg/run", headers=AUTH)
    assert started.status_code == 202, started.text
    accepted = started.json()
    assert accepted["job"] == "bg" and accepted["queued"] is None
    task = accepted["task"]
    assert task["kind"] == "job_run" and task["subject"] == "bg"
    done = wait_for_task(client, task["id"])
    assert done["status"] == "done", done
    assert done["exit_code"] == 0 and done["result"]["status"] == "completed"
    assert done["result"]["records_synced"] == 1
    shown = client.get("/api/jobs/bg").json()
    assert shown["job"]["status"] == "completed"
    assert shown["job"]["total_records_synced"] == 1
    assert shown["task"]["id"] == task["id"]
    assert shown["recent_checkpoints"], shown
    assert all(c["job_name"] == "bg" for c in shown["recent_checkpoints"])
    with setup.target_conn() as conn:
        phone = conn.execute(
            "SELECT phone FROM public.patients WHERE id = %s",
            (uuid_of(setup, "patients", patient),),
        ).fetchone()
    assert phone == ("via http",)
    assert any(t["id"] == task["id"] for t in client.get("/api/tasks").json())
    error_of(client.get(f"/api/tasks/{NIL}"), 404)
    error_of(client.get("/api/tasks/not-a-uuid"), 422)


def test_run_of_a_busy_unknown_failed_or_cancelled_job_is_refused(
    client: TestClient, setup: Setup
) -> None:
    client.post("/api/jobs", json={"name": "busy", "type": "manual_sync"}, headers=AUTH)
    error_of(client.post("/api/jobs/ghost/run", headers=AUTH), 404)
    with Workspace(setup.config) as ws:
        job = jobs.show_job(ws, "busy").job
        lock = ws.connect_target(autocommit=True)  # "another process" runs the job
    try:
        assert try_lock(lock, (_JOB_LOCK_CLASS, str(job.id)))
        assert "running right now" in error_of(client.post("/api/jobs/busy/run", headers=AUTH), 409)
    finally:
        lock.close()
    set_job_status(setup, "busy", "running")
    set_job_status(setup, "busy", "failed")
    assert "cannot run again" in error_of(client.post("/api/jobs/busy/run", headers=AUTH), 409)
    assert "not paused" in error_of(client.post("/api/jobs/busy/resume", headers=AUTH), 409)


def test_pause_resume_and_cancel(client: TestClient, setup: Setup) -> None:
    client.post("/api/jobs", json={"name": "pr", "type": "manual_sync"}, headers=AUTH)
    for verb in ("pause", "cancel"):  # a scheduled job is not running: the state machine says no
        message = error_of(client.post(f"/api/jobs/pr/{verb}", headers=AUTH), 409)
        assert "scheduled" in message
    assert "not paused" in error_of(client.post("/api/jobs/pr/resume", headers=AUTH), 409)
    error_of(client.post("/api/jobs/ghost/pause", headers=AUTH), 404)

    set_job_status(setup, "pr", "running")  # as if a run were going on elsewhere
    paused = client.post("/api/jobs/pr/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = client.post("/api/jobs/pr/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    done = wait_for_task(client, resumed.json()["task"]["id"])
    assert done["status"] == "done" and done["result"]["status"] == "completed", done
    assert client.get("/api/jobs/pr").json()["job"]["status"] == "completed"

    set_job_status(setup, "pr", "scheduled")
    set_job_status(setup, "pr", "running")
    cancelled = client.post("/api/jobs/pr/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    error_of(client.post("/api/jobs/pr/run", headers=AUTH), 409)


def test_stopping_the_server_pauses_its_runs_and_they_resume(setup: Setup) -> None:
    statuses = [r[0] for r in fetch(setup.source, "SELECT status FROM orders")]
    changed = sum(1 for s in statuses if s != "cancelled")
    run_sql(setup.source, ["UPDATE orders SET status = 'cancelled' WHERE status <> 'cancelled'"])
    app = create_app(setup.config, token=TOKEN)
    with TestClient(app) as client:
        body = {"name": "long", "type": "manual_sync", "entities": ["orders"], "batch_size": 5}
        assert client.post("/api/jobs", json=body, headers=AUTH).status_code == 201
        task = client.post("/api/jobs/long/run", headers=AUTH).json()["task"]
        deadline = time.monotonic() + 30
        while client.get("/api/jobs/long").json()["job"]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # the server stopped: its run was paused at a batch boundary and has ended
    stopped = app.state.isthmus.tasks.get(UUID(task["id"]))
    assert stopped["status"] == "done" and stopped["result"]["status"] == "paused", stopped
    assert stopped["result"]["records_synced"] < changed
    with TestClient(create_app(setup.config, token=TOKEN)) as client:
        assert client.get("/api/jobs/long").json()["job"]["status"] == "paused"
        resumed = client.post("/api/jobs/long/resume", headers=AUTH).json()["task"]
        done = wait_for_task(client, resumed["id"])
        assert done["status"] == "done" and done["result"]["status"] == "completed", done
        job = client.get("/api/jobs/long").json()["job"]
    assert job["status"] == "completed" and job["total_records_synced"] == changed


def test_a_run_can_be_handed_to_the_workers(client: TestClient) -> None:
    client.post("/api/jobs", json={"name": "queued", "type": "manual_sync"}, headers=AUTH)
    first = client.post("/api/jobs/queued/run?queue=true", headers=AUTH)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["task"] is None
    assert body["queued"]["queued"] is True and body["queued"]["already_queued"] is False
    again = client.post("/api/jobs/queued/run", params={"queue": "true"}, headers=AUTH).json()
    assert again["queued"]["already_queued"] is True
    assert again["queued"]["queue_job_id"] == body["queued"]["queue_job_id"]
    error_of(client.post("/api/jobs/queued/run?queue=maybe", headers=AUTH), 422)


# -- progress, mappings, quarantine ------------------------------------------------------------


def test_checkpoints_show_live_progress(client: TestClient, setup: Setup) -> None:
    listed = client.get("/api/checkpoints", params={"limit": 1000}).json()
    migrated_ = [c for c in listed if c["operation_type"] == "differential_migration"]
    assert {c["entity_type"] for c in migrated_} == set(setup.counts)
    for c in migrated_:
        if c["status"] == "completed" and c["records_total"]:
            assert c["percent"] == 100.0
            assert c["rows_per_second"] is None or c["rows_per_second"] > 0
    only = client.get("/api/checkpoints", params={"entity": "orders", "status": "completed"})
    assert only.status_code == 200 and only.json()
    assert {(c["entity_type"], c["status"]) for c in only.json()} == {("orders", "completed")}
    assert len(client.get("/api/checkpoints?limit=2").json()) == 2
    assert client.get("/api/checkpoints?entity=nothing-like-it").json() == []
    assert client.get("/api/checkpoints?operation=validation").status_code == 200

    # a checkpoint in progress: 400 of 1000 rows in 8 seconds
    with Workspace(setup.config) as ws, ws.engine.begin() as conn:
        store = StateStore(ws.state_schema)
        live = store.create_checkpoint(
            conn, operation_type="sync_operation", entity_type="patients", batch_size=100
        )
        store.set_checkpoint_status(conn, live.id, "in_progress")
        store.record_progress(
            conn, live.id, last_processed_id=400, records_processed=400, records_total=1000
        )
        conn.exec_driver_sql(
            "UPDATE isthmus.migration_checkpoints SET started_at = now() - interval '8 seconds',"
            " updated_at = now() WHERE id = %(id)s",
            {"id": live.id},
        )
    (found,) = client.get("/api/checkpoints?status=in_progress").json()
    assert found["id"] == str(live.id)
    assert found["percent"] == 40.0
    assert 45 <= found["rows_per_second"] <= 50.1
    metrics = client.get("/metrics").text
    rate = metric(metrics, "isthmus_rows_per_second", entity="patients", operation="sync_operation")
    assert 45 <= rate <= 50.1
    assert metric(metrics, "isthmus_records_in_progress", entity="patients") == 400
    with Workspace(setup.config) as ws, ws.engine.begin() as conn:
        StateStore(ws.state_schema).set_checkpoint_status(conn, live.id, "failed", "test over")

    for query, named in (
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("status=sleeping", "status"),
        ("operation=copy", "operation"),
        ("entity=", "entity"),
        ("entity=%00", "entity"),
    ):
        assert named in error_of(client.get(f"/api/checkpoints?{query}"), 422)
    assert "ghost" in error_of(client.get("/api/checkpoints?job=ghost"), 404)


def test_mappings_lookup(client: TestClient, setup: Setup) -> None:
    patient = source_ids(setup.source, "patients")[5]
    found = client.get(f"/api/mappings/patients/{patient}")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["uuid_id"] == uuid_of(setup, "patients", patient)
    assert body["entity_type"] == "patients" and body["legacy_id"] == patient
    assert "no mapping" in error_of(client.get("/api/mappings/patients/999999999"), 404)
    error_of(client.get(f"/api/mappings/nothing/{patient}"), 404)
    error_of(client.get(f"/api/mappings/patients/{-(2**63)}"), 404)
    for bad in ("abc", "1.5", str(2**63), str(-(2**63) - 1)):
        assert "legacy_id" in error_of(client.get(f"/api/mappings/patients/{bad}"), 422)


def test_quarantine_list(client: TestClient) -> None:
    assert client.get("/api/quarantine").json() == []
    assert client.get("/api/quarantine?include_resolved=true&entity=orders").status_code == 200
    error_of(client.get("/api/quarantine?limit=-1"), 422)


# -- validation --------------------------------------------------------------------------------


def test_validate_and_read_the_reports(client: TestClient) -> None:
    started = client.post(
        "/api/validate",
        json={"types": ["completeness_check", "data_integrity"], "entities": ["orders"]},
        headers=AUTH,
    )
    assert started.status_code == 202, started.text
    done = wait_for_task(client, started.json()["id"])
    assert done["status"] == "done" and done["exit_code"] == 0, done
    run_id = done["result"]["run_id"]
    assert done["result"]["passed"] is True and len(done["result"]["reports"]) == 2

    listed = client.get("/api/reports").json()
    assert {(r["entity"], r["validation_type"]) for r in listed} == {
        ("orders", "completeness_check"),
        ("orders", "data_integrity"),
    }
    assert all(r["run_id"] == run_id and r["stale"] is False for r in listed)
    assert client.get("/api/reports?failed=true").json() == []
    typed = client.get("/api/reports", params={"type": "data_integrity", "entity": "orders"})
    assert [r["validation_type"] for r in typed.json()] == ["data_integrity"]
    assert "nothing" in error_of(client.get("/api/reports?entity=nothing"), 400)
    error_of(client.get("/api/reports?type=speed"), 422)

    run = client.get(f"/api/reports/{run_id}").json()
    assert run["run_id"] == run_id and run["passed"] is True and len(run["reports"]) == 2
    assert client.get("/api/reports/latest").json()["run_id"] == run_id
    report_id = listed[0]["id"]
    one = client.get(f"/api/reports/{report_id[:8]}").json()
    assert [r["id"] for r in one["reports"]] == [report_id]
    page = client.get(f"/api/reports/{run_id}/html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower() and run_id in page.text
    assert "no report" in error_of(client.get(f"/api/reports/{NIL}"), 404)
    error_of(client.get(f"/api/reports/{NIL}/html"), 404)
    error_of(client.get("/api/reports/not-hex!"), 422)
    error_of(client.get("/api/reports/ab"), 422)

    for body, status, named in (
        ({"entities": ["nothing"]}, 400, "nothing"),
        ({"types": ["speed"]}, 422, "types"),
        ({"sample_rows": -1}, 422, "sample_rows"),
        ({"entities": "orders"}, 422, "entities"),
    ):
        message = error_of(client.post("/api/validate", json=body, headers=AUTH), status)
        assert named in message, (body, message)


def test_one_task_per_key_at_a_time() -> None:
    tasks = Tasks()
    release = __import__("threading").Event()

    class Done:
        exit_code = 0

        def to_dict(self) -> dict[str, Any]:
            return {"ok": True}

    def work() -> Done:
        release.wait(10)
        return Done()

    first = tasks.start("validate", "validate", "k", work, busy="busy now")
    with pytest.raises(Conflict, match="busy now"):
        tasks.start("validate", "validate", "k", work, busy="busy now")
    release.set()
    tasks.join(10)
    assert tasks.get(first.id)["status"] == "done"

    def fails() -> Done:
        raise UsageError("postgresql://u:pw@h/db says no")

    failed = tasks.start("validate", "validate", "k", fails, busy="busy now")
    tasks.join(10)
    view = tasks.get(failed.id)
    assert view["status"] == "failed" and view["exit_code"] == 2
    assert view["error"] == "postgresql://u:***@h/db says no"


# -- metrics -----------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        found = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not found:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(found.group(2))
    raise AssertionError(f"no {name} {labels} in the metrics")


def test_metrics(client: TestClient, setup: Setup) -> None:
    commands.jobs_create(setup.config, "metered", "manual_sync", entities=["offices"])
    commands.jobs_run(setup.config, "metered")
    said = client.get("/metrics")
    assert said.status_code == 200 and said.headers["content-type"].startswith("text/plain")
    text = said.text
    for name in (
        "isthmus_state_up",
        "isthmus_rows_moved",
        "isthmus_rows_per_second",
        "isthmus_differentials_open",
        "isthmus_differential_records_open",
        "isthmus_review_items_open",
        "isthmus_validation_failing",
        "isthmus_validation_discrepancies",
        "isthmus_validation_reports_failed",
        "isthmus_job_average_duration_seconds",
        "isthmus_job_last_run_duration_seconds",
        "isthmus_job_records_synced",
        "isthmus_jobs",
        "isthmus_quarantined_rows_open",
    ):
        assert f"# TYPE {name} gauge" in text, name
    assert metric(text, "isthmus_state_up") == 1
    for entity, rows in setup.counts.items():
        moved = metric(
            text, "isthmus_rows_moved", entity=entity, operation="differential_migration"
        )
        assert moved == rows, entity
    assert metric(text, "isthmus_validation_reports_failed") == 0
    assert metric(text, "isthmus_validation_failing", entity="orders", type="data_integrity") == 0
    assert metric(text, "isthmus_jobs", status="scheduled") >= 1
    assert metric(text, "isthmus_job_records_synced", job="metered") == 0
    assert metric(text, "isthmus_job_last_run_duration_seconds", job="metered") > 0
    assert metric(text, "isthmus_job_average_duration_seconds", job="metered") >= 0
    assert metric(text, "isthmus_job_success_rate", job="metered") == 100


# -- differentials and the review queue on a database with both sides changed ------------------


@pytest.fixture
def changed(fresh_pg_url: DatabaseURL, sqlite_url: DatabaseURL, tmp_path: Path) -> Setup:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    return setup


def test_differentials_and_review_over_http(changed: Setup) -> None:
    setup = changed
    planted = plant_everything(setup)
    commands.diff(setup.config)
    with TestClient(create_app(setup.config, token=TOKEN)) as client:
        everything = client.get("/api/differentials?limit=1000").json()
        assert everything and all(not d["resolved"] for d in everything)
        stamps = [d["created_at"] for d in everything]
        assert stamps == sorted(stamps, reverse=True)  # newest first
        missing = client.get("/api/differentials", params={"type": MISSING}).json()
        assert missing and {d["comparison_type"] for d in missing} == {MISSING}
        patients = client.get(
            "/api/differentials", params={"entity": "patients", "resolved": "false"}
        ).json()
        assert patients and {d["entity"] for d in patients} == {"patients"}
        assert client.get("/api/differentials?resolved=true").json() == []
        assert "nothing" in error_of(client.get("/api/differentials?entity=nothing"), 400)
        error_of(client.get("/api/differentials?type=odd_records"), 422)
        error_of(client.get("/api/differentials?resolved=perhaps"), 422)
        error_of(client.get("/api/differentials?strategy=coin_flip"), 422)

        # resolve the patients' conflicts in the source's favour (the both-sides one too)
        (conflicts,) = [d for d in patients if d["comparison_type"] == CONFLICTED]
        both = next(p.legacy_id for p in planted.planted if p.side == "both" and p.column)
        assert both in conflicts["legacy_ids"]
        path = f"/api/differentials/{conflicts['id']}/resolve"
        error_of(client.post(path, json={"strategy": "coin_flip"}, headers=AUTH), 422)
        said = client.post(path, json={"strategy": "source_wins"}, headers=AUTH)
        assert said.status_code == 200, said.text
        (resolution,) = said.json()["resolutions"]
        assert resolution["written"] == conflicts["record_count"] and not resolution["left_open"]
        with setup.target_conn() as conn:
            phone = conn.execute(
                "SELECT phone FROM public.patients WHERE id = %s",
                (uuid_of(setup, "patients", both),),
            ).fetchone()
        assert phone == ("source phone",)
        again = client.post(path, headers=AUTH).json()  # no body: the stored strategy
        assert again["resolutions"][0]["already_resolved"] is True
        error_of(client.post(f"/api/differentials/{NIL}/resolve", headers=AUTH), 404)
        error_of(client.post("/api/differentials/123/resolve", headers=AUTH), 422)

        # the review queue: a bidirectional job under the manual rule parks the rest
        created = client.post(
            "/api/jobs",
            json={
                "name": "m",
                "type": "manual_sync",
                "direction": "bidirectional",
                "conflict": "manual",
            },
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        task = client.post("/api/jobs/m/run", headers=AUTH).json()["task"]
        done = wait_for_task(client, task["id"])
        assert done["status"] == "done" and done["result"]["status"] == "completed", done
        parked = sum(e["parked_for_review"] for e in done["result"]["entities"])
        assert parked == 2  # the two products changed on one side, deleted on the other

        items = client.get("/api/review").json()
        assert len(items) == 2 and {i["entity"] for i in items} == {"products"}
        assert all(i["job"] == "m" and i["side"] == "both" for i in items)
        assert client.get("/api/review?job=m&entity=products").json() == items
        assert client.get("/api/review?entity=patients").json() == []
        assert client.get("/api/jobs/m").json()["open_review_items"] == 2
        error_of(client.get("/api/review?limit=5000"), 422)

        deleted_in_target = next(i for i in items if i["target"] is None)
        assert deleted_in_target["source"]["name"] == "changed in the source"
        legacy = deleted_in_target["legacy_id"]
        assert legacy in source_ids(setup.source, "products")
        review_path = f"/api/review/{deleted_in_target['id']}/resolve"
        for body in ({"winner": "nobody"}, {}, {"winner": "target", "extra": 1}):
            error_of(client.post(review_path, json=body, headers=AUTH), 422)
        error_of(client.post(review_path, json={"winner": "target"}), 401)
        said = client.post(review_path, json={"winner": "target"}, headers=AUTH)
        assert said.status_code == 200, said.text
        assert said.json()["deleted"] == 1
        assert legacy not in source_ids(setup.source, "products")  # the target's delete won
        error_of(
            client.post(f"/api/review/{NIL}/resolve", json={"winner": "skip"}, headers=AUTH), 404
        )
        not_review = f"/api/review/{conflicts['id']}/resolve"
        message = error_of(client.post(not_review, json={"winner": "skip"}, headers=AUTH), 400)
        assert "not in the review queue" in message
        remaining = client.get("/api/review").json()
        assert [i["id"] for i in remaining] != [deleted_in_target["id"]] and len(remaining) == 1
        metrics = client.get("/metrics").text
        assert metric(metrics, "isthmus_review_items_open", entity="products") == 1
        assert metric(metrics, "isthmus_differentials_open", entity="products") >= 1
        assert value(setup.source, "patients", "phone", both) == "source phone"


# -- serve -------------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_auth_off_loopback(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[dict[str, Any]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        served.append({"app": app, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    with pytest.raises(UsageError, match="loopback"):
        commands.serve(setup.config, "0.0.0.0", 8000, no_auth=True)
    with pytest.raises(UsageError, match=TOKEN_VARIABLE):
        commands.serve(setup.config, "127.0.0.1", 8000)
    assert served == []

    result = commands.serve(setup.config, "localhost", 8123, no_auth=True)
    assert result.auth is False and served[-1]["port"] == 8123
    assert served[-1]["app"].state.isthmus.token is None

    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    result = commands.serve(setup.config, "0.0.0.0", 8124)
    assert result.auth is True and served[-1]["host"] == "0.0.0.0"
    assert served[-1]["app"].state.isthmus.token == TOKEN
    with pytest.raises(UsageError, match="loopback"):  # --no-auth stays loopback-only
        commands.serve(setup.config, "0.0.0.0", 8000, no_auth=True)
    with pytest.raises(UsageError, match="port"):
        commands.serve(setup.config, "127.0.0.1", 70000)

    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "example.com", "10.0.0.1"))


def test_cli_serve_refusal_is_exit_2_with_one_line(setup: Setup) -> None:
    env = cli_env()
    env.pop(TOKEN_VARIABLE, None)
    base = [isthmus_executable(), "--config", str(setup.config_path)]
    for args, named in (
        (["serve", "--host", "0.0.0.0", "--no-auth"], "loopback"),
        (["serve"], TOKEN_VARIABLE),
    ):
        said = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        assert said.returncode == 2, said.stdout + said.stderr
        (line,) = said.stderr.strip().splitlines()
        assert line.startswith("isthmus: error:") and named in line
    as_json = subprocess.run(
        [*base, "--json", "serve", "--host", "0.0.0.0", "--no-auth"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["exit_code"] == 2
