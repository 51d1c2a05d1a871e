"""Crashes: ``kill -9`` of ``isthmus migrate``, of a bidirectional sync run and of a worker, at
random points of a run over the demo legacy database (about 205,000 rows at full size, 6,000
at smoke size), then a rerun to the end. After each: nothing lost and nothing duplicated in
either database, and the control tables consistent (no checkpoint left ``pending`` or
``in_progress``, no job left ``running``, no queue job left ``doing``: what the dead process
left was detected and taken over).

Kill points are random: most when the run's checkpoints have counted a random number of rows
(polled every few milliseconds, then a random extra delay of up to a few batches' time, so
kills land between batches and inside commits alike), others a random time after the start
(start-up, comparisons), and some aimed at the narrow windows: a migration's last step (the
parked keys and indexes), a sync batch of a given phase, and the milliseconds between rows
created in the target reaching the source and their mappings' commit. Some trials kill the
rerun too, while it takes over. Each trial starts from a fresh copy: the legacy SQLite file
is copied and the target database cloned from a template (``CREATE DATABASE … TEMPLATE``), so
generating the data once per module is all the set-up costs.

Every process is the installed ``isthmus`` console script; SIGKILL gives it no chance to
clean up. The survivors' counts are printed (``crashes: migrate 50/50 survived``); every
trial must survive.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaos_support import FULL, rows, trials

from conftest import MysqlDatabases, PgDatabases
from isthmus import commands
from isthmus.demo import generate_legacy
from isthmus.queue import CHUNK_TASK, RUN_TASK
from isthmus.urls import DatabaseURL, parse_url
from migrate_support import (
    DEMO_ENTITIES,
    STATE,
    Setup,
    check_equal,
    cli_env,
    fetch,
    isthmus_executable,
    prepare_target,
    result_entities,
    target_constraints,
    write_config,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(4 * 3600 if FULL else 900)]

ROWS = rows(6_000, 205_000)
SCALE = math.ceil(ROWS / 1209)  # the demo writes 1,209 rows per office
KILLS = trials(3, 50)  # kill points per kind
MYSQL_KILLS = trials(1, 10)
DIFF_KILLS = trials(1, 10)
MIGRATE_BATCH = str(rows(200, 2_000))
SYNC_BATCH = rows(25, 500)
CHUNK_ROWS = rows(1_000, 20_000)  # a worker's differential_migration: products and orders chunked
WORKERS_AT_ONCE = 3 if not FULL else 4  # worker trials run side by side: each waits ~30 s
SEED = int(os.environ.get("ISTHMUS_CHAOS_SEED", "20250801"))
STALE_HEARTBEAT = 30  # seconds: procrastinate's stalled-worker threshold (isthmus.worker)
CHUNKED = f"chunk_rows = {CHUNK_ROWS}"  # [migration]
# the target's keys and foreign keys once migrated (parked during the load, applied at its end)
CONSTRAINTS = {t: {"p"} if t == "offices" else {"p", "f"} for t in DEMO_ENTITIES}
SYNC_JOB = "crash_sync"
# sync batches worth aiming at: the source written before the target's mappings (an intent
# recorded first), a row created in the target inserted into the source, deletes there
SYNC_PHASES = ("created_to_source", "to_source", "delete_in_source", "to_target", "inserted")
DIFFING = "diffing"  # a kill point: while `isthmus diff` compares an entity
FINISH = "finish"  # a kill point: in a migration's last step (the parked keys and indexes)
INSERTED = "inserted"  # a kill point: right after rows created in the target reach the source
DM_JOB = "crash_dm"


# -- processes and kill points -------------------------------------------------------------


@dataclass
class Proc:
    """An ``isthmus`` process whose output goes to files (a worker's log can be long)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def text(self) -> str:
        out = self.out.read_text(errors="replace") if self.out.exists() else ""
        err = self.err.read_text(errors="replace") if self.err.exists() else ""
        return f"stdout: {out[-2000:]}\nstderr: {err[-3000:]}"


_counter = iter(range(1_000_000))


def start(setup: Setup, *args: str) -> Proc:
    n = next(_counter)
    base = setup.config_path.parent
    out, err = base / f"proc{n}.out", base / f"proc{n}.err"
    with out.open("wb") as o, err.open("wb") as e:
        popen = subprocess.Popen(
            [isthmus_executable(), "--config", str(setup.config_path), *args],
            stdout=o,
            stderr=e,
            env=cli_env(),
        )
    return Proc(popen, out, err)


def finish(proc: Proc, timeout: float = 600) -> tuple[int, str]:
    try:
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()
        raise AssertionError(f"timed out after {timeout} s: {proc.text()}") from None
    return proc.popen.returncode, proc.out.read_text(errors="replace")


@dataclass(frozen=True)
class KillPoint:
    """Kill once the checkpoints have counted ``units`` more than at the start, or once a
    batch of ``phase`` is in progress (a sync run's ``created_to_source``: between the
    insert into the source and its mapping), ``delay`` seconds later; with neither,
    ``delay`` seconds after the start."""

    delay: float
    units: int | None = None
    phase: str | None = None

    def halved(self) -> KillPoint:
        """An earlier point, for a run that ended before this one."""
        units = None if self.units is None else self.units // 2
        return KillPoint(round(self.delay / 2, 3), units, self.phase)

    def __str__(self) -> str:
        if self.phase == INSERTED:
            return f"{self.delay:.3f}s after rows made in the target reached the source"
        if self.phase == FINISH:
            return f"{self.delay:.3f}s after every entity was loaded"
        if self.phase == DIFFING:
            return f"{self.delay:.3f}s after a comparison began"
        if self.phase is not None:
            return f"{self.delay:.3f}s into a {self.phase} batch"
        if self.units is None:
            return f"{self.delay:.3f}s after the start"
        return f"{self.delay:.3f}s after {self.units} more rows counted"


def draw(
    rng: random.Random,
    units: int,
    seconds: float,
    *,
    timed: float = 0.2,
    phases: tuple[str, ...] = (),
    phase_share: float = 0.2,
) -> KillPoint:
    """A random kill point within a run that counts ``units`` and lasts ``seconds``; with
    ``phases``, ``phase_share`` of them inside a batch of one of them (or, for
    :data:`FINISH`, at a random instant of a migration's last step)."""
    extra = min(0.25, seconds / 20)  # up to a few batches' time
    if phases and rng.random() < phase_share:
        phase = rng.choice(phases)
        if phase == FINISH:
            return KillPoint(round(rng.uniform(0.0, seconds / 8), 3), phase=FINISH)
        return KillPoint(round(rng.uniform(0.0, min(0.1, extra)), 3), phase=phase)
    if rng.random() < timed:
        return KillPoint(round(rng.uniform(0.0, seconds), 3))
    return KillPoint(round(rng.uniform(0.0, extra), 3), rng.randint(1, max(1, units)))


def units(conn: psycopg.Connection[Any]) -> int:
    """Progress of everything: the rows every checkpoint counted, plus one per checkpoint."""
    row = conn.execute(
        f"SELECT coalesce(sum(records_processed), 0) + count(*) FROM {STATE}.migration_checkpoints"  # noqa: S608
    ).fetchone()
    return int(row[0]) if row else 0


def in_phase(conn: psycopg.Connection[Any], phase: str, since: Any) -> bool:
    """Whether a sync batch of ``phase`` begun after ``since`` is in progress (for
    :data:`FINISH`: whether every entity's migration begun since has completed)."""
    if phase == DIFFING:
        row = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {STATE}.migration_checkpoints"  # noqa: S608
            " WHERE status = 'in_progress' AND metadata->>'command' = 'diff'"
            " AND created_at > %s)",
            (since,),
        ).fetchone()
        return bool(row and row[0])
    if phase == FINISH:
        row = conn.execute(
            f"SELECT count(DISTINCT entity_type) FROM {STATE}.migration_checkpoints"  # noqa: S608
            " WHERE operation_type = 'differential_migration' AND status = 'completed'"
            " AND created_at > %s",
            (since,),
        ).fetchone()
        return bool(row and row[0] >= len(DEMO_ENTITIES))
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {STATE}.migration_checkpoints"  # noqa: S608
        " WHERE status = 'in_progress' AND metadata->>'phase' = %s AND created_at > %s)",
        (phase, since),
    ).fetchone()
    return bool(row and row[0])


