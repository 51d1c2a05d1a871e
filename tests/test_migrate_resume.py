"""Killing ``isthmus migrate`` at any instant and running it again loses nothing and
duplicates nothing; Ctrl-C and SIGTERM pause it; a failed checkpoint is retried.

Each run is the installed ``isthmus`` console script in its own process, killed with
SIGKILL (no cleanup at all), SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import run_sql
from isthmus.demo import generate_legacy
from isthmus.urls import DatabaseURL
from migrate_support import (
    DEMO_ENTITIES,
    STATE,
    Setup,
    check_equal,
    checkpoints,
    fetch,
    prepare_target,
    result_entities,
)

SCALE = 20  # 24,180 rows
BATCH = "200"
SEED = 20240917
SQLITE_KILLS = 8  # at least 5 must land while the run is still going (more: tests/chaos)
MYSQL_KILLS = 2


@dataclass
class Landing:
    """Where a kill left the target: the checkpoint left unfinished, if any."""

    point: str
    was_running: bool
    entity: str | None = None
    processed: int = 0
    last_processed_id: str | None = None
    completed: frozenset[str] = frozenset()  # entities whose pass had completed

    def __str__(self) -> str:
        where = (
            f"{self.entity} after {self.processed} rows (key {self.last_processed_id})"
            if self.entity
            else "no entity in progress"
        )
        return f"kill {self.point}: {where}" + ("" if self.was_running else " (had exited)")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def sessions_gone(setup: Setup) -> None:
    """Wait until the killed process's server sessions have ended (PostgreSQL notices a dead
    client when it next talks to it); a run started before would find its locks held."""
    database = setup.target.database

    def gone() -> bool:
        with setup.target_conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (database,),
            ).fetchone()
        return row is not None and row[0] == 0

    wait_until(gone, "the killed process's sessions to end")


def unfinished(setup: Setup) -> list[dict[str, Any]]:
    return [c for c in checkpoints(setup) if c["status"] != "completed"]


@dataclass(frozen=True)
class KillPoint:
    """Kill once ``entity`` has committed ``rows`` rows (its checkpoint says so), ``delay``
    seconds later; with no entity, ``delay`` seconds after the start; with entity "*", once
    every entity is completed (the deferred DDL runs then)."""

    delay: float
    entity: str | None = None
    rows: int = 0

    def __str__(self) -> str:
        if self.entity is None:
            return f"{self.delay:.3f}s after start"
        if self.entity == "*":
            return f"{self.delay:.3f}s after the last entity completed"
        return f"{self.delay:.3f}s after {self.entity} reached {self.rows} rows"


def reached(setup: Setup, point: KillPoint) -> Callable[[psycopg.Connection[Any]], bool]:
    """Whether this run got to ``point`` (checkpoints of earlier runs do not count)."""
    table = sql.Identifier(STATE, "migration_checkpoints")
    earlier = [c["id"] for c in checkpoints(setup) if c["status"] == "completed"]
    if point.entity == "*":
        query = sql.SQL(
            "SELECT count(*) = %s FROM {} WHERE status = 'completed' AND NOT (id = ANY(%s))"
        ).format(table)
        params: tuple[Any, ...] = (len(DEMO_ENTITIES), earlier)
    else:
        query = sql.SQL(
            "SELECT count(*) > 0 FROM {} WHERE entity_type = %s AND records_processed >= %s"
            " AND NOT (id = ANY(%s))"
        ).format(table)
        params = (point.entity, point.rows, earlier)

    def check(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(query, params).fetchone()
        return bool(row and row[0])

    return check


def kill_at(setup: Setup, point: KillPoint, sig: int = signal.SIGKILL) -> Landing:
    proc = setup.popen("migrate", "--batch-size", BATCH)
    try:
        if point.entity is not None:
            condition = reached(setup, point)
            with setup.target_conn() as conn:
                while proc.poll() is None and not condition(conn):
                    time.sleep(0.002)
        time.sleep(point.delay)  # the random part of the kill point, not a wait for something
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    was_running = proc.returncode == -sig
    assert was_running or proc.returncode == 0, (proc.returncode, err)
    sessions_gone(setup)
    landing = Landing(str(point), was_running)
    left = unfinished(setup)
    assert len(left) <= 1, left  # entities run one after the other
    landing.completed = frozenset(
        c["entity_type"] for c in checkpoints(setup) if c["status"] == "completed"
    )
    for c in left:
        assert c["status"] == "in_progress", c
        landing.entity = c["entity_type"]
        landing.processed = c["records_processed"]
        landing.last_processed_id = c["last_processed_id"]
    return landing


def complete(setup: Setup, landing: Landing | None = None) -> dict[str, dict[str, Any]]:
    """Run migrate to the end; check the resumed entity went on from where it stopped."""
    done = setup.cli("--json", "migrate", "--batch-size", BATCH)
    assert done.returncode == 0, done.stdout + done.stderr
    entities = result_entities(done.stdout)
    assert list(entities) == DEMO_ENTITIES
    for name, e in entities.items():
        assert e["status"] == "completed" and e["quarantined"] == 0, e
        if landing is not None and name == landing.entity:
            assert e["resumed_after"] == landing.last_processed_id, (e, str(landing))
            assert e["rows_read"] == setup.counts[name] - landing.processed, (e, str(landing))
        else:
            assert e["resumed_after"] is None, e
        if landing is not None and name in landing.completed:  # a new pass with nothing to do
            assert e["inserted"] == e["updated"] == 0, (e, str(landing))
    return entities


def assert_consistent(
    setup: Setup, before: frozenset[str] = frozenset(), *, count_passes: bool = True
) -> None:
    """Row-for-row equality; every checkpoint completed, none left open: one per entity,
    two for the ``before`` entities (completed before a kill, then passed over again)."""
    assert check_equal(setup.config).rows == setup.counts
    cps = checkpoints(setup)
    assert {c["status"] for c in cps} == {"completed"}, [
        c for c in cps if c["status"] != "completed"
    ]
    for name in DEMO_ENTITIES:
        mine = [c for c in cps if c["entity_type"] == name]
        assert not count_passes or len(mine) == (2 if name in before else 1), mine
        final = mine[-1]
        assert final["operation_type"] == "differential_migration"
        assert final["records_processed"] == final["records_total"] == setup.counts[name], final


def kill_points(
    rng: random.Random, counts: dict[str, int], where: list[str | None]
) -> list[KillPoint]:
    """A kill point for each item of ``where``: ``None`` a random time from the start, "*"
    the deferred DDL at the end, an entity a random row of it plus a few batches' time."""
    points = []
    for entity in where:
        if entity is None:
            points.append(KillPoint(round(rng.uniform(0.3, 0.9), 3)))
        elif entity == "*":
            points.append(KillPoint(round(rng.uniform(0.0, 0.03), 3), "*"))
        else:
            rows = rng.randrange(counts[entity])
            points.append(KillPoint(round(rng.uniform(0.0, 0.015), 3), entity, rows))
    return points


