"""Concurrency trials (docs/reliability.md, "Concurrency"): two ``migrate`` processes on one
target at once, two workers sharing one queue, and sync jobs running back to back while an
application writes to both databases at a steady rate.

Every trial ends by proving that nothing was lost or duplicated: the target is a row-for-row
copy of the source with one mapping per row (``check_equal``), ``isthmus diff`` finds
nothing, and the witnesses each trial keeps (checkpoint intervals, a log of the job status
changes, the load generator's own record of what it wrote last) agree with what the
databases hold. Sizes come from ``chaos_support``: a smoke run in ``make test``, the full
trials with ``ISTHMUS_CHAOS_FULL=1`` (``make chaos``).
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from chaos_support import FULL, trials
from psycopg import sql

import isthmus.sync
from conftest import MysqlDatabases, PgDatabases
from dialect_support import mysql_admin, quote, run_sql
from diff_support import source_url
from isthmus import commands
from isthmus.dialects.mysql_write import MySQLWriting
from isthmus.dialects.pg_write import PostgreSQLWriting
from isthmus.dialects.sqlite_write import SQLiteWriting
from isthmus.diff import run_diff
from isthmus.sync import JobBusy
from isthmus.urls import DatabaseURL, parse_url
from migrate_support import Setup, check_equal, fetch, make_setup

pytestmark = pytest.mark.chaos

BUSY = "another isthmus process"  # the one-line refusal of a busy entity, chunk or job


def report(fault: str, done: int, survived: int, failures: list[str]) -> None:
    """The figure docs/reliability.md quotes; the test fails on the first lost trial."""
    print(f"\nconcurrency: {fault} {survived}/{done} survived")
    assert not failures, f"{fault}: {done - survived} of {done} trial(s) lost:\n" + "\n".join(
        failures
    )


def run_trials(fault: str, count: int, trial: Callable[[int], None]) -> None:
    failures: list[str] = []
    survived = 0
    for n in range(count):
        try:
            trial(n)
            survived += 1
        except AssertionError as exc:
            failures.append(f"trial {n}: {exc}")
    report(fault, count, survived, failures)


def new_source(
    dialect: str, tmp_path: Path, n: int, pg: PgDatabases, mysql: MysqlDatabases | None
) -> DatabaseURL:
    if dialect == "sqlite":
        return parse_url(f"sqlite:///{tmp_path / f'legacy{n}.db'}")
    assert mysql is not None
    return mysql.create("isthmus_chaos")


def mysql_or_skip(request: pytest.FixtureRequest, dialect: str) -> MysqlDatabases | None:
    if dialect != "mysql":
        return None
    found: MysqlDatabases = request.getfixturevalue("mysql_databases")
    return found


def target_rows(setup: Setup, query: str | sql.Composed, *params: Any) -> list[tuple[Any, ...]]:
    with setup.target_conn() as conn:
        return [tuple(r) for r in conn.execute(query, params).fetchall()]


def no_differences(setup: Setup) -> None:
    found = commands.diff(setup.config)
    left = {e.entity: e.to_dict()["counts"] for e in found.entities if e.found.total}
    assert not left and found.exit_code == 0, f"isthmus diff still finds differences: {left}"


# -- 1. two migrate processes on one target --------------------------------------------------


@dataclass(frozen=True)
class Race:
    """Commands started at the same instant on one config, after ``prelude``."""

    name: str
    commands: tuple[tuple[str, ...], ...]
    prelude: str = "none"  # none | parents (all but products migrated) | migrated (+ changes)
    all_succeed: bool = False  # no command may be refused (they share no entity)


BATCH = ("--batch-size", "150")  # small batches: the runs last long enough to meet
RACES = [
    Race("same config", (("migrate", *BATCH), ("migrate", *BATCH))),
    Race(
        "one entity vs all",
        (("migrate", *BATCH), ("migrate", "--entity", "offices", "--entity", "profiles", *BATCH)),
    ),
    Race(
        "different entities",
        (("migrate", "--entity", "patients", *BATCH), ("migrate", "--entity", "products", *BATCH)),
        prelude="migrated",
        all_succeed=True,
    ),
    Race(
        "chunks vs whole entity",
        (
            ("migrate", "--entity", "products", "--chunk", "LOW", *BATCH),
            ("migrate", "--entity", "products", "--chunk", "HIGH", *BATCH),
            ("migrate", "--entity", "products", *BATCH),
        ),
        prelude="parents",
    ),
    Race(
        "overlapping chunks",
        (
            ("migrate", "--entity", "products", "--chunk", "LOW", *BATCH),
            ("migrate", "--entity", "products", "--chunk", "MIDDLE", *BATCH),
        ),
        prelude="parents",
    ),
    Race(
        "migrate vs sync job",
        (("migrate", *BATCH), ("jobs", "run", "live")),
        prelude="migrated",
    ),
]
PARENTS = ["offices", "profiles", "doctors", "patients", "orders"]


def plant_source_changes(setup: Setup, seed: int) -> None:
    """New patients and products (children of existing rows) and changed ones in the source."""
    url, rnd = setup.source, random.Random(seed)
    table = {t: quote(url, t) for t in ("patients", "products")}
    patients = fetch(url, f"SELECT * FROM {table['patients']} ORDER BY id LIMIT 20")  # noqa: S608
    products = fetch(url, f"SELECT * FROM {table['products']} ORDER BY id LIMIT 40")  # noqa: S608
    statements: list[tuple[str, list[Any]]] = []
    for row in patients:
        values = [row[1], f"New{rnd.randrange(10**6)}", *row[3:]]
        marks = ", ".join(["%s"] * len(values))
        cols = "doctor_id, first_name, last_name, birth_date, email, phone, balance, notes,"
        cols += " created_at, updated_at"
        statements.append((f"INSERT INTO {table['patients']} ({cols}) VALUES ({marks})", values))  # noqa: S608
    for row in products:
        values = [row[1], f"NEW-{rnd.randrange(10**9)}", *row[3:]]
        marks = ", ".join(["%s"] * len(values))
        cols = "order_id, sku, name, quantity, unit_price, weight_g, created_at, updated_at"
        statements.append((f"INSERT INTO {table['products']} ({cols}) VALUES ({marks})", values))  # noqa: S608
    for row in patients[::3]:
        update = f"UPDATE {table['patients']} SET notes = %s WHERE id = %s"  # noqa: S608
        statements.append((update, [f"changed {rnd.random()}", row[0]]))
    for row in products[::4]:
        update = f"UPDATE {table['products']} SET quantity = %s WHERE id = %s"  # noqa: S608
        statements.append((update, [rnd.randrange(1, 99), row[0]]))
    run_sql(url, statements)


def chunk_ranges(setup: Setup) -> dict[str, str]:
    keys = [int(r[0]) for r in fetch(setup.source, "SELECT id FROM products ORDER BY id")]
    mid, quarter = len(keys) // 2, len(keys) // 4
    return {
        "LOW": f"{keys[0]}:{keys[mid]}",
        "HIGH": f"{keys[mid] + 1}:{keys[-1]}",
        "MIDDLE": f"{keys[quarter]}:{keys[-1]}",
    }


def checkpoint_intervals(setup: Setup) -> list[tuple[str, str, datetime, datetime, str]]:
    """(entity, what, start, end, status) of every migrate and sync checkpoint: what is
    ``whole`` or ``chunk lo:hi`` (a migrate) or ``sync``."""
    found = target_rows(
        setup,
        "SELECT entity_type, operation_type::text, metadata->'chunk', job_id IS NOT NULL,"
        " started_at, coalesce(completed_at, updated_at), status::text"
        " FROM isthmus.migration_checkpoints WHERE started_at IS NOT NULL"
        " AND operation_type IN ('differential_migration', 'sync_operation')",
    )
    out = []
    for entity, operation, chunk, by_job, start, end, status in found:
        if operation == "sync_operation":
            what = "sync"
        elif chunk is not None:
            what = f"chunk {chunk[0]}:{chunk[1]}"
        else:
            what = "job migrate" if by_job else "whole"
        out.append((entity, what, start, end, status))
    return out


def assert_never_two_at_once(setup: Setup) -> None:
    """No two writers of one entity overlap in time, except chunks of disjoint key ranges."""
    spans = checkpoint_intervals(setup)
    for i, (entity, what, start, end, _) in enumerate(spans):
        for other_entity, other, o_start, o_end, _ in spans[i + 1 :]:
            if entity != other_entity or not (start < o_end and o_start < end):
                continue
            if what == other == "sync":
                continue  # one run's checkpoints; two runs are checked by the job witness
            if what.startswith("chunk") and other.startswith("chunk"):
                (lo, hi), (o_lo, o_hi) = (map(int, w.split()[1].split(":")) for w in (what, other))
                assert hi < o_lo or o_hi < lo, f"{entity}: {what} and {other} ran at once"
                continue
            raise AssertionError(
                f"{entity}: {what} ({start:%T.%f}–{end:%T.%f}) and {other} "
                f"({o_start:%T.%f}–{o_end:%T.%f}) worked on it at the same time"
            )


def race_trial(race: Race, setup: Setup) -> None:
    config = setup.config
    if race.prelude == "parents":
        assert commands.migrate(config, PARENTS).exit_code == 0
    elif race.prelude == "migrated":
        assert commands.migrate(config).exit_code == 0
        commands.jobs_create(config, "live", "manual_sync", direction="bidirectional")
        plant_source_changes(setup, seed=len(race.name))
    ranges = chunk_ranges(setup)
    argv = [tuple(ranges.get(a, a) for a in command) for command in race.commands]
    started = [setup.popen("--json", *args) for args in argv]
    ended: list[tuple[int, str, str]] = []
    for process in started:
        try:
            out, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        ended.append((process.returncode, out, err))
    said = "; ".join(
        f"{' '.join(a)} → exit {c}{'' if c == 0 else ': ' + e.strip()[-300:]}"
        for a, (c, _o, e) in zip(argv, ended, strict=True)
    )
    for code, _out, err in ended:
        refused = code == 3 and BUSY in err
        assert code == 0 or (refused and not race.all_succeed), f"{race.name}: {said}"
    assert any(code == 0 for code, _, _ in ended), f"{race.name}: every command refused: {said}"
    print(f"\nconcurrency:   {race.name}: {said}")
    # What a refused process left undone, a rerun does; chunks of products need a finish
    # unless a whole migrate of it came after them (a plain migrate covers it either way).
    assert commands.migrate(config).exit_code == 0, f"{race.name}: rerun ({said})"
    assert_never_two_at_once(setup)
    equal = check_equal(config)
    assert equal.total == sum(fetch_counts(setup).values()), f"{race.name}: {said}"
    no_differences(setup)


def fetch_counts(setup: Setup) -> dict[str, int]:
    url = setup.source
    return {
        t: int(fetch(url, f"SELECT count(*) FROM {quote(url, t)}")[0][0])  # noqa: S608
        for t in [*PARENTS, "products"]
    }


def test_two_migrates_at_once_never_share_an_entity_and_lose_nothing(
    pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """Each race run ``trials`` times on a fresh legacy database and target: every command
    either does its work or is refused naming the busy entity, writers of one entity never
    overlap (checkpoint intervals), and after a rerun the target equals the source."""
    # smoke: the three races most likely to collide; full: every race, four times
    races = RACES if FULL else [RACES[0], RACES[3], RACES[5]]
    count = trials(1, 4)

    def trial(n: int) -> None:
        race = races[n % len(races)]
        directory = tmp_path / f"race{n}"
        directory.mkdir()
        source = parse_url(f"sqlite:///{directory / 'legacy.db'}")
        setup = make_setup(source, pg_databases.create("isthmus_race"), directory, scale=1)
        race_trial(race, setup)

    run_trials("two migrate processes", count * len(races), trial)


# -- 2. two workers on one queue ---------------------------------------------------------------

WITNESS = """
CREATE SCHEMA chaos_witness;
CREATE TABLE chaos_witness.job_log (
    n bigserial PRIMARY KEY, job_id uuid, old_status text, new_status text,
    run_id text, last_run text, took_over boolean, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION chaos_witness.log_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       OR NEW.metadata->'run' IS DISTINCT FROM OLD.metadata->'run' THEN
        INSERT INTO chaos_witness.job_log (job_id, old_status, new_status, run_id, last_run,
                                           took_over)
        VALUES (NEW.id, OLD.status::text, NEW.status::text, NEW.metadata->'run'->>'id',
                NEW.metadata->'last_run'->>'run_id',
                (NEW.metadata->'last_run'->>'took_over')::boolean);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_witness AFTER UPDATE ON isthmus.synchronization_jobs
    FOR EACH ROW EXECUTE FUNCTION chaos_witness.log_job();
"""


@dataclass
class Witnessed:
    job: str
    run_id: str
    start: datetime
    end: datetime | None = None
    status: str | None = None


def witnessed_runs(setup: Setup) -> list[Witnessed]:
    """Every run the job status log shows, checked as it is read: a job starts a run only
    when its previous run has finished, and each finish closes the run that started."""
    log = target_rows(
        setup,
        "SELECT j.job_name, l.old_status, l.new_status, l.run_id, l.last_run, l.took_over, l.at"
        " FROM chaos_witness.job_log l JOIN isthmus.synchronization_jobs j ON j.id = l.job_id"
        " ORDER BY l.n",
    )
    runs: list[Witnessed] = []
    open_run: dict[str, Witnessed] = {}
    for job, old, new, run_id, last_run, took_over, at in log:
        if new == "running" and run_id and (old != "running" or open_run.get(job) is None):
            assert job not in open_run, (
                f"job {job}: run {run_id} started at {at:%T.%f} while run "
                f"{open_run[job].run_id} (since {open_run[job].start:%T.%f}) had not finished"
            )
            open_run[job] = Witnessed(job, run_id, at)
            runs.append(open_run[job])
        elif new == "running" and run_id and run_id != open_run[job].run_id:
            raise AssertionError(
                f"job {job}: run {run_id} took over run {open_run[job].run_id} at {at:%T.%f},"
                " while no process had died"
            )
        elif old == "running" and new != "running":
            current = open_run.pop(job, None)
            assert current is not None, f"job {job}: a run finished at {at:%T.%f}, none started"
            assert last_run == current.run_id, (
                f"job {job}: run {current.run_id} was closed by run {last_run}"
            )
            assert not took_over, f"job {job}: run {last_run} says it took over a run"
            current.end, current.status = at, new
    assert not open_run, f"runs that never finished: {sorted(open_run)}"
    return runs


def queue_overlaps(setup: Setup) -> list[str]:
    """Queue jobs of one procrastinate ``lock`` whose executions overlap."""
    spans = target_rows(
        setup,
        "SELECT j.id, j.lock, min(e.at) FILTER (WHERE e.type = 'started'),"
        " max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed', 'cancelled', 'aborted'))"
        " FROM isthmus.procrastinate_jobs j JOIN isthmus.procrastinate_events e"
        " ON e.job_id = j.id WHERE j.lock IS NOT NULL GROUP BY j.id, j.lock",
    )
    found = []
    ran = sorted((lock, start, end, i) for i, lock, start, end in spans if start is not None)
    for (lock, _, end, i), (lock2, start2, _, i2) in itertools.pairwise(ran):
        if lock == lock2 and (end is None or start2 < end):
            found.append(f"queue jobs {i} and {i2} ({lock}) executed at once")
    return found


def change_both_sides(setup: Setup, n: int, rnd: random.Random) -> tuple[int, int]:
    """A source-side change (an even patient) and a target-side one (an odd patient)."""
    ids = [int(r[0]) for r in fetch(setup.source, "SELECT id FROM patients ORDER BY id")]
    source_row = rnd.choice([i for i in ids if i % 2 == 0])
    target_row = rnd.choice([i for i in ids if i % 2 == 1])
    run_sql(setup.source, [("UPDATE patients SET notes = %s WHERE id = %s", [f"s{n}", source_row])])
    with setup.target_conn() as conn:
        conn.execute(
            "UPDATE public.patients SET notes = %s WHERE id = (SELECT uuid_id FROM"
            " isthmus.legacy_id_mappings WHERE entity_type = 'patients' AND legacy_id = %s)",
            (f"t{n}", target_row),
        )
    return source_row, target_row


def stop_worker(worker: subprocess.Popen[str]) -> tuple[int, str, str]:
    import signal

    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, err = worker.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, err = worker.communicate()
    return worker.returncode, out, err


def test_two_workers_never_run_a_job_twice_at_once(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """Two ``isthmus worker`` processes (two slots each) share one queue for ``seconds``
    while both databases change: a manual job and a scheduled one (due every second, queued
    by the workers' 10-second tick) on some of the same entities are asked for again and
    again (``jobs run --queue``), and now and then run here, outside the queue (``jobs
    run``). A trial is one run the job status log shows; it survives when it overlapped no
    other run of its job, nor a run of the other job (they share entities), and at the end
    nothing is lost."""
    seconds = trials(8, 100)
    setup = make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=1)
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    with setup.target_conn() as conn:
        conn.execute(WITNESS)
    commands.jobs_create(config, "hand", "manual_sync", direction="bidirectional")
    commands.jobs_create(
        config,
        "cron",
        "scheduled_sync",
        entities=["patients", "orders", "products"],
        direction="bidirectional",
        cron="* * * * * *",
    )
    rnd = random.Random(7)
    last: dict[int, str] = {}
    workers = [setup.popen("worker", "--concurrency", "2") for _ in range(2)]
    try:
        deadline = time.monotonic() + seconds
        n = refused = 0
        while time.monotonic() < deadline:
            n += 1
            s_row, t_row = change_both_sides(setup, n, rnd)
            last[s_row], last[t_row] = f"s{n}", f"t{n}"
            job = rnd.choice(["hand", "cron"])
            if n % 4 == 0:  # a run outside the queue, as `isthmus jobs run` in a shell
                try:
                    commands.jobs_run(config, job)
                except JobBusy:
                    refused += 1
            else:
                commands.jobs_run(config, job, queue=True)
            time.sleep(rnd.uniform(0.3, 2.0))
    finally:
        stopped = [stop_worker(w) for w in workers]
    for code, _out, err in stopped:
        assert code == 0, err[-2000:]
        assert "run failed" not in err, err[-2000:]

    runs = witnessed_runs(setup)
    by_job = {j: [r for r in runs if r.job == j] for j in ("hand", "cron")}
    failures = queue_overlaps(setup)
    lost: set[str] = set()
    spans = sorted(runs, key=lambda r: r.start)
    for one, two in itertools.pairwise(spans):
        assert one.end is not None
        if two.start < one.end:
            lost.update((one.run_id, two.run_id))
            failures.append(
                f"run {two.run_id} of {two.job} started at {two.start:%T.%f} while run "
                f"{one.run_id} of {one.job} (same entities) ran until {one.end:%T.%f}"
            )
    for r in runs:
        if r.status not in ("completed", "scheduled"):
            lost.add(r.run_id)
            failures.append(f"run {r.run_id} of {r.job} ended {r.status}")
    with setup.target_conn() as conn:
        counts = dict(
            conn.execute(
                "SELECT job_name, (metadata->>'run_count')::int FROM isthmus.synchronization_jobs"
            ).fetchall()
        )
    for job, seen in by_job.items():
        if (counts.get(job) or 0) != len(seen):
            failures.append(f"job {job}: run_count {counts.get(job)}, {len(seen)} runs seen")
    # quiescence: one more run here, then both sides hold every last write, nothing else
    final = commands.jobs_run(config, "hand")
    assert final.status == "completed" and final.records_failed == 0, final.to_dict()
    check_equal(config)
    no_differences(setup)
    for patient, note in last.items():
        (held,) = fetch(setup.source, "SELECT notes FROM patients WHERE id = %s", (patient,))
        if held[0] != note:
            failures.append(f"patient {patient}: source holds {held[0]!r}, last write {note!r}")
    print(
        f"\nconcurrency:   workers: {len(by_job['hand'])} manual runs, {len(by_job['cron'])} scheduled runs,"
        f" {n} changes on each side, {refused} runs outside the queue refused (busy)"
    )
    if FULL:
        assert by_job["cron"], "the scheduled job never ran: the trial proved nothing about it"
    report("two workers, one queue (runs)", len(runs), len(runs) - len(lost), failures)


# -- 3. a sync under load ----------------------------------------------------------------------

GONE = None  # the ledger's value of a deleted row
HOT_SHARE = 0.4  # of each side's writes, with hot rows: on those rows


@dataclass
class Ledger:
    """What the application wrote last, by who owns the row: a row is only ever written on
    one side (even legacy IDs and rows the source created: the source; odd legacy IDs and
    rows the target created: the target), so each last write must reach the other side."""

    source_patients: dict[int, str] = field(default_factory=dict)  # legacy id → notes
    target_patients: dict[int, str] = field(default_factory=dict)
    source_products: dict[int, str | None] = field(default_factory=dict)  # legacy id → name
    target_products: dict[UUID, str | None] = field(default_factory=dict)  # uuid → name
    source_created: dict[int, str] = field(default_factory=dict)  # legacy id → sku
    target_created: dict[UUID, str] = field(default_factory=dict)  # uuid → sku
    migrated_legacy: dict[UUID, int] = field(default_factory=dict)  # target-owned, migrated
    # patients both sides write (``shared``): legacy id → [(sequence, side, notes)]
    shared: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)
    writes: int = 0
    retries: int = 0


class SourceApp:
    """The legacy application: its own connection, one statement per transaction."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.conn: Any
        if url.dialect == "sqlite":
            self.conn = sqlite3.connect(url.database or "", timeout=30, isolation_level=None)
        else:
            self.conn = mysql_admin(url)

    def execute(self, statement: str, params: tuple[Any, ...]) -> int:
        """Runs ``statement`` (``%s`` marks), retried while the database is busy; the new
        row's key for an INSERT."""
        for attempt in range(50):
            try:
                if self.url.dialect == "sqlite":
                    cur = self.conn.execute(statement.replace("%s", "?"), params)
                    return int(cur.lastrowid or 0)
                with self.conn.cursor() as cur:
                    cur.execute(statement, params)
                    return int(cur.lastrowid or 0)
            except Exception as exc:  # locked / deadlock: the application tries again
                busy = "locked" in str(exc) or "Deadlock" in str(exc) or "Lock wait" in str(exc)
                if not busy or attempt == 49:
                    raise
                LEDGER_RETRIES.append(1)
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


LEDGER_RETRIES: list[int] = []


def stamp(url: DatabaseURL) -> Any:
    """Now, as the legacy application writes ``updated_at`` (UTC)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if url.dialect == "sqlite" else now


class LoadGenerator(threading.Thread):
    """Writes to both databases at ``rate`` operations a second until stopped: updates of
    patients and products, inserts and deletes of products, on the rows each side owns."""

    def __init__(self, setup: Setup, rate: float, seed: int, shared: int = 0) -> None:
        super().__init__(name="load", daemon=True)
        self.setup, self.rate, self.rnd = setup, rate, random.Random(seed)
        self.ledger = Ledger()
        self.stop_now = threading.Event()
        self.error: str | None = None
        url = setup.source
        self.patients = [int(r[0]) for r in fetch(url, "SELECT id FROM patients ORDER BY id")]
        # ``shared`` hot rows both sides write (a conflict rule decides), each for a few
        # writes, then left alone (its last write is one more to find at the end) and
        # replaced from a pool of half the patients; the other half is owned by one side
        self.pool = self.patients[1::2] if shared else []
        self.patients = [p for p in self.patients if p not in self.pool]
        self.hot: dict[int, int] = {}  # hot row → writes it has left
        for _ in range(shared):
            self.next_hot()
        self.orders = [int(r[0]) for r in fetch(url, "SELECT id FROM orders ORDER BY id")]
        products = [int(r[0]) for r in fetch(url, "SELECT id FROM products ORDER BY id")]
        with setup.target_conn() as conn:
            found = conn.execute(
                "SELECT entity_type, legacy_id, uuid_id FROM isthmus.legacy_id_mappings"
                " WHERE entity_type IN ('patients', 'orders', 'products')"
            ).fetchall()
        self.uuid = {(e, int(i)): u for e, i, u in found}
        ledger = self.ledger
        for p in products:
            if p % 2 == 0:
                ledger.source_products[p] = "<as migrated>"
            else:
                ledger.target_products[self.uuid["products", p]] = "<as migrated>"
                ledger.migrated_legacy[self.uuid["products", p]] = p
        self.seq = 0

    def run(self) -> None:
        source = SourceApp(self.setup.source)
        target = psycopg.connect(self.setup.target.raw, autocommit=True)
        try:
            due = time.monotonic()
            while not self.stop_now.is_set():
                self.seq += 1
                if self.seq % 2:
                    self.source_op(source)
                else:
                    self.target_op(target)
                self.ledger.writes += 1
                due += 1 / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
        except Exception:
            self.error = traceback.format_exc()
        finally:
            source.close()
            target.close()

    def alive(self, rows: dict[Any, str | None]) -> Any:
        keys = [k for k, v in rows.items() if v is not GONE]
        return self.rnd.choice(keys) if keys else None

    def source_op(self, app: SourceApp) -> None:
        ledger, rnd, n, url = self.ledger, self.rnd, self.seq, self.setup.source
        roll = rnd.random()
        if self.hot and rnd.random() < HOT_SHARE:
            self.write_hot(
                "source",
                lambda p, v: app.execute(
                    "UPDATE patients SET notes = %s, updated_at = %s WHERE id = %s",
                    (v, stamp(url), p),
                ),
            )
            return
        if roll < 0.35:
            patient = rnd.choice([p for p in self.patients if p % 2 == 0])
            app.execute(
                "UPDATE patients SET notes = %s, updated_at = %s WHERE id = %s",
                (f"s{n}", stamp(url), patient),
            )
            ledger.source_patients[patient] = f"s{n}"
            return
        product = self.alive(ledger.source_products)
        if roll < 0.65 and product is not None:
            app.execute(
                "UPDATE products SET name = %s, updated_at = %s WHERE id = %s",
                (f"s{n}", stamp(url), product),
            )
            ledger.source_products[product] = f"s{n}"
        elif roll < 0.85 or product is None:
            key = app.execute(
                "INSERT INTO products (order_id, sku, name, quantity, unit_price, weight_g,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (rnd.choice(self.orders), f"S-{n}", f"s{n}", 1 + n % 9, "4.25", 12.5,
                 stamp(url), stamp(url)),
            )  # fmt: skip
            ledger.source_products[key] = f"s{n}"
            ledger.source_created[key] = f"S-{n}"
        else:
            app.execute("DELETE FROM products WHERE id = %s", (product,))
            ledger.source_products[product] = GONE

    def write_hot(self, side: str, write: Callable[[int, str], object]) -> None:
        patient, value = self.rnd.choice(sorted(self.hot)), f"{side[0]}{self.seq}"
        write(patient, value)
        self.ledger.shared.setdefault(patient, []).append((self.seq, side, value))
        self.hot[patient] -= 1
        if self.hot[patient] == 0 and self.pool:
            del self.hot[patient]
            self.next_hot()

    def next_hot(self) -> None:
        self.hot[self.pool.pop(self.rnd.randrange(len(self.pool)))] = self.rnd.randint(2, 6)

    def target_op(self, conn: psycopg.Connection[Any]) -> None:
        ledger, rnd, n = self.ledger, self.rnd, self.seq
        now = datetime.now(UTC).replace(tzinfo=None)
        roll = rnd.random()
        if self.hot and rnd.random() < HOT_SHARE:
            self.write_hot(
                "target",
                lambda p, v: conn.execute(
                    "UPDATE public.patients SET notes = %s, updated_at = %s WHERE id = %s",
                    (v, now, self.uuid["patients", p]),
                ),
            )
            return
        if roll < 0.35:
            patient = rnd.choice([p for p in self.patients if p % 2 == 1])
            conn.execute(
                "UPDATE public.patients SET notes = %s, updated_at = %s WHERE id = %s",
                (f"t{n}", now, self.uuid["patients", patient]),
            )
            ledger.target_patients[patient] = f"t{n}"
            return
        product = self.alive(ledger.target_products)
        if roll < 0.65 and product is not None:
            conn.execute(
                "UPDATE public.products SET name = %s, updated_at = %s WHERE id = %s",
                (f"t{n}", now, product),
            )
            ledger.target_products[product] = f"t{n}"
        elif roll < 0.85 or product is None:
            key = uuid4()
            conn.execute(
                "INSERT INTO public.products (id, order_id, sku, name, quantity, unit_price,"
                " weight_g, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, 4.25, 12.5,"
                " %s, %s)",
                (key, self.uuid["orders", rnd.choice(self.orders)], f"T-{n}", f"t{n}",
                 1 + n % 9, now, now),
            )  # fmt: skip
            ledger.target_products[key] = f"t{n}"
            ledger.target_created[key] = f"T-{n}"
        else:
            conn.execute("DELETE FROM public.products WHERE id = %s", (product,))
            ledger.target_products[product] = GONE


@contextmanager
def load(setup: Setup, rate: float, seed: int, shared: int = 0) -> Iterator[LoadGenerator]:
    generator = LoadGenerator(setup, rate, seed, shared)
    generator.start()
    try:
        yield generator
    finally:
        generator.stop_now.set()
        generator.join(timeout=60)


def lost_writes(setup: Setup, ledger: Ledger) -> list[str]:
    """Every last write the application made, looked for on both sides."""
    url = setup.source
    with setup.target_conn() as conn:
        mapped = {
            (e, int(i)): u
            for e, i, u in conn.execute(
                "SELECT entity_type, legacy_id, uuid_id FROM isthmus.legacy_id_mappings"
                " WHERE entity_type IN ('patients', 'products')"
            ).fetchall()
        }
        legacy_of = {(e, u): i for (e, i), u in mapped.items()}
        t_notes = dict(conn.execute("SELECT id, notes FROM public.patients").fetchall())
        t_products = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT id, name, sku FROM public.products").fetchall()
        }
    s_notes = {int(i): v for i, v in fetch(url, "SELECT id, notes FROM patients")}
    s_products = {int(i): (n, s) for i, n, s in fetch(url, "SELECT id, name, sku FROM products")}
    s_skus: dict[str, int] = {}
    for _name, sku in s_products.values():
        s_skus[sku] = s_skus.get(sku, 0) + 1
    t_skus: dict[str, int] = {}
    for _name, sku in t_products.values():
        t_skus[sku] = t_skus.get(sku, 0) + 1
    lost: list[str] = []
    for patients, side in ((ledger.source_patients, "source"), (ledger.target_patients, "target")):
        for p, note in patients.items():
            held = (s_notes.get(p), t_notes.get(mapped.get(("patients", p))))
            if held != (note, note):
                lost.append(f"patient {p} ({side}-owned): wrote {note!r}, (source, target) {held}")
    for p, writes in ledger.shared.items():
        held = (s_notes.get(p), t_notes.get(mapped.get(("patients", p))))
        last = {side: (seq, value) for seq, side, value in writes}  # the last write of each
        source_last, target_last = last.get("source"), last.get("target")
        if target_last is None or (source_last is not None and source_last > target_last):
            allowed = {source_last[1]} if source_last else set()  # the newest write: it wins
        else:  # the target's came last: it stands, unless the source's was concurrent
            allowed = {target_last[1]} | ({source_last[1]} if source_last else set())
        if held[0] != held[1] or held[0] not in allowed:
            lost.append(
                f"patient {p} (written on both sides, source_wins): (source, target) {held},"
                f" allowed {sorted(allowed)}; last writes {writes[-4:]}"
            )
    for p, name in ledger.source_products.items():
        if name == "<as migrated>":
            continue
        uuid = mapped.get(("products", p))
        held_s = s_products.get(p, (GONE,))[0]
        held_t = t_products.get(uuid, (GONE,))[0] if uuid else GONE
        if (held_s, held_t) != (name, name):
            lost.append(f"product {p} (source-owned): wrote {name!r}, now {(held_s, held_t)}")
    for u, name in ledger.target_products.items():
        if name == "<as migrated>":
            continue
        legacy = legacy_of.get(("products", u))
        held_t = t_products.get(u, (GONE,))[0]
        held_s = s_products.get(legacy, (GONE,))[0] if legacy is not None else GONE
        if name is GONE and legacy is None and u in ledger.migrated_legacy:
            old = ledger.migrated_legacy[u]  # its legacy row must be gone too (or the key
            if old in s_products and old not in ledger.source_created:  # reused since)
                held_s = s_products[old][0]
        if (held_s, held_t) != (name, name):
            lost.append(f"product {u} (target-owned): wrote {name!r}, now {(held_s, held_t)}")
    for key, sku in ledger.source_created.items():
        alive = ledger.source_products.get(key) is not GONE
        counts = (s_skus.get(sku, 0), t_skus.get(sku, 0))
        if counts != ((1, 1) if alive else (0, 0)):
            lost.append(f"source-created {sku}: {counts} rows in (source, target)")
    for u, sku in ledger.target_created.items():
        alive = ledger.target_products.get(u) is not GONE
        counts = (s_skus.get(sku, 0), t_skus.get(sku, 0))
        if counts != ((1, 1) if alive else (0, 0)):
            lost.append(f"target-created {sku}: {counts} rows in (source, target)")
    return lost


CURSORS = "\n".join(
    f'[entities.{t}]\nupdated_at = "updated_at"'
    for t in ("offices", "profiles", "doctors", "patients", "orders", "products")
)


def load_session(
    dialect: str,
    method: str,
    n: int,
    *,
    tmp_path: Path,
    pg: PgDatabases,
    mysql: MysqlDatabases | None,
    seconds: float,
    rate: float,
    shared: int = 0,
) -> None:
    """One trial: a migrated legacy database, a bidirectional source_wins job run back to
    back under ``rate`` writes a second for ``seconds``, then run until it has nothing left;
    then every last write must be on both sides, once, and diff must find nothing."""
    source = new_source(dialect, tmp_path, n, pg, mysql)
    directory = tmp_path / f"load{n}"
    setup = make_setup(source, pg.create("isthmus_load"), directory, scale=1)
    if method == "cursor":
        with setup.config_path.open("a", encoding="utf-8") as f:
            f.write("\n" + CURSORS + "\n")
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    commands.jobs_create(config, "live", "manual_sync", direction="bidirectional")
    runs: list[dict[str, Any]] = []
    with load(setup, rate, seed=n, shared=shared) as generator:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and generator.error is None:
            ran = commands.jobs_run(config, "live")
            runs.append(ran.to_dict())
            assert ran.status == "completed" and ran.records_failed == 0, ran.to_dict()
    assert generator.error is None, generator.error
    under_load = len(runs)
    for _ in range(4):  # quiescence: until a run finds nothing left to do
        ran = commands.jobs_run(config, "live")
        runs.append(ran.to_dict())
        assert ran.status == "completed" and ran.records_failed == 0, ran.to_dict()
        if ran.records_synced == 0:
            break
    assert runs[-1]["records_synced"] == 0, f"still moving after the load: {runs[-1]}"
    ledger = generator.ledger
    lost = lost_writes(setup, ledger)
    assert not lost, f"{len(lost)} write(s) lost or doubled: " + "; ".join(lost[:10])
    check_equal(config)
    no_differences(setup)
    used = {e["method"] for r in runs for e in r["entities"]}
    hot = sum(len(w) for w in ledger.shared.values())
    print(
        f"\nconcurrency:   {dialect}/{method}: {under_load} runs under load + {len(runs) - under_load}"
        f" after, {ledger.writes} application writes ({ledger.writes / seconds:.0f}/s,"
        f" {hot} on rows both sides write), methods {sorted(used)}"
    )


@pytest.mark.parametrize(
    ("dialect", "method"),
    [
        ("sqlite", "cursor"),
        ("sqlite", "full"),
        ("mysql", "segments"),
        ("mysql", "cursor"),
    ],
)
def test_a_sync_under_load_loses_no_write_and_duplicates_nothing(
    dialect: str,
    method: str,
    request: pytest.FixtureRequest,
    pg_databases: PgDatabases,
    tmp_path: Path,
) -> None:
    """A bidirectional job runs back to back while the application writes to both databases
    at a steady rate, each row on one side only: every last write reaches the other side."""
    if not FULL and (dialect, method) != ("mysql", "segments"):
        pytest.skip(
            "smoke size runs MariaDB here and SQLite (cursor) in the rows-both-sides-write test;"
            " all four with ISTHMUS_CHAOS_FULL=1"
        )
    mysql = mysql_or_skip(request, dialect)

    def trial(n: int) -> None:
        load_session(
            dialect,
            method,
            n,
            tmp_path=tmp_path,
            pg=pg_databases,
            mysql=mysql,
            seconds=trials(4, 60),
            rate=30,
        )

    run_trials(f"sync under load ({dialect}, {method})", 1, trial)


@pytest.mark.parametrize("dialect", ["sqlite", "mysql"])
def test_a_sync_under_load_on_rows_both_sides_write_lets_no_newer_source_write_be_lost(
    dialect: str, request: pytest.FixtureRequest, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """As above, and a few hot patients are written on both sides: with source_wins, the
    final value is the newest write, or the source's when both wrote since the last run;
    never a target write older than the source's newest."""
    if not FULL and dialect == "mysql":
        pytest.skip("smoke size runs SQLite; MariaDB too with ISTHMUS_CHAOS_FULL=1")
    mysql = mysql_or_skip(request, dialect)

    def trial(n: int) -> None:
        load_session(
            dialect,
            "cursor" if dialect == "sqlite" else "segments",
            n,
            tmp_path=tmp_path,
            pg=pg_databases,
            mysql=mysql,
            seconds=trials(4, 60),
            rate=30,
            shared=3,
        )

    run_trials(f"sync under load, rows written on both sides ({dialect})", 1, trial)


WRITERS: dict[str, Any] = {
    "sqlite": SQLiteWriting,
    "mysql": MySQLWriting,
    "postgresql": PostgreSQLWriting,
}


@pytest.mark.parametrize("dialect", ["sqlite", "mysql", "postgresql"])
def test_a_source_write_between_comparison_and_apply_is_not_overwritten(
    dialect: str,
    request: pytest.FixtureRequest,
    pg_databases: PgDatabases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interleavings the load test found, made certain. A record changed in the target
    alone is compared, then the legacy application writes it (and updates a row the target
    deleted) before the run applies: the run must leave both source writes alone, and the
    next run sees those records changed on both sides (source_wins gives them to the
    target). Another record the application writes right after the run wrote it into the
    source: the next run must see that write as the source's, and carry it over."""
    if dialect == "mysql":
        mysql_or_skip(request, dialect)
    source = source_url(request, dialect)
    setup = make_setup(source, pg_databases.create("isthmus_cas"), tmp_path, scale=1)
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    commands.jobs_create(config, "live", "manual_sync", direction="bidirectional")
    patient, after = (int(r[0]) for r in fetch(source, "SELECT id FROM patients ORDER BY id")[:2])
    product = int(fetch(source, "SELECT max(id) FROM products")[0][0])
    with setup.target_conn() as conn:
        for key, notes in ((patient, "target"), (after, "target too")):
            conn.execute(
                "UPDATE public.patients SET notes = %s WHERE id = (SELECT uuid_id FROM isthmus"
                ".legacy_id_mappings WHERE entity_type = 'patients' AND legacy_id = %s)",
                (notes, key),
            )
        conn.execute(
            "DELETE FROM public.products WHERE id = (SELECT uuid_id FROM"
            " isthmus.legacy_id_mappings WHERE entity_type = 'products' AND legacy_id = %s)",
            (product,),
        )
    compare = run_diff  # what isthmus.sync calls

    def compared_then_written(*args: Any, **kwargs: Any) -> Any:
        found = compare(*args, **kwargs)
        run_sql(
            source,
            [
                ("UPDATE patients SET notes = %s WHERE id = %s", ["source", patient]),
                ("UPDATE products SET name = %s WHERE id = %s", ["source", product]),
            ],
        )
        return found

    writing = WRITERS[dialect]
    upsert = writing.upsert_rows

    def written_then_written_again(self: Any, *args: Any, **kwargs: Any) -> int:
        count: int = upsert(self, *args, **kwargs)
        run_sql(source, [("UPDATE patients SET notes = %s WHERE id = %s", ["source after", after])])
        return count

    def source_holds() -> tuple[Any, Any, Any]:
        notes = dict(
            fetch(source, "SELECT id, notes FROM patients WHERE id IN (%s, %s)", (patient, after))
        )
        name = fetch(source, "SELECT name FROM products WHERE id = %s", (product,))
        return notes[patient], (name[0][0] if name else GONE), notes[after]

    failures: list[str] = []
    expected = ("source", "source", "source after")
    with monkeypatch.context() as patched:
        patched.setattr(isthmus.sync, "run_diff", compared_then_written)
        patched.setattr(writing, "upsert_rows", written_then_written_again)
        first = commands.jobs_run(config, "live")
    assert first.status == "completed", first.to_dict()
    if source_holds() != expected:
        failures.append(f"the run overwrote the source's newer writes: {source_holds()}")
    second = commands.jobs_run(config, "live")  # both sides changed: source_wins
    assert second.status == "completed", second.to_dict()
    if source_holds() != expected:
        failures.append(f"the next run lost the source's writes: {source_holds()}")
    with setup.target_conn() as conn:
        held = conn.execute(
            "SELECT notes FROM public.patients WHERE id = (SELECT uuid_id FROM isthmus"
            ".legacy_id_mappings WHERE entity_type = 'patients' AND legacy_id = %s)",
            (after,),
        ).fetchone()
    if held != ("source after",):
        failures.append(f"the write made after the run's reached the target as {held}")
    check_equal(config)
    no_differences(setup)
    report(f"write between comparison and apply ({dialect})", 1, 1 - bool(failures), failures)


@pytest.mark.parametrize("rule", ["target_wins", "manual"])
def test_a_target_write_between_comparison_and_apply_is_not_overwritten(
    rule: str,
    pg_databases: PgDatabases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mirror image, under the rules that do not let the source win: a record changed
    in the source alone is compared, then the new application writes it in the target (and
    a row whose source delete was compared, too) before the run applies. The run must leave
    both target writes alone; the next run sees the records changed on both sides and the
    rule decides (target_wins: the target's versions go to the source; manual: parked)."""
    source = parse_url(f"sqlite:///{tmp_path / 'legacy.db'}")
    setup = make_setup(source, pg_databases.create("isthmus_cas_t"), tmp_path, scale=1)
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    commands.jobs_create(config, "live", "manual_sync", direction="bidirectional", conflict=rule)
    patient = int(fetch(source, "SELECT min(id) FROM patients")[0][0])
    product = int(fetch(source, "SELECT max(id) FROM products")[0][0])
    run_sql(
        source,
        [
            ("UPDATE patients SET notes = %s WHERE id = %s", ["source", patient]),
            ("DELETE FROM products WHERE id = %s", [product]),
        ],
    )
    uuids = {
        e: str(u)
        for e, u in target_rows(
            setup,
            "SELECT entity_type, uuid_id FROM isthmus.legacy_id_mappings WHERE"
            " (entity_type, legacy_id) IN (('patients', %s), ('products', %s))",
            patient,
            product,
        )
    }
    compare = run_diff

    def compared_then_written(*args: Any, **kwargs: Any) -> Any:
        found = compare(*args, **kwargs)
        with setup.target_conn() as conn:
            conn.execute(
                "UPDATE public.patients SET notes = 'target' WHERE id = %s", (uuids["patients"],)
            )
            conn.execute(
                "UPDATE public.products SET name = 'target' WHERE id = %s", (uuids["products"],)
            )
        return found

    def target_holds() -> tuple[Any, Any]:
        with setup.target_conn() as conn:
            notes = conn.execute(
                "SELECT notes FROM public.patients WHERE id = %s", (uuids["patients"],)
            ).fetchone()
            name = conn.execute(
                "SELECT name FROM public.products WHERE id = %s", (uuids["products"],)
            ).fetchone()
        return (notes[0] if notes else GONE), (name[0] if name else GONE)

    failures: list[str] = []
    with monkeypatch.context() as patched:
        patched.setattr(isthmus.sync, "run_diff", compared_then_written)
        first = commands.jobs_run(config, "live")
    assert first.status == "completed", first.to_dict()
    if target_holds() != ("target", "target"):
        failures.append(f"the run overwrote the target's newer writes: {target_holds()}")
    second = commands.jobs_run(config, "live")  # changed on both sides: the rule decides
    assert second.status == "completed", second.to_dict()
    if target_holds() != ("target", "target"):
        failures.append(f"the next run lost the target's writes: {target_holds()}")
    if rule == "target_wins":
        check_equal(config)
        no_differences(setup)
        held = fetch(source, "SELECT notes FROM patients WHERE id = %s", (patient,))
        if held != [("target",)]:
            failures.append(f"target_wins did not bring the target's write over: {held}")
    else:
        parked = sum(e.parked for e in second.entities)
        if parked != 2:
            failures.append(f"manual: {parked} record(s) parked for review, not 2")
    report(f"target write between comparison and apply ({rule})", 1, 1 - bool(failures), failures)


def test_a_run_that_waited_for_the_lock_starts_from_the_job_as_it_is_then(
    sqlite_url: DatabaseURL,
    fresh_pg_url: DatabaseURL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the workers trial found at full size, made certain: a run reads its job while
    another run of it holds the lock (the job is ``running``), and gets the lock the moment
    the other one ends. It must start from the job as it is once the lock is its own: not
    take over a run that ended properly, not fail on a stale status, not write back the
    statistics the other run replaced."""
    setup = make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=1)
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    commands.jobs_create(config, "live", "manual_sync", direction="bidirectional")
    change_both_sides(setup, 1, random.Random(1))
    taking = isthmus.sync._RunLock.take

    def take_when_free(self: Any) -> None:  # the run that lost the race retries at once
        while True:
            try:
                taking(self)
                return
            except JobBusy:
                time.sleep(0.02)

    ran: dict[str, Any] = {}

    def run(label: str) -> None:
        try:
            ran[label] = commands.jobs_run(config, "live")
        except Exception as exc:
            ran[label] = exc

    blocker = psycopg.connect(setup.target.raw)  # holds the first run inside its apply phase
    blocker.execute("LOCK TABLE public.patients IN ACCESS EXCLUSIVE MODE")
    first = threading.Thread(target=run, args=("first",))
    first.start()
    try:
        deadline = time.monotonic() + 60
        while (
            target_rows(
                setup, "SELECT 1 FROM isthmus.synchronization_jobs WHERE status = 'running'"
            )
            == []
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        monkeypatch.setattr(isthmus.sync._RunLock, "take", take_when_free)
        second = threading.Thread(target=run, args=("second",))
        second.start()
        time.sleep(1.0)  # the second run has read the job (running) and waits for the lock
    finally:
        blocker.rollback()
        blocker.close()
    first.join(timeout=120)
    second.join(timeout=120)
    failures = [f"{k} run: {v!r}" for k, v in ran.items() if isinstance(v, Exception)]
    done = [v for v in ran.values() if not isinstance(v, Exception)]
    failures += [f"run {r.run_id} took over a run that had ended" for r in done if r.took_over]
    failures += [f"run {r.run_id} ended {r.status}" for r in done if r.status != "completed"]
    ((count, status),) = target_rows(
        setup,
        "SELECT (metadata->>'run_count')::int, status::text FROM isthmus.synchronization_jobs",
    )
    if (count, status) != (2, "completed"):
        failures.append(f"after two runs the job says run_count {count}, status {status}")
    check_equal(config)
    report("run starting as another ends", 1, 1 - bool(failures), failures)