def source_tops(setup: Setup) -> tuple[int, int]:
    """The highest keys of the source's orders and products (cheap: the rowid's b-tree).
    A sync run makes new keys there only for rows created in the target."""
    try:
        conn = sqlite3.connect(setup.source.database or "", timeout=0.05)
        try:
            row = conn.execute(
                "SELECT (SELECT max(id) FROM orders), (SELECT max(id) FROM products)"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the writer is committing: look again
        return (-1, -1)
    return (int(row[0]), int(row[1])) if row else (-1, -1)


def kill_at(
    setup: Setup, proc: Proc, point: KillPoint, done: Callable[[], bool] | None = None
) -> bool:
    """SIGKILL ``proc`` at ``point``; True when its run was still going then (the process
    running and, with ``done``, its work not done)."""
    started = time.monotonic()
    try:
        if point.phase == INSERTED:
            first = source_tops(setup)
            while first[0] < 0:
                first = source_tops(setup)
            while proc.popen.poll() is None and all(
                now <= then for now, then in zip(source_tops(setup), first, strict=True)
            ):
                time.sleep(0.001)
            time.sleep(point.delay)
        elif point.units is not None or point.phase is not None:
            with setup.target_conn() as conn:
                if point.phase is not None:
                    since = conn.execute("SELECT now()").fetchone()
                    while proc.popen.poll() is None and not in_phase(conn, point.phase, since):
                        time.sleep(0.004)
                else:
                    goal = units(conn) + (point.units or 0)
                    while proc.popen.poll() is None and units(conn) < goal:
                        time.sleep(0.004)
            time.sleep(point.delay)
        else:
            while proc.popen.poll() is None and time.monotonic() - started < point.delay:
                time.sleep(0.002)
        going = proc.popen.poll() is None and (done is None or not done())
        proc.popen.send_signal(signal.SIGKILL)
    finally:
        proc.popen.wait()
    return going


def first_kill(
    make: Callable[[int], Setup],
    discard: Callable[[Setup], None],
    args: Callable[[], list[str]] | list[str],
    point: KillPoint,
    done: Callable[[Setup], bool] | None = None,
) -> tuple[Setup, KillPoint]:
    """A fresh setup (``make(attempt)``) whose run is killed at ``point``; when the run
    ended before it, a new setup and an earlier point (at most 4 attempts). A kill aimed
    between rows created in the target reaching the source and their mappings (a window of
    milliseconds) is tried again until it lands there (at most 8 attempts)."""
    attempts = 8 if point.phase == INSERTED else 4
    for attempt in range(attempts):
        setup = make(attempt)
        proc = start(setup, *(args() if callable(args) else args))
        probe = None if done is None else (lambda s=setup: done(s))
        landed = kill_at(setup, proc, point, probe)
        sessions_gone(setup)  # a COMMIT sent just before the kill still lands: wait for it
        if landed:
            if point.phase != INSERTED or made_unmapped(setup) or attempt == attempts - 1:
                return setup, point
        elif point.phase != INSERTED:
            point = point.halved()
        discard(setup)
    raise AssertionError(f"no kill landed while the run was going (last: {point})")


def made_unmapped(setup: Setup) -> int:
    """Rows created in the target that are in the source with no mapping yet: a kill
    between a sync's insert into the source and the commit of their mappings."""
    found = fetch(
        setup.source,
        "SELECT 'orders', id FROM orders WHERE order_no LIKE 'TO-%'"
        " UNION ALL SELECT 'products', id FROM products WHERE sku LIKE 'T-%'",
    )
    with setup.target_conn() as conn:
        row = conn.execute(
            "SELECT count(*) FROM unnest(%s::text[], %s::bigint[]) AS x(e, i) WHERE NOT EXISTS"  # noqa: S608
            f" (SELECT 1 FROM {STATE}.legacy_id_mappings m"
            " WHERE m.entity_type = x.e AND m.legacy_id = x.i)",
            ([e for e, _ in found], [int(i) for _, i in found]),
        ).fetchone()
    return int(row[0]) if row else 0


def measure(setup: Setup, proc: Proc) -> tuple[int, float]:
    """How many units a run counts and how long it lasts (a reference run, left alone)."""
    began = time.monotonic()
    with setup.target_conn() as conn:
        first = units(conn)
        while proc.popen.poll() is None:
            time.sleep(0.02)
        return units(conn) - first, time.monotonic() - began


def sessions_gone(setup: Setup, timeout: float = 60) -> None:
    """Wait until the server has noticed the killed client (until then its session may still
    hold the locks a rerun needs: the rerun would be refused, not wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        with setup.target_conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (setup.target.database,),
            ).fetchone()
        if row is not None and row[0] == 0:
            return
        assert time.monotonic() < deadline, "the killed process's sessions did not end"
        time.sleep(0.05)


def in_progress(setup: Setup) -> str:
    """Where a kill left the run: its unfinished checkpoints."""
    with setup.target_conn() as conn:
        found = conn.execute(
            f"SELECT operation_type::text, entity_type, records_processed,"  # noqa: S608
            f" coalesce(metadata->>'command', ''), coalesce(metadata->>'chunk', '')"
            f" FROM {STATE}.migration_checkpoints WHERE status IN ('pending', 'in_progress')"
            " ORDER BY created_at"
        ).fetchall()
    return "; ".join(f"{o} {e} {c}{k} at {n}" for o, e, n, c, k in found) or "none open"


# -- trials and their tally ---------------------------------------------------------------


@dataclass
class Tally:
    """Trials of one kind of crash: how many, how many survived, what failed. ``say``
    prints a line of progress (captured, shown with a failure; live with ``-s``)."""

    kind: str
    capsys: pytest.CaptureFixture[str]
    live: bool = False
    trials: int = 0
    survived: int = 0
    kills: int = 0  # kills that landed while the run was going
    failures: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # what the reruns found to take over
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def say(self, line: str) -> None:
        out = sys.__stdout__
        if not self.live or out is None:
            print(line, flush=True)
            return
        with self._lock:  # capsys holds what print writes, even with -s
            out.write(line + "\n")
            out.flush()

    def count(self, event: str, n: int = 1) -> None:
        with self._lock:
            self.events[event] = self.events.get(event, 0) + n

    def trial(self, name: str, body: Callable[[], int]) -> None:
        """Run one trial; ``body`` returns the kills that landed, raises if anything is
        lost, duplicated or left inconsistent."""
        began = time.monotonic()
        try:
            landed = body()
        except Exception as exc:  # a failed trial is counted and reported, the rest go on
            with self._lock:
                self.trials += 1
                self.failures.append(f"{name}: {type(exc).__name__}: {exc}"[:3000])
            self.say(f"FAILED {name}: {type(exc).__name__}: {exc}"[:3000])
            return
        with self._lock:
            self.trials += 1
            self.survived += 1
            self.kills += landed
        self.say(f"survived {name} ({time.monotonic() - began:.1f} s)")

    def report(self) -> None:
        line = (
            f"crashes: {self.kind} {self.survived}/{self.trials} survived"
            f" ({self.kills} kills landed mid-run, {SCALE * 1209:,} rows, seed {SEED},"
            f" {time.monotonic() - self.started:.0f} s)"
        )
        if self.events:
            line += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(self.events.items()))
        with self.capsys.disabled():
            print("\n" + line, flush=True)
        assert not self.failures, "\n".join(self.failures)
        assert self.survived == self.trials


@pytest.fixture
def tally(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Tally:
    """The test's tally, named after it (``kind`` is set by the test)."""
    return Tally("", capsys, live=request.config.getoption("capture") == "no")


def clone(pg_databases: PgDatabases, template: str, prefix: str) -> DatabaseURL:
    """A new database of the session's server, a copy of ``template`` (dropped at the end)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    for attempt in range(50):
        try:
            with psycopg.connect(pg_databases.admin_uri, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            break
        except psycopg.errors.ObjectInUse:  # a session of the template is still ending
            assert attempt < 49
            time.sleep(0.1)
    pg_databases.created.append(name)
    return parse_url(pg_databases.admin_uri).with_database(name)


def drop(pg_databases: PgDatabases, url: DatabaseURL) -> None:
    """Drop a trial's database now: 50 clones of a 200k-row target are gigabytes."""
    with psycopg.connect(pg_databases.admin_uri, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    if url.database in pg_databases.created:
        pg_databases.created.remove(url.database or "")


def one(setup: Setup, query: str, *params: Any) -> Any:
    with setup.target_conn() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def assert_control_tables_settled(setup: Setup) -> None:
    """Nothing left behind by a dead process: no checkpoint pending or in progress, no job
    running (or owned by a run), no queue job doing or waiting."""
    with setup.target_conn() as conn:
        open_cps = conn.execute(
            f"SELECT operation_type::text, entity_type, status::text, metadata::text"  # noqa: S608
            f" FROM {STATE}.migration_checkpoints WHERE status IN ('pending', 'in_progress')"
        ).fetchall()
        assert not open_cps, f"checkpoints left open: {open_cps}"
        jobs = conn.execute(
            f"SELECT job_name, status::text, metadata ? 'run' FROM {STATE}.synchronization_jobs"  # noqa: S608
        ).fetchall()
        assert all(s != "running" and not owned for _, s, owned in jobs), jobs
        queue = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{STATE}.procrastinate_jobs",)
        ).fetchone()
        if queue and queue[0]:
            waiting = conn.execute(
                f"SELECT id, task_name, status::text FROM {STATE}.procrastinate_jobs"  # noqa: S608
                " WHERE status IN ('todo', 'doing') AND task_name = ANY(%s)",
                ([RUN_TASK, CHUNK_TASK],),
            ).fetchall()
            assert not waiting, f"queue jobs left: {waiting}"


# -- the legacy database ------------------------------------------------------------------


@dataclass(frozen=True)
class Legacy:
    path: Path
    counts: dict[str, int]

    def copy(self, to: Path) -> DatabaseURL:
        shutil.copyfile(self.path, to)
        return parse_url(f"sqlite:///{to}")


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Legacy:
    path = tmp_path_factory.mktemp("crash_legacy") / "legacy.db"
    counts = generate_legacy(parse_url(f"sqlite:///{path}"), scale=SCALE)
    assert sum(counts.values()) >= ROWS
    return Legacy(path, counts)


# -- migrate ------------------------------------------------------------------------------


def migrate_to_the_end(setup: Setup) -> None:
    done = setup.cli("--json", "migrate", "--batch-size", MIGRATE_BATCH, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    entities = result_entities(done.stdout)
    assert list(entities) == DEMO_ENTITIES
    for e in entities.values():
        assert e["status"] == "completed" and e["quarantined"] == 0, e


def assert_migrated(setup: Setup, counts: dict[str, int], constraints: dict[str, set[str]]) -> None:
    """Row for row equal (content, keys, one mapping per row, references), every migration
    checkpoint completed with its entity's count, every parked index and key in place."""
    assert check_equal(setup.config).rows == counts
    with setup.target_conn() as conn:
        cps = conn.execute(
            f"SELECT entity_type, status::text, records_processed, records_total"  # noqa: S608
            f" FROM {STATE}.migration_checkpoints WHERE operation_type = 'differential_migration'"
            " AND NOT metadata ? 'chunk' ORDER BY created_at"
        ).fetchall()
        ddl = conn.execute(
            f"SELECT name, error FROM {STATE}.pending_ddl"  # noqa: S608
            " WHERE applied_at IS NULL OR error IS NOT NULL"
        ).fetchall()
    assert {s for _, s, _, _ in cps} == {"completed"}, cps  # the one left in progress resumed
    for name in DEMO_ENTITIES:
        mine = [c for c in cps if c[0] == name and c[1] == "completed"]
        assert mine, f"{name}: no completed migration checkpoint: {cps}"
        assert mine[-1][2] == mine[-1][3] == counts[name], mine[-1]
    assert not ddl, f"parked DDL not applied: {ddl}"
    assert target_constraints(setup) == constraints
    assert_control_tables_settled(setup)


def migrate_trials(
    tally: Tally,
    source: DatabaseURL,
    *,
    counts: dict[str, int],
    kills: int,
    rng: random.Random,
    pg_databases: PgDatabases,
    directory: Path,
) -> None:
    ref_setup = prepare_target(
        source, pg_databases.create("isthmus_crash"), directory / "ref", counts
    )
    ref_units, ref_seconds = measure(
        ref_setup, start(ref_setup, "migrate", "--batch-size", MIGRATE_BATCH)
    )
    constraints = target_constraints(ref_setup)  # a MariaDB enum adds a CHECK
    assert all(CONSTRAINTS[t] <= constraints.get(t, set()) for t in DEMO_ENTITIES), constraints
    assert_migrated(ref_setup, counts, constraints)
    drop(pg_databases, ref_setup.target)
    tally.say(f"reference migrate: {ref_units} units, {ref_seconds:.1f} s")

    for n in range(kills):
        point = draw(rng, ref_units, ref_seconds, phases=(FINISH,), phase_share=0.1)
        if n == kills - 1 and kills >= 3:  # at least one in the last step, even at smoke size
            point = KillPoint(round(rng.uniform(0.0, ref_seconds / 8), 3), phase=FINISH)
        again = draw(rng, ref_units // 2, ref_seconds / 2) if rng.random() < 0.25 else None

        def trial(n: int = n, point: KillPoint = point, again: KillPoint | None = again) -> int:
            def make(attempt: int) -> Setup:
                target = pg_databases.create("isthmus_crash")
                return prepare_target(source, target, directory / f"t{n}.{attempt}", counts)

            args = ["migrate", "--batch-size", MIGRATE_BATCH]
            setup, landed_at = first_kill(make, lambda s: drop(pg_databases, s.target), args, point)
            tally.say(f"migrate trial {n}: kill {landed_at}: {in_progress(setup)}")
            landed = 1
            if again is not None:  # the rerun killed too, while it takes over
                landed += kill_at(setup, start(setup, *args), again)
                sessions_gone(setup)
                tally.say(f"migrate trial {n}: then kill {again}: {in_progress(setup)}")
            migrate_to_the_end(setup)
            assert_migrated(setup, counts, constraints)
            drop(pg_databases, setup.target)
            return landed

        tally.trial(f"migrate trial {n} ({point}{f', then {again}' if again else ''})", trial)


def test_kill_9_migrate_at_random_points(
    legacy: Legacy,
    pg_databases: PgDatabases,
    tmp_path: Path,
    tally: Tally,
) -> None:
    """``isthmus migrate`` killed at random points (some reruns killed too), then run to the
    end: the target is the source row for row, one mapping each, every checkpoint completed
    (the one left ``in_progress`` was resumed), every parked key and index applied."""
    tally.kind = "migrate"
    source = legacy.copy(tmp_path / "legacy.db")
    migrate_trials(
        tally,
        source,
        counts=legacy.counts,
        kills=KILLS,
        rng=random.Random(SEED),
        pg_databases=pg_databases,
        directory=tmp_path,
    )
    tally.report()


def test_kill_9_migrate_from_mariadb(
    mysql_databases: MysqlDatabases,
    pg_databases: PgDatabases,
    tmp_path: Path,
    tally: Tally,
) -> None:
    """The same from a MariaDB source (server-side cursors, another driver)."""
    source = mysql_databases.create("isthmus_crash")
    counts = generate_legacy(source, scale=SCALE)
    tally.kind = "migrate (MariaDB source)"
    migrate_trials(
        tally,
        source,
        counts=counts,
        kills=MYSQL_KILLS,
        rng=random.Random(SEED + 1),
        pg_databases=pg_databases,
        directory=tmp_path,
    )
    tally.report()


# -- a bidirectional sync run -------------------------------------------------------------

# Changes planted on both sides before the run, by legacy key (products by id % 50,
# patients by id % 20, orders by id % 200). Product changes leave out the products of the
# orders that are deleted or copied, so that every change is a plain case of the sync table.
# Written with tokens: <plain> (a product of no such order), <state>, <products in> (target
# products of plain orders whose legacy key % 50 is in the list that follows).
_TOKENS = {
    "<plain>": "order_id % 200 NOT IN (11, 13, 17, 19)",
    "<products>": "order_id, sku, name, quantity, unit_price, weight_g, created_at, updated_at",
    "<orders>": "patient_id, order_no, status, total, placed_at, created_at, updated_at",
    "<products in>": "SELECT p.id FROM public.products p"
    " JOIN <state>.legacy_id_mappings pm ON pm.entity_type = 'products' AND pm.uuid_id = p.id"
    " JOIN <state>.legacy_id_mappings om ON om.entity_type = 'orders' AND om.uuid_id = p.order_id"
    " WHERE om.legacy_id % 200 NOT IN (11, 13, 17, 19) AND pm.legacy_id % 50 IN",
    "<mapped>": "SELECT uuid_id FROM <state>.legacy_id_mappings WHERE entity_type =",
    "<state>": STATE,
}


def expand(text: str) -> str:
    for token, value in _TOKENS.items():
        text = text.replace(token, value)
    return text


SOURCE_CHANGES = [
    "UPDATE products SET name = name || ' (source edit)' WHERE id % 50 = 1 AND <plain>",
    "UPDATE products SET name = name || ' (source side of both)' WHERE id % 50 = 3 AND <plain>",
    "UPDATE products SET name = name || ' (source, deleted in the target)'"
    " WHERE id % 50 = 9 AND <plain>",
    "DELETE FROM products WHERE id % 50 IN (4, 6) AND <plain>",
    "UPDATE patients SET notes = 'source note' WHERE id % 20 = 1",
    "UPDATE patients SET notes = 'source side of both' WHERE id % 20 = 3",
    # an order deleted with its products
    "DELETE FROM products WHERE order_id IN (SELECT id FROM orders WHERE id % 200 = 11)",
    "DELETE FROM orders WHERE id % 200 = 11",
    # orders and products created in the source (keys of its own)
    "INSERT INTO orders (id, <orders>) SELECT id + 10000000, patient_id, 'SO-' || id, status,"
    " total, placed_at, created_at, updated_at FROM orders WHERE id % 200 = 17",
    "INSERT INTO products (id, <products>) SELECT id + 100000000, order_id + 10000000,"
    " 'S-' || id, name, quantity, unit_price, weight_g, created_at, updated_at FROM products"
    " WHERE order_id % 200 = 17",
    "INSERT INTO products (id, <products>) SELECT id + 200000000, order_id, 'S2-' || id, name,"
    " quantity, unit_price, weight_g, created_at, updated_at FROM products"
    " WHERE id % 50 = 7 AND <plain>",
]

TARGET_CHANGES = [
    "UPDATE public.products SET name = name || ' (target edit)'"
    " WHERE id IN (<products in> (2, 3, 6))",
    "DELETE FROM public.products WHERE id IN (<products in> (5, 9))",
    "UPDATE public.patients SET notes = 'target note'"
    " WHERE id IN (<mapped> 'patients' AND legacy_id % 20 IN (2, 3))",
    # an order deleted with its products
    "DELETE FROM public.products WHERE order_id IN (<mapped> 'orders' AND legacy_id % 200 = 19)",
    "DELETE FROM public.orders WHERE id IN (<mapped> 'orders' AND legacy_id % 200 = 19)",
    # orders and products created in the target (no legacy key: the source's generator gives one)
    "INSERT INTO public.orders (id, <orders>) SELECT gen_random_uuid(), patient_id,"
    " 'TO-' || m.legacy_id, status, total, placed_at, created_at, updated_at FROM public.orders o"
    " JOIN <state>.legacy_id_mappings m ON m.entity_type = 'orders' AND m.uuid_id = o.id"
    " WHERE m.legacy_id % 200 = 13",
    "INSERT INTO public.products (id, <products>) SELECT gen_random_uuid(), o.id,"
    " 'T-' || o.order_no || '-' || k, 'made in the target', k, 9.99, NULL, o.created_at,"
    " o.updated_at FROM public.orders o CROSS JOIN generate_series(1, 2) AS k"
    " WHERE o.order_no LIKE 'TO-%'",
    "INSERT INTO public.products (id, <products>) SELECT gen_random_uuid(), p.order_id,"
    " 'T-' || pm.legacy_id, 'made in the target', quantity, unit_price, weight_g, created_at,"
    " updated_at FROM public.products p JOIN <state>.legacy_id_mappings pm"
    " ON pm.entity_type = 'products' AND pm.uuid_id = p.id WHERE p.id IN (<products in> (8))",
]


def plant(setup: Setup) -> None:
    """The changes of both sides: in the legacy file, and in the target database."""
    conn = sqlite3.connect(setup.source.database or "")
    try:
        for statement in SOURCE_CHANGES:
            conn.execute(expand(statement))
        conn.commit()
    finally:
        conn.close()
    with setup.target_conn() as pg:
        for statement in TARGET_CHANGES:
            pg.execute(expand(statement).encode())  # bytes: no placeholders parsed


def _row_hash(row: tuple[Any, ...]) -> int:
    return int.from_bytes(hashlib.sha256(repr(row).encode()).digest()[:16], "big")


def bucket(url: DatabaseURL, where: str, mark: str) -> tuple[int, int]:
    """Plain products of the source matching ``where`` (not made by the planting): how many,
    and how many of them have a name ending with ``mark``."""
    query = expand(
        "SELECT count(*), coalesce(sum(name LIKE ?), 0) FROM products"
        " WHERE id < 100000000 AND <plain> AND <where>"
    ).replace("<where>", where)
    conn = sqlite3.connect(url.database or "")
    try:
        row = conn.execute(query, (f"%{mark}",)).fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def source_fingerprint(url: DatabaseURL) -> dict[str, tuple[int, int]]:
    """Per table: (rows, sum of row hashes) of the SQLite source, a multiset fingerprint.
    Rows created in the target get their legacy key from the source's generator, in an
    order a takeover may change: those are fingerprinted without their keys (products by
    their order's ``order_no``)."""
    conn = sqlite3.connect(url.database or "")
    try:
        found: dict[str, tuple[int, int]] = {}
        for table in DEMO_ENTITIES:
            if table == "products":
                query = (
                    "SELECT p.*, o.order_no FROM products p LEFT JOIN orders o ON o.id = p.order_id"
                )
            else:
                query = f"SELECT * FROM {table}"  # noqa: S608
            count, total = 0, 0
            cur = conn.execute(query)
            names = [d[0] for d in cur.description]
            for found_row in cur:
                row = tuple(found_row)
                if table == "orders" and str(row[names.index("order_no")]).startswith("TO-"):
                    row = row[1:]
                elif table == "products" and str(row[names.index("sku")]).startswith("T-"):
                    row = row[2:]
                count += 1
                total = (total + _row_hash(row)) % (1 << 128)
            found[table] = (count, total)
        return found
    finally:
        conn.close()


@dataclass(frozen=True)
class SyncScenario:
    """A migrated target (the template database) with changes on both sides, its legacy
    file, and what an uninterrupted run makes of them."""

    base: Path  # the legacy SQLite file with the source-side changes
    template: str  # the target database with the job and the target-side changes
    counts: dict[str, int]
    made_in_target: int  # products created in the target
    fingerprint: dict[str, tuple[int, int]]  # the source after an uninterrupted run
    units: int
    seconds: float
    records: int = 0  # records the uninterrupted run applied

    def __str__(self) -> str:
        return (
            f"reference sync: {self.records} records applied, {self.units} units,"
            f" {self.seconds:.1f} s"
        )

    def fresh(self, pg_databases: PgDatabases, directory: Path, migration: str = "") -> Setup:
        directory.mkdir(parents=True)
        source = parse_url(f"sqlite:///{directory / 'legacy.db'}")
        shutil.copyfile(self.base, directory / "legacy.db")
        target = clone(pg_databases, self.template, "isthmus_crash")
        path = write_config(directory / "isthmus.toml", source, target, migration)
        return Setup(source, target, path, self.counts)


def run_sync_to_the_end(setup: Setup) -> dict[str, Any]:
    done = setup.cli("--json", "jobs", "run", SYNC_JOB, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc: dict[str, Any] = json.loads(done.stdout)
    assert doc["status"] == "completed" and doc["records_failed"] == 0, doc
    return doc


def assert_synced(setup: Setup, scenario: SyncScenario) -> None:
    """Both databases equal, the source exactly as an uninterrupted run leaves it (every
    row created in the target there once), the job completed, nothing left open."""
    check_equal(setup.config)
    made = fetch(
        setup.source, "SELECT sku, count(*) FROM products WHERE sku LIKE 'T-%' GROUP BY sku"
    )
    assert len(made) == scenario.made_in_target, (len(made), scenario.made_in_target)
    assert all(n == 1 for _, n in made), [m for m in made if m[1] != 1][:5]
    assert source_fingerprint(setup.source) == scenario.fingerprint
    status = one(
        setup,
        f"SELECT status::text FROM {STATE}.synchronization_jobs WHERE job_name = %s",  # noqa: S608
        SYNC_JOB,
    )
    assert status == "completed", status
    review = one(
        setup,
        f"SELECT count(*) FROM {STATE}.data_differentials"  # noqa: S608
        " WHERE resolution_strategy = 'manual_review' AND resolved_at IS NULL",
    )
    assert review == 0
    assert_control_tables_settled(setup)


@pytest.fixture(scope="module")
def sync_scenario(
    legacy: Legacy, pg_databases: PgDatabases, tmp_path_factory: pytest.TempPathFactory
) -> SyncScenario:
    directory = tmp_path_factory.mktemp("crash_sync")
    base = directory / "base.db"
    source = legacy.copy(base)
    template = pg_databases.create("isthmus_crash_tpl")
    setup = prepare_target(source, template, directory / "template", legacy.counts)
    assert commands.migrate(setup.config).exit_code == 0
    commands.jobs_create(
        setup.config,
        SYNC_JOB,
        "manual_sync",
        direction="bidirectional",
        conflict="source_wins",
        batch_size=SYNC_BATCH,
    )
    plant(setup)
    made = int(one(setup, "SELECT count(*) FROM public.products WHERE name = 'made in the target'"))
    assert made > 0

    # what an uninterrupted run does: the oracle of every trial
    ref = SyncScenario(base, template.database or "", legacy.counts, made, {}, 0, 0.0)
    ref_setup = ref.fresh(pg_databases, directory / "reference")
    proc = start(ref_setup, "--json", "jobs", "run", SYNC_JOB)
    ref_units, ref_seconds = measure(ref_setup, proc)
    code, out = finish(proc)
    assert code == 0, proc.text()
    doc = json.loads(out)
    assert doc["status"] == "completed" and doc["records_failed"] == 0, doc
    src = ref_setup.source
    # the run did what the sync table says (so the oracle means something)
    assert bucket(src, "id % 50 IN (4, 5, 6)", "") == (0, 0)  # deleted on either side
    assert fetch(
        src, "SELECT count(*) FROM orders WHERE id % 200 IN (11, 19) AND order_no NOT LIKE 'TO-%'"
    ) == [(0,)]
    for where, mark in [
        ("id % 50 = 9", "(source, deleted in the target)"),  # source_wins: back in the target
        ("id % 50 = 2", "(target edit)"),  # to the source
        ("id % 50 = 3", "(source side of both)"),  # source_wins
    ]:
        total, marked = bucket(src, where, mark)
        assert total > 0 and marked == total, (where, total, marked)
    assert fetch(src, "SELECT count(*) FROM products WHERE sku LIKE 'T-%'") == [(made,)]
    assert fetch(src, "SELECT count(*) FROM orders WHERE order_no LIKE 'TO-%'")[0][0] > 0
    fingerprint = source_fingerprint(src)
    scenario = SyncScenario(
        base,
        template.database or "",
        legacy.counts,
        made,
        fingerprint,
        ref_units,
        ref_seconds,
        doc["records_synced"],
    )
    assert_synced(ref_setup, scenario)
    again = run_sync_to_the_end(ref_setup)  # nothing echoed back
    assert again["records_synced"] == 0, again
    drop(pg_databases, ref_setup.target)
    return scenario


def test_kill_9_bidirectional_sync_run_at_random_points(
    sync_scenario: SyncScenario,
    pg_databases: PgDatabases,
    tmp_path: Path,
    tally: Tally,
) -> None:
    """A bidirectional run with changes on both sides (updates, deletes, inserts, rows
    created in the target, conflicts) killed at random points (some reruns killed too while
    taking over), then run to the end: both databases as after an uninterrupted run."""
    tally.kind = "sync"
    tally.say(str(sync_scenario))
    rng = random.Random(SEED + 2)
    scenario = sync_scenario
    for n in range(KILLS):
        point = draw(rng, scenario.units, scenario.seconds, timed=0.3, phases=SYNC_PHASES)
        if n == 0:  # at least one inside the narrowest window, even at smoke size
            point = KillPoint(0.0, phase=INSERTED)
        again = (
            draw(rng, scenario.units, scenario.seconds, timed=0.3, phases=SYNC_PHASES)
            if rng.random() < 0.25
            else None
        )

        def trial(n: int = n, point: KillPoint = point, again: KillPoint | None = again) -> int:
            def make(attempt: int) -> Setup:
                return scenario.fresh(pg_databases, tmp_path / f"t{n}.{attempt}")

            args = ["jobs", "run", SYNC_JOB]
            setup, landed_at = first_kill(make, lambda s: drop(pg_databases, s.target), args, point)
            window = made_unmapped(setup)
            tally.count("kills between an insert into the source and its mappings", window > 0)
            tally.say(
                f"sync trial {n}: kill {landed_at}: {in_progress(setup)}"
                + (f"; {window} row(s) made in the target inserted, not mapped" if window else "")
            )
            landed = 1
            if again is not None:  # the rerun killed too, while it takes over
                landed += kill_at(setup, start(setup, *args), again)
                sessions_gone(setup)
                tally.say(f"sync trial {n}: then kill {again}: {in_progress(setup)}")
            done = run_sync_to_the_end(setup)
            tally.count("reruns that took over a dead run", int(done["took_over"]))
            tally.count("rows created in the target found inserted and mapped", done["reconciled"])
            assert_synced(setup, scenario)
            drop(pg_databases, setup.target)
            shutil.rmtree(setup.config_path.parent, ignore_errors=True)
            return landed

        tally.trial(f"sync trial {n} ({point}{f', then {again}' if again else ''})", trial)
    tally.report()
    # the first trial aims there (after a fix: rows whose timestamps PostgreSQL prints with
    # fewer digits were not recognised, and went into the source twice)
    assert tally.events.get("kills between an insert into the source and its mappings", 0) >= 1


# -- a diff --------------------------------------------------------------------------------


def diff_counts(setup: Setup) -> tuple[int, dict[str, Any]]:
    """``isthmus --json diff`` to the end: its exit code and what it found per entity."""
    done = setup.cli("--json", "diff", timeout=900)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads(done.stdout)
    return done.returncode, {e["entity"]: e["counts"] for e in doc["entities"]}


def test_kill_9_diff_leaves_no_checkpoint_in_progress(
    sync_scenario: SyncScenario,
    pg_databases: PgDatabases,
    tmp_path: Path,
    tally: Tally,
) -> None:
    """``isthmus diff`` killed at random points, then run again: it finds what an
    uninterrupted diff finds, and the checkpoint the dead one left ``in_progress`` is
    failed (before a fix it stayed in progress for ever: a diff has no job to take it
    over). A diff still running keeps its own."""
    tally.kind = "diff"
    scenario = sync_scenario
    reference = scenario.fresh(pg_databases, tmp_path / "reference")
    began = time.monotonic()
    code, expected = diff_counts(reference)
    seconds = time.monotonic() - began
    assert code == 1 and expected, expected  # the planted changes
    drop(pg_databases, reference.target)
    tally.say(f"reference diff: {seconds:.1f} s")
    rng = random.Random(SEED + 4)
    for n in range(DIFF_KILLS):
        if n % 3 == 2:  # a random instant of the run
            point = KillPoint(round(rng.uniform(0.3, max(0.4, seconds)), 3))
        else:  # while an entity's comparison is under way
            point = KillPoint(round(rng.uniform(0.0, seconds / 4), 3), phase=DIFFING)

        def trial(n: int = n, point: KillPoint = point) -> int:
            def make(attempt: int) -> Setup:
                return scenario.fresh(pg_databases, tmp_path / f"t{n}.{attempt}")

            discard = lambda s: drop(pg_databases, s.target)  # noqa: E731
            setup, landed_at = first_kill(make, discard, ["diff"], point)
            left = in_progress(setup)
            tally.say(f"diff trial {n}: kill {landed_at}: {left}")
            assert diff_counts(setup) == (1, expected)
            assert_control_tables_settled(setup)
            failed = one(
                setup,
                f"SELECT count(*) FROM {STATE}.migration_checkpoints WHERE status = 'failed'"  # noqa: S608
                " AND error_message LIKE 'interrupted: the diff%%'",
            )
            assert failed == left.count("validation"), (failed, left)
            drop(pg_databases, setup.target)
            return 1

        tally.trial(f"diff trial {n} ({point})", trial)

    def alive() -> int:
        """A diff held up on a locked table keeps its checkpoint while another diff runs."""
        setup = scenario.fresh(pg_databases, tmp_path / "alive")
        blocker = psycopg.connect(setup.target.raw)
        try:
            blocker.execute("LOCK TABLE public.products IN ACCESS EXCLUSIVE MODE")
            slow = start(setup, "diff")
            wait_for(
                "the diff to wait on products",
                lambda: "validation products" in in_progress(setup),
                timeout=120,
            )
            other = setup.cli("diff", "--entity", "offices")
            assert other.returncode == 0, other.stdout + other.stderr
            assert "validation products" in in_progress(setup)  # not taken for dead
        finally:
            blocker.rollback()
            blocker.close()
        code, _ = finish(slow)
        assert code == 1, slow.text()
        assert_control_tables_settled(setup)
        drop(pg_databases, setup.target)
        return 0

    tally.trial("a live diff's checkpoint is left alone", alive)
    tally.report()


# -- a worker -----------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.25)


def job_settled(setup: Setup, name: str) -> bool:
    with setup.target_conn() as conn:
        row = conn.execute(
            f"SELECT j.status::text = 'completed' AND NOT EXISTS (SELECT 1 FROM"  # noqa: S608
            f" {STATE}.procrastinate_jobs q WHERE q.status IN ('todo', 'doing')"
            " AND q.task_name = ANY(%s)) FROM"
            f" {STATE}.synchronization_jobs j WHERE j.job_name = %s",
            ([RUN_TASK, CHUNK_TASK], name),
        ).fetchone()
    return bool(row and row[0])


def dead_heartbeats_stale(setup: Setup) -> bool:
    """Every worker row's heartbeat is older than procrastinate's stalled threshold (the
    killed worker's is; there is no other)."""
    with setup.target_conn() as conn:
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE last_heartbeat > now() - interval '{STALE_HEARTBEAT + 1} seconds')"  # noqa: S608
            f" FROM {STATE}.procrastinate_workers"
        ).fetchone()
    return row is not None and row[0] == 0


def stop_worker(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
    code, _ = finish(proc, timeout=300)
    assert code == 0, proc.text()


@dataclass(frozen=True)
class WorkerTrial:
    n: int
    job: str  # DM_JOB (a differential_migration: the initial load) or SYNC_JOB
    point: KillPoint
    replacement: str  # "worker" (long-running) or "once" (``worker --once``, as from cron)

    def __str__(self) -> str:
        what = "differential_migration" if self.job == DM_JOB else "bidirectional sync"
        then = "worker --once" if self.replacement == "once" else "worker"
        return f"worker trial {self.n} ({what}, kill {self.point}, then `{then}`)"


def worker_trial(
    tally: Tally,
    trial: WorkerTrial,
    *,
    legacy: Legacy,
    scenario: SyncScenario,
    pg_databases: PgDatabases,
    directory: Path,
) -> int:
    def make(attempt: int) -> Setup:
        here = directory / f"t{trial.n}.{attempt}"
        if trial.job == DM_JOB:
            here.mkdir(parents=True)
            source = legacy.copy(here / "legacy.db")
            target = pg_databases.create("isthmus_crash")
            setup = prepare_target(source, target, here, legacy.counts, migration=CHUNKED)
            commands.jobs_create(
                setup.config, DM_JOB, "differential_migration", batch_size=int(MIGRATE_BATCH)
            )
        else:
            setup = scenario.fresh(pg_databases, here, CHUNKED)
        queued = setup.cli("jobs", "run", trial.job, "--queue")
        assert queued.returncode == 0, queued.stdout + queued.stderr
        return setup

    setup, landed_at = first_kill(
        make,
        lambda s: drop(pg_databases, s.target),
        ["worker", "--concurrency", "2"],
        trial.point,
        done=lambda s: job_settled(s, trial.job),
    )
    tally.say(f"{trial}: killed at {landed_at}: {in_progress(setup)}")
    if trial.replacement == "worker":
        replacement = start(setup, "worker", "--concurrency", "2")
        try:
            wait_for(
                "the new worker to take the run over and finish it",
                lambda: job_settled(setup, trial.job) or replacement.popen.poll() is not None,
                timeout=600,
            )
        finally:
            stop_worker(replacement)
    else:
        # ``worker --once`` from cron, once the dead worker is known dead
        wait_for(
            "the dead worker's heartbeat to go stale", lambda: dead_heartbeats_stale(setup), 120
        )
        once = start(setup, "worker", "--once", "--concurrency", "2")
        code, _ = finish(once)
        assert code == 0, once.text()
    assert job_settled(setup, trial.job), f"the run was not taken over: {in_progress(setup)}"
    last = one(
        setup,
        f"SELECT metadata->'last_run' FROM {STATE}.synchronization_jobs WHERE job_name = %s",  # noqa: S608
        trial.job,
    )
    assert last["status"] == "completed", last
    tally.count("runs that took over a dead run", int(last["took_over"]))
    tally.count("rows created in the target found inserted and mapped", last["reconciled"])
    if trial.job == DM_JOB:
        assert_migrated(setup, legacy.counts, CONSTRAINTS)
    else:
        assert_synced(setup, scenario)
    drop(pg_databases, setup.target)
    shutil.rmtree(setup.config_path.parent, ignore_errors=True)
    return 1


def test_kill_9_worker_at_random_points(
    legacy: Legacy,
    sync_scenario: SyncScenario,
    pg_databases: PgDatabases,
    tmp_path: Path,
    tally: Tally,
) -> None:
    """A worker killed while running a queued differential_migration (the initial load,
    its large entities chunked across the worker's slots) or a bidirectional sync run; a
    new worker (or ``worker --once``, once the dead one's heartbeat is stale) takes the run
    over: the queue job is put back, the job's dead run taken over, and the result is as
    after an uninterrupted run. Trials run side by side: each waits ~30 s for the dead
    worker's heartbeat to go stale."""
    tally.kind = "worker"
    rng = random.Random(SEED + 3)
    total_rows = sum(legacy.counts.values())
    planned = []
    for n in range(KILLS):
        job = DM_JOB if n % 2 == 0 else SYNC_JOB
        if job == DM_JOB:
            point = draw(rng, total_rows, 2 + sync_scenario.seconds, timed=0.2)
        else:
            point = draw(
                rng, sync_scenario.units, 2 + sync_scenario.seconds, timed=0.3, phases=SYNC_PHASES
            )
        planned.append(WorkerTrial(n, job, point, "once" if n % 4 in (1, 2) else "worker"))

    def run(trial: WorkerTrial) -> None:
        tally.trial(
            str(trial),
            lambda: worker_trial(
                tally,
                trial,
                legacy=legacy,
                scenario=sync_scenario,
                pg_databases=pg_databases,
                directory=tmp_path,
            ),
        )

    with ThreadPoolExecutor(max_workers=WORKERS_AT_ONCE) as pool:
        list(pool.map(run, planned))
    tally.report()