def kill_and_resume(
    source: DatabaseURL,
    counts: dict[str, int],
    points: list[KillPoint],
    pg_databases: PgDatabases,
    directory: Path,
) -> list[Landing]:
    """For each point: a fresh target, a run killed there, a run to the end, the checks."""
    print("kill points:", ", ".join(map(str, points)))
    landings = []
    for n, point in enumerate(points):
        target = pg_databases.create("isthmus_kill")
        setup = prepare_target(source, target, directory / f"kill{n}", counts)
        landing = kill_at(setup, point)
        print(landing)
        landings.append(landing)
        complete(setup, landing)
        assert_consistent(setup, landing.completed)
    return landings


@pytest.fixture(scope="module")
def sqlite_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatabaseURL, dict[str, int]]:
    from isthmus.urls import parse_url

    url = parse_url(f"sqlite:///{tmp_path_factory.mktemp('legacy') / 'legacy.db'}")
    return url, generate_legacy(url, scale=SCALE)


def test_sigkill_at_random_points_sqlite(
    sqlite_source: tuple[DatabaseURL, dict[str, int]],
    pg_databases: PgDatabases,
    tmp_path: Path,
) -> None:
    source, counts = sqlite_source
    assert sum(counts.values()) >= 20_000
    where: list[str | None] = [None, "offices", "patients", "orders", "orders"]
    where += ["products", "products", "*"]
    assert len(where) == SQLITE_KILLS
    points = kill_points(random.Random(SEED), counts, where)
    landings = kill_and_resume(source, counts, points, pg_databases, tmp_path)
    killed = [x for x in landings if x.was_running]
    assert len(killed) >= 5, [str(x) for x in landings]
    # the kills landed in different entities, and at different rows of them (where exactly
    # depends on the machine's speed: the small entities pass in a few milliseconds)
    assert len({x.entity for x in killed if x.entity}) >= 3, [str(x) for x in landings]
    assert len({x.processed for x in killed if x.entity and x.processed}) >= 3, [
        str(x) for x in landings
    ]


