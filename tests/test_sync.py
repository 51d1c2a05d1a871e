"""Job runs against real databases: one-way and bidirectional runs converge, each conflict
rule (and the review queue) does what it says, nothing is echoed back, statistics add up."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dialect_support import quote
from diff_support import (
    CONFLICTED,
    DELETED,
    DIALECTS,
    MISSING,
    Plantation,
    legacy_of,
    migrated,
    plant_everything,
    source_url,
    uuid_of,
    value,
)
from diff_support import ids as source_ids
from isthmus import commands
from isthmus.errors import IllegalTransition, UsageError
from isthmus.urls import DatabaseURL
from migrate_support import Setup, check_equal, fetch
from test_diff_resolve import give_products_a_sequence


def remaining(setup: Setup) -> dict[str, dict[str, dict[str, int]]]:
    """What a diff still finds, by entity (entities with nothing left out)."""
    result = commands.diff(setup.config)
    return {e.entity: e.to_dict()["counts"] for e in result.entities if e.found.total}


def job(setup: Setup, name: str, *args: str) -> None:
    said = setup.cli("jobs", "create", name, *args)
    assert said.returncode == 0, said.stdout + said.stderr


def run(setup: Setup, name: str) -> dict[str, Any]:
    said = setup.cli("--json", "jobs", "run", name)
    assert said.returncode in (0, 1), said.stdout + said.stderr
    doc: dict[str, Any] = json.loads(said.stdout)
    return doc


def both_sides_row(planted: Plantation) -> int:
    (row,) = [p for p in planted.planted if p.kind == CONFLICTED and p.side == "both"]
    return row.legacy_id


@pytest.mark.parametrize("dialect", DIALECTS)
def test_one_way_run_makes_the_target_equal_the_source_and_leaves_target_rows_alone(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    planted = plant_everything(setup)
    job(setup, "nightly", "--type", "manual_sync", "--direction", "source_to_target")

    done = run(setup, "nightly")
    assert done["status"] == "completed"
    assert done["records_failed"] == 0
    expected = len(planted.planted)  # every planted record flows to the target
    assert done["records_synced"] == expected
    # only the row the target created is left: a one-way job does not delete it
    assert remaining(setup) == {"products": {MISSING: {}, CONFLICTED: {}, DELETED: {"target": 1}}}
    (created,) = planted.created["products"]
    with setup.target_conn() as conn:
        conn.execute("DELETE FROM public.products WHERE id = %s", (created,))
    check_equal(setup.config)

    again = run(setup, "nightly")  # nothing changed since: nothing moves
    assert again["records_synced"] == 0 and again["status"] == "completed"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bidirectional_run_converges_both_databases_with_no_echo(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    planted = plant_everything(setup)
    if dialect == "postgresql":
        give_products_a_sequence(source)
    job(setup, "both", "--type", "manual_sync", "--direction", "bidirectional")
    both = both_sides_row(planted)

    done = run(setup, "both")
    assert done["status"] == "completed", done
    assert done["records_failed"] == 0, done
    assert done["records_synced"] == len(planted.planted) + 1  # + the row created in the target
    assert remaining(setup) == {}
    check_equal(setup.config)
    # target-only changes reached the source; source_wins settled the both-sides one
    for p in planted.planted:
        if p.kind == CONFLICTED and p.side == "target" and p.column:
            got = value(source, p.entity, p.column, p.legacy_id)
            assert str(got) == p.values[1], p
    assert value(source, "patients", "phone", both) == "source phone"
    (created,) = planted.created["products"]
    assert legacy_of(setup, "products", created) in source_ids(source, "products")

    again = run(setup, "both")  # what isthmus applied does not come back
    assert again["records_synced"] == 0, again
    assert all(not e["flow"] or not any(e["flow"].values()) for e in again["entities"]), again


def test_target_wins_rule_settles_both_sides_changes_in_the_target_s_favour(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    planted = plant_everything(setup)
    both = both_sides_row(planted)
    job(setup, "tw", "--type", "manual_sync", "--direction", "bidirectional", "--conflict",
        "target_wins")  # fmt: skip
    done = run(setup, "tw")
    assert done["status"] == "completed" and done["records_failed"] == 0
    assert value(sqlite_url, "patients", "phone", both) == "target phone"
    # deleted in the target while changed in the source: the target's delete wins
    (gone,) = [p.legacy_id for p in planted.planted if p.kind == MISSING and p.side == "both"]
    assert gone not in source_ids(sqlite_url, "products")
    # deleted in the source while changed in the target: the target's row comes back
    (back,) = [p.legacy_id for p in planted.planted if p.kind == DELETED and p.side == "both"]
    assert back in source_ids(sqlite_url, "products")
    assert remaining(setup) == {}
    check_equal(setup.config)


def test_manual_rule_parks_both_sides_changes_for_review_until_a_person_decides(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    planted = plant_everything(setup)
    both = both_sides_row(planted)
    job(setup, "m", "--type", "manual_sync", "--direction", "bidirectional", "--conflict",
        "manual")  # fmt: skip
    done = run(setup, "m")
    assert done["status"] == "completed"
    parked = sum(e["parked_for_review"] for e in done["entities"])
    both_sides = [p for p in planted.planted if p.side == "both"]
    assert parked == len(both_sides) == 3

    listed = setup.cli("--json", "review", "list")
    assert listed.returncode == 0, listed.stderr
    items = {i["legacy_id"]: i for i in json.loads(listed.stdout)}
    assert set(items) == {p.legacy_id for p in both_sides}
    phone = items[both]
    assert phone["source"]["phone"] == "source phone"
    assert phone["target"]["phone"] == "target phone"
    assert phone["job"] == "m" and phone["side"] == "both"
    text = setup.cli("review", "list")
    assert "source phone" in text.stdout and "target phone" in text.stdout

    # nothing was applied to the parked records; a second run does not park them twice
    assert value(sqlite_url, "patients", "phone", both) == "source phone"
    again = run(setup, "m")
    assert sum(e["parked_for_review"] for e in again["entities"]) == 0

    said = setup.cli("review", "resolve", phone["id"], "--winner", "target")
    assert said.returncode == 0, said.stdout + said.stderr
    assert value(sqlite_url, "patients", "phone", both) == "target phone"
    for legacy_id, item in items.items():
        if legacy_id != both:
            said = setup.cli("review", "resolve", item["id"], "--winner", "source")
            assert said.returncode == 0, said.stdout + said.stderr
    assert json.loads(setup.cli("--json", "review", "list").stdout) == []
    repeated = setup.cli("review", "resolve", phone["id"], "--winner", "source")
    assert "already resolved" in repeated.stdout  # idempotent: the target's version stays
    assert value(sqlite_url, "patients", "phone", both) == "target phone"
    assert remaining(setup) == {}
    check_equal(setup.config)


def test_statistics_add_up_over_runs(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    job(setup, "s", "--type", "manual_sync")
    patients = source_ids(sqlite_url, "patients")[:5]
    from dialect_support import run_sql

    table = quote(sqlite_url, "patients")
    update = f"UPDATE {table} SET notes = %s WHERE id = %s"  # noqa: S608
    run_sql(sqlite_url, [(update, ["one", p]) for p in patients])
    first = run(setup, "s")
    run_sql(sqlite_url, [(update, ["two", patients[0]])])
    second = run(setup, "s")
    assert (first["records_synced"], second["records_synced"]) == (5, 1)
    shown = json.loads(setup.cli("--json", "jobs", "show", "s").stdout)["job"]
    assert shown["total_records_synced"] == 6
    assert float(shown["success_rate"]) == 100.0
    assert shown["status"] == "completed"
    assert shown["last_run_at"] is not None and shown["next_run_at"] is None
    durations = [round(r["seconds"] * 1000) for r in (first, second)]
    assert abs(shown["average_duration_ms"] - sum(durations) / 2) <= 2
    assert shown["metadata"]["run_count"] == 2
    checkpoints = json.loads(setup.cli("--json", "jobs", "show", "s").stdout)["recent_checkpoints"]
    assert {c["operation_type"] for c in checkpoints} == {"sync_operation"}


def test_job_commands_follow_the_state_machine_and_refuse_bad_input(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    config = setup.config
    with pytest.raises(UsageError, match="needs --cron"):
        commands.jobs_create(config, "x", "scheduled_sync")
    with pytest.raises(UsageError, match="not a cron expression"):
        commands.jobs_create(config, "x", "scheduled_sync", cron="61 * * * *")
    with pytest.raises(UsageError, match="unknown entity nope"):
        commands.jobs_create(config, "x", "manual_sync", entities=["nope"])
    created = commands.jobs_create(config, "every5", "scheduled_sync", cron="*/5 * * * *")
    assert created.status == "scheduled" and created.next_run_at is not None
    assert created.schedule_config == {"cron": "*/5 * * * *", "timezone": "UTC"}
    assert created.next_run_at.minute % 5 == 0
    with pytest.raises(IllegalTransition, match="cannot go from scheduled to paused"):
        commands.jobs_pause(config, "every5")
    with pytest.raises(UsageError, match="not paused"):
        commands.jobs_resume(config, "every5")
    said = setup.cli("jobs", "cancel", "every5")
    assert said.returncode == 3 and "cannot go from scheduled to cancelled" in said.stderr
    ran = commands.jobs_run(config, "every5")
    assert ran.status == "completed" and ran.next_run_at is not None
    listed = {j.job_name: j for j in commands.jobs_list(config)}
    assert listed["every5"].status == "scheduled"  # a scheduled job goes back to its schedule
    assert listed["every5"].next_run_at == ran.next_run_at
    said = setup.cli("jobs", "run", "nope")
    assert said.returncode == 2 and "no job named 'nope'" in said.stderr
    table = setup.cli("jobs", "list")
    assert "every5" in table.stdout and "scheduled" in table.stdout


def one(conn: Any, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def test_a_run_interrupted_after_inserting_into_the_source_maps_instead_of_inserting_again(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """The crash window of a target-created row: the source insert committed, its mapping not.
    The next run finds the intent its predecessor left and maps the row it had inserted."""
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    job(setup, "b", "--type", "manual_sync", "--direction", "bidirectional")
    products = source_ids(sqlite_url, "products")
    floor = products[-1]
    template = products[0]
    names = [r[1] for r in fetch(sqlite_url, "PRAGMA table_info(products)") if r[1] != "id"]
    cols = ", ".join(quote(sqlite_url, n) for n in names)
    # the target gets a new row (as the new application would write it) ...
    with setup.target_conn() as conn:
        conn.execute(
            "INSERT INTO public.products SELECT gen_random_uuid(), order_id, 'CRASH-SKU',"
            " 'crash row', quantity, unit_price, weight_g, created_at, updated_at"
            " FROM public.products WHERE id = %s",
            (uuid_of(setup, "products", template),),
        )
        made = one(conn, "SELECT id::text FROM public.products WHERE sku = 'CRASH-SKU'")
    from dialect_support import run_sql

    # ... a run recorded its intent, inserted the row into the source and died there
    run_sql(
        sqlite_url,
        [
            f"INSERT INTO products ({cols}) SELECT {cols} FROM products WHERE id = {template}",  # noqa: S608
            "UPDATE products SET sku = 'CRASH-SKU', name = 'crash row' WHERE id = (SELECT max(id) FROM products)",
        ],
    )
    with setup.target_conn() as conn:
        job_id = one(conn, "SELECT id FROM isthmus.synchronization_jobs WHERE job_name = 'b'")
        cp = one(
            conn,
            "INSERT INTO isthmus.migration_checkpoints (id, operation_type, entity_type,"
            " records_processed, records_total, batch_size, status, job_id, metadata)"
            " VALUES (gen_random_uuid(), 'sync_operation', 'products', 0, 1, 1, 'pending', %s,"
            " jsonb_build_object('command', 'sync-apply', 'intent',"
            " jsonb_build_object('floor', %s::int, 'target_keys', jsonb_build_array(%s::text))))"
            " RETURNING id",
            job_id,
            floor,
            made,
        )
        conn.execute(
            "UPDATE isthmus.migration_checkpoints SET status = 'in_progress' WHERE id = %s", (cp,)
        )

    done = run(setup, "b")
    assert done["reconciled"] == 1, done
    rows = fetch(sqlite_url, "SELECT id FROM products WHERE sku = 'CRASH-SKU'")
    assert len(rows) == 1  # not inserted a second time
    assert legacy_of(setup, "products", made) == rows[0][0]
    assert remaining(setup) == {}
    check_equal(setup.config)


def apply_checkpoints(setup: Setup, status: str = "completed") -> int:
    with setup.target_conn() as conn:
        return int(
            one(
                conn,
                "SELECT count(*) FROM isthmus.migration_checkpoints WHERE"
                " metadata->>'command' = 'sync-apply' AND status = %s",
                status,
            )
        )


def wait_for(condition: Any, proc: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the test could act on it"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def change_products(setup: Setup, n: int, text: str) -> list[int]:
    from dialect_support import run_sql

    keys = source_ids(setup.source, "products")[:n]
    run_sql(
        setup.source,
        [(f"UPDATE products SET name = %s WHERE id IN ({','.join(map(str, keys))})", [text])],  # noqa: S608
    )
    return keys


def test_a_paused_run_stops_at_a_batch_and_resumes_where_it_stood(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    job(setup, "p", "--type", "manual_sync", "--batch-size", "5")
    changed = change_products(setup, 1200, "paused run")
    proc = setup.popen("--json", "jobs", "run", "p")
    wait_for(lambda: apply_checkpoints(setup) >= 3, proc)
    said = setup.cli("jobs", "pause", "p")
    assert said.returncode == 0, said.stderr
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    doc = json.loads(out)
    assert doc["status"] == "paused"
    assert 3 * 5 <= doc["records_synced"] < len(changed)
    assert commands.jobs_show(setup.config, "p").job.status == "paused"
    assert apply_checkpoints(setup, "paused") == 1
    with setup.target_conn() as conn:
        moved = one(conn, "SELECT count(*) FROM public.products WHERE name = 'paused run'")
    assert moved == doc["records_synced"]

    resumed = setup.cli("--json", "jobs", "resume", "p")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rest = json.loads(resumed.stdout)
    assert rest["status"] == "completed"
    assert doc["records_synced"] + rest["records_synced"] == len(changed)
    assert commands.jobs_show(setup.config, "p").job.status == "completed"
    assert remaining(setup) == {}
    check_equal(setup.config)


def test_a_cancelled_run_stops_for_good(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    job(setup, "c", "--type", "manual_sync", "--batch-size", "5")
    change_products(setup, 1200, "cancelled run")
    proc = setup.popen("--json", "jobs", "run", "c")
    wait_for(lambda: apply_checkpoints(setup) >= 2, proc)
    assert setup.cli("jobs", "cancel", "c").returncode == 0
    out, err = proc.communicate(timeout=120)
    assert json.loads(out)["status"] == "cancelled", out + err
    again = setup.cli("jobs", "run", "c")
    assert again.returncode == 2 and "is cancelled: it cannot run again" in again.stderr


@pytest.mark.parametrize("dialect", ["sqlite", "mysql"])
def test_killed_runs_lose_and_duplicate_nothing_in_either_database(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """kill -9 of a bidirectional run at several points, then a run to the end: both
    databases equal, every target-made row in the source exactly once."""
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    job(setup, "k", "--type", "manual_sync", "--direction", "bidirectional", "--batch-size", "4")
    change_products(setup, 400, "source side")
    made = 60
    with setup.target_conn() as conn:
        conn.execute(
            "INSERT INTO public.products SELECT gen_random_uuid(), order_id, 'T-' || n,"
            " 'made in the target', quantity, unit_price, weight_g, now(), now()"
            " FROM (SELECT p.*, row_number() OVER (ORDER BY p.id) AS n FROM public.products p"
            " LIMIT %s) AS x",
            (made,),
        )
        conn.execute(
            "UPDATE public.patients SET notes = 'target side' WHERE id IN"
            " (SELECT id FROM public.patients ORDER BY id LIMIT 100)"
        )
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        proc = setup.popen("jobs", "run", "k")
        done_before = apply_checkpoints(setup)
        target = done_before + rng.randint(1, 12)
        try:
            wait_for(lambda t=target: apply_checkpoints(setup) >= t, proc, timeout=120)
        except AssertionError:
            out, err = proc.communicate()
            assert proc.returncode == 0, out + err  # it ended by itself: successfully
            break
        time.sleep(rng.random() * 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 2
    final = setup.cli("--json", "jobs", "run", "k")
    assert final.returncode == 0, final.stdout + final.stderr
    assert json.loads(final.stdout)["status"] == "completed"
    made_rows = fetch(
        source,
        f"SELECT sku FROM {quote(source, 'products')} WHERE name = 'made in the target'",  # noqa: S608
    )
    assert len(made_rows) == made and len({r[0] for r in made_rows}) == made
    assert remaining(setup) == {}
    check_equal(setup.config)
    with setup.target_conn() as conn:
        stuck = one(
            conn,
            "SELECT count(*) FROM isthmus.migration_checkpoints WHERE status = 'in_progress'",
        )
    assert stuck == 0


def test_a_differential_migration_job_migrates_what_changed(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    change_products(setup, 30, "migrated by a job")
    job(setup, "dm", "--type", "differential_migration", "--entities", "orders,products")
    done = run(setup, "dm")
    assert done["status"] == "completed", done
    assert done["records_synced"] == 30
    assert [e["entity"] for e in done["entities"]] == ["orders", "products"]
    check_equal(setup.config)
    shown = commands.jobs_show(setup.config, "dm").job
    assert shown.total_records_synced == 30 and shown.status == "completed"