def test_successive_kills_then_resume(
    sqlite_source: tuple[DatabaseURL, dict[str, int]],
    pg_databases: PgDatabases,
    tmp_path: Path,
) -> None:
    """Killed again while resuming from a kill, several times over, then run to the end."""
    source, counts = sqlite_source
    setup = prepare_target(source, pg_databases.create("isthmus_kill"), tmp_path, counts)
    rng = random.Random(SEED + 1)
    points = kill_points(rng, counts, ["patients", "orders", "orders", "products"])
    print("kill points:", ", ".join(map(str, points)))
    landing: Landing | None = None
    for point in points:
        landing = kill_at(setup, point)
        print(landing)
    assert landing is not None
    complete(setup, landing)
    assert_consistent(setup, count_passes=False)


def test_sigkill_at_random_points_mariadb(
    mysql_databases: MysqlDatabases, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    source = mysql_databases.create("isthmus_kill")
    counts = generate_legacy(source, scale=SCALE)
    where: list[str | None] = ["orders", "products", "products"]
    points = kill_points(random.Random(SEED + 2), counts, where)
    landings = kill_and_resume(source, counts, points, pg_databases, tmp_path)
    landed = [x for x in landings if x.was_running and x.entity]
    assert len(landed) >= MYSQL_KILLS, [str(x) for x in landings]


def in_progress_with(setup: Setup, entity: str, rows: int) -> Callable[[], bool]:
    def check() -> bool:
        return any(
            c["entity_type"] == entity
            and c["status"] == "in_progress"
            and c["records_processed"] >= rows
            for c in checkpoints(setup)
        )

    return check


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_pauses_and_the_next_run_resumes(
    sig: int,
    sqlite_source: tuple[DatabaseURL, dict[str, int]],
    pg_databases: PgDatabases,
    tmp_path: Path,
) -> None:
    source, counts = sqlite_source
    setup = prepare_target(source, pg_databases.create("isthmus_pause"), tmp_path, counts)
    proc = setup.popen("migrate", "--batch-size", BATCH)
    try:
        # mid-way through products, the largest entity
        wait_until(in_progress_with(setup, "products", 2000), "products to be half-way")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "products paused after key" in lines[0], err
    cps = {c["entity_type"]: c for c in checkpoints(setup)}
    paused = cps["products"]
    assert paused["status"] == "paused", paused
    assert paused["last_processed_id"] is not None and paused["records_processed"] >= 2000
    assert paused["last_processed_id"] in lines[0]
    assert all(cps[n]["status"] == "completed" for n in DEMO_ENTITIES if n != "products")
    # the paused batch was rolled back whole: the target holds exactly the rows counted
    with setup.target_conn() as conn:
        row = conn.execute("SELECT count(*) FROM public.products").fetchone()
    assert row is not None and row[0] == paused["records_processed"]

    entities = complete(
        setup,
        Landing(
            "SIGINT/SIGTERM",
            True,
            "products",
            paused["records_processed"],
            paused["last_processed_id"],
        ),
    )
    assert entities["products"]["checkpoint_id"] == str(paused["id"])
    assert entities["products"]["inserted"] == counts["products"] - paused["records_processed"]
    # the other entities made a second pass that wrote nothing
    assert all(entities[n]["inserted"] == entities[n]["updated"] == 0 for n in DEMO_ENTITIES[:-1])
    assert check_equal(setup.config).rows == counts
    final = checkpoints(setup)
    assert {c["status"] for c in final} == {"completed"}
    assert [c["entity_type"] for c in final].count("products") == 1


def test_failed_checkpoint_is_retried_by_the_next_run(
    sqlite_source: tuple[DatabaseURL, dict[str, int]],
    pg_databases: PgDatabases,
    tmp_path: Path,
) -> None:
    from isthmus.urls import parse_url

    # a copy of the source, with one order row pointing at a patient that does not exist
    original, counts = sqlite_source
    copy = tmp_path / "legacy.db"
    copy.write_bytes(Path(original.database or "").read_bytes())
    source = parse_url(f"sqlite:///{copy}")
    order_ids = [r[0] for r in fetch(source, "SELECT id FROM orders ORDER BY id")]
    bad_id = order_ids[len(order_ids) // 2]
    ((patient,),) = fetch(source, "SELECT patient_id FROM orders WHERE id = %s", (bad_id,))
    run_sql(source, [("UPDATE orders SET patient_id = %s WHERE id = %s", [999_999_999, bad_id])])
    setup = prepare_target(
        source,
        pg_databases.create("isthmus_fail"),
        tmp_path,
        counts,
        migration='on_orphan = "fail"',
    )

    failed = setup.cli("--json", "migrate", "--batch-size", BATCH)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    error = json.loads(failed.stdout)["error"]
    assert str(bad_id) in error and "999999999" in error and "patient_id" in error, error
    cps = {c["entity_type"]: c for c in checkpoints(setup)}
    assert [n for n in DEMO_ENTITIES if n in cps] == DEMO_ENTITIES[:5]  # products not begun
    orders = cps["orders"]
    assert orders["status"] == "failed" and str(bad_id) in (orders["error_message"] or "")
    assert orders["last_processed_id"] is not None
    assert int(orders["last_processed_id"]) < bad_id
    with setup.target_conn() as conn:
        row = conn.execute("SELECT count(*) FROM public.orders").fetchone()
    assert row is not None and row[0] == orders["records_processed"] > 0

    # the same run again fails the same way, on the same row (the batches written before the
    # failure form a prefix, which may be longer this time: they are pipelined)
    again = setup.cli("migrate", "--batch-size", BATCH)
    assert again.returncode == 3 and str(bad_id) in again.stderr
    (still,) = checkpoints(setup, "orders")  # the same checkpoint: failed → in_progress → failed
    assert still["id"] == orders["id"] and still["status"] == "failed"
    assert int(orders["last_processed_id"]) <= int(still["last_processed_id"]) < bad_id
    with setup.target_conn() as conn:
        row = conn.execute("SELECT count(*) FROM public.orders").fetchone()
    assert row is not None and row[0] == still["records_processed"]
    orders = still

    # fixed in the source: the failed checkpoint goes failed → in_progress → completed
    run_sql(source, [("UPDATE orders SET patient_id = %s WHERE id = %s", [patient, bad_id])])
    entities = complete(
        setup,
        Landing(
            "failure", True, "orders", orders["records_processed"], orders["last_processed_id"]
        ),
    )
    assert entities["orders"]["checkpoint_id"] == str(orders["id"])
    retried = checkpoints(setup, "orders")
    assert len(retried) == 1 and retried[0]["status"] == "completed"
    assert retried[0]["error_message"] is None  # the retry cleared it
    assert check_equal(setup.config).rows == counts
