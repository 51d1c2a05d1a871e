"""Database faults during `migrate` and sync runs, against real servers: connections killed
mid-batch on either side, a server restarted mid-run, statement timeouts, deadlocks, a
disk-full target. Transient faults must be retried with backoff and the run complete;
terminal ones (or transient ones that outlast the retries) stop it with one clear line and a
checkpoint that the next run resumes. After every trial the target must be a row-for-row
copy of the source (``check_equal``: canonical checksums row for row, one mapping per source
row and no other, every foreign key the UUID of the same legacy parent): nothing lost,
nothing duplicated.

Every run is the installed ``isthmus`` console script. Each test prints
``db-faults: <class> N/N survived``; the figures are in docs/reliability.md. Servers that
must restart are private ones (initdb + pg_ctl, mariadb-install-db + mariadbd on free ports
in temporary directories), never the machine's shared servers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaos_support import FULL, rows, trials
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import mysql_admin, run_sql
from isthmus import commands
from isthmus.demo import generate_legacy
from isthmus.urls import DatabaseURL, parse_url
from migrate_support import STATE, Setup, check_equal, checkpoints, fetch, prepare_target

pytestmark = pytest.mark.chaos

ROWS_PER_SCALE = 1209  # the demo's rows per office
BATCH = "100"
DEBUG = bool(os.environ.get("ISTHMUS_CHAOS_DEBUG"))  # tracebacks on stderr (exit codes change)


def scale_for(wanted: int) -> int:
    return max(1, round(wanted / ROWS_PER_SCALE))


# -- what every trial checks ---------------------------------------------------------------------


@dataclass
class Tally:
    """Trials of one fault class and how many ended with nothing lost."""

    fault: str
    trials: int = 0
    survived: int = 0
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trial(self, note: str) -> None:
        """One trial that survived (a trial that did not fails the test where it failed)."""
        with self.lock:
            self.trials += 1
            self.survived += 1
            self.notes.append(note)

    def report(self, expected: int) -> None:
        print(f"\ndb-faults: {self.fault} {self.survived}/{self.trials} survived")
        for note in self.notes:
            print(f"  {note}")
        assert self.trials == expected


# An exception's class name on the user's screen means a fault nobody classified, as in
# `AdminShutdown: terminating connection` or `OperationalError: (psycopg...)`.
_RAW = re.compile(r"\b(Traceback|[A-Z][A-Za-z]+(Error|Shutdown|Exception|Detected|Failure))\b")


def assert_clear_error(stderr: str) -> str:
    """The run stopped with one line of the contract's form, naming the database's reason."""
    lines = [line for line in stderr.splitlines() if line.startswith("isthmus: error: ")]
    assert len(lines) == 1, stderr[-3000:]
    assert not _RAW.search(lines[0]), f"an unclassified error reached the user: {lines[0]}"
    return lines[0]


def assert_nothing_lost(setup: Setup) -> int:
    """Target == source row for row, one mapping per source row, no checkpoint left open,
    every parked key, index and foreign key applied; returns the rows compared."""
    equal = check_equal(setup.config)
    assert equal.total == sum(setup.counts.values()), (equal.rows, setup.counts)
    unfinished = [c for c in checkpoints(setup) if c["status"] in ("pending", "in_progress")]
    assert not unfinished, unfinished
    with setup.target_conn() as conn:
        pending = conn.execute(
            sql.SQL("SELECT name, error FROM {} WHERE applied_at IS NULL").format(
                sql.Identifier(STATE, "pending_ddl")
            )
        ).fetchall()
    assert not pending, f"deferred DDL not applied: {pending}"
    return equal.total


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def written(self) -> int:
        """Rows the run's summary (``--json``) says it wrote."""
        doc = json.loads(self.stdout)
        return sum(int(e["inserted"]) + int(e["updated"]) for e in doc["entities"])


def cli(setup: Setup, *args: str, timeout: float = 300) -> Ran:
    done = setup.cli(*(["--debug"] if DEBUG else []), "--json", *args, timeout=timeout)
    if DEBUG and done.returncode:
        print(done.stderr[-4000:])
    if not DEBUG:  # whatever happened, no traceback reaches the user's screen
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return Ran(done.returncode, done.stdout, done.stderr)


def migrate(setup: Setup) -> Ran:
    return cli(setup, "migrate", "--batch-size", BATCH)


@dataclass
class Outcome:
    """How a trial's runs ended: the errors of those that stopped, what the last one wrote."""

    reruns: int
    errors: list[str]
    last: Ran
    retries: int  # transient faults the runs retried (their warnings)

    def __str__(self) -> str:
        said = f"{self.retries} retried in the run, reruns {self.reruns}"
        return said + (f" {self.errors}" if self.errors else "")


def until_done(setup: Setup, first: Ran, *, allowed_reruns: int = 2) -> Outcome:
    """After a first `migrate` that ended with ``first``, run it again until it exits 0;
    every run that stopped must have said why in one clear line (exit 3)."""
    ran = first
    errors: list[str] = []
    retries = retried(ran)
    while ran.code != 0:
        assert ran.code == 3, f"exit {ran.code}: {ran.stderr[-3000:]}"
        errors.append(assert_clear_error(ran.stderr))
        assert len(errors) <= allowed_reruns, f"still failing after {len(errors)} runs: {errors}"
        ran = migrate(setup)
        retries += retried(ran)
    return Outcome(len(errors), errors, ran, retries)


def retried(ran: Ran) -> int:
    """Transient faults a run logged as retried."""
    return ran.stderr.count("transient error (attempt")


def in_run(setup: Setup, outcome: Outcome, total: int) -> None:
    """A fault retried within the run: no rerun, and the summary still counts every row."""
    assert outcome.reruns == 0, outcome.errors
    assert outcome.last.written() == total, (outcome.last.written(), total)


# -- databases -----------------------------------------------------------------------------------


def pg_admin(url: DatabaseURL) -> psycopg.Connection[Any]:
    return psycopg.connect(url.with_database("postgres").raw, autocommit=True)


def sqlite_setup(directory: Path, target: DatabaseURL, scale: int, migration: str = "") -> Setup:
    directory.mkdir(parents=True, exist_ok=True)
    source = parse_url(f"sqlite:///{directory / 'legacy.db'}")
    counts = generate_legacy(source, scale=scale)
    return prepare_target(source, target, directory, counts, migration=migration)


def migrated(directory: Path, target: DatabaseURL, scale: int, migration: str = "") -> Setup:
    """``sqlite_setup``, migrated (in this process: only the faulted runs need the CLI)."""
    setup = sqlite_setup(directory, target, scale, migration)
    assert commands.migrate(setup.config, batch_size=int(BATCH)).exit_code == 0
    return setup


def emptied(target: DatabaseURL) -> DatabaseURL:
    """``target`` as a new empty database again, for the next trial: its schemas dropped and
    ``public`` made anew (a DROP DATABASE forces a checkpoint of the shared server)."""
    with psycopg.connect(target.raw, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {quoted(target)} RESET ALL".encode())
        conn.execute(f"DROP SCHEMA IF EXISTS {STATE} CASCADE".encode())
        conn.execute(b"DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute(b"CREATE SCHEMA public")
    return target


def quoted(url: DatabaseURL) -> str:
    return '"' + (url.database or "").replace('"', '""') + '"'


class Targets:
    """The target databases of one test (``count`` of them, for trials run side by side),
    each handed out emptied, trial after trial."""

    def __init__(self, pg: PgDatabases, count: int = 1) -> None:
        self.free: queue.Queue[DatabaseURL] = queue.Queue()
        for _ in range(count):
            self.free.put(pg.create("isthmus_chaos"))

    @contextlib.contextmanager
    def take(self) -> Iterator[DatabaseURL]:
        target = self.free.get()
        try:
            yield emptied(target)
        finally:
            self.free.put(target)


@pytest.fixture(scope="module")
def targets(pg_databases: PgDatabases) -> Targets:
    """Three target databases for every test of this module (each test empties the one it
    takes): creating and dropping a database per trial costs more than the trial."""
    return Targets(pg_databases, 3)


@pytest.fixture(scope="module")
def mysql_source(mysql_databases: MysqlDatabases) -> DatabaseURL:
    """This module's MariaDB database for legacy tables (each trial fills it anew)."""
    return mysql_databases.create("isthmus_chaos_src")


@pytest.fixture(scope="module")
def postgresql_source(pg_databases: PgDatabases) -> DatabaseURL:
    """This module's PostgreSQL database for legacy tables (each trial fills it anew)."""
    return pg_databases.create("isthmus_chaos_src")


def server_setup(source: DatabaseURL, target: DatabaseURL, directory: Path, scale: int) -> Setup:
    """The demo legacy tables (anew) in ``source``; ``target`` ready."""
    counts = generate_legacy(source, scale=scale, replace=True)
    return prepare_target(source, target, directory, counts)


def target_sql(setup: Setup, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with setup.target_conn() as conn:
        cur = conn.execute(statement.encode(), params)  # bytes: no psycopg LiteralString check
        return cur.fetchall() if cur.description else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- killing sessions ----------------------------------------------------------------------------


class Killer(threading.Thread):
    """Kills sessions of one database at random moments while a run goes on: waits until one
    is busy (with ``idle_too``: until one exists), then up to ``wait`` seconds more, then
    kills. ``mode`` ``one``: a session working right now (with ``idle_too``, any session when
    none is); ``all``: every session of the database at once (a pooler restart, a failover);
    ``mixed``: either, at random, kill by kill.
    """

    def __init__(
        self,
        url: DatabaseURL,
        kills: int,
        mode: str,
        rng: random.Random,
        *,
        wait: float = 0.3,
        idle_too: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.wanted = kills
        self.mode = mode
        self.rng = rng
        self.wait = wait
        self.idle_too = idle_too
        self.stop = threading.Event()
        self.killed: list[str] = []

    def run(self) -> None:
        with self.admin() as conn:
            while not self.stop.is_set() and len(self.killed) < self.wanted:
                if not self.sessions(conn, busy=not self.idle_too):
                    self.stop.wait(0.01)
                    continue
                if self.stop.wait(self.rng.uniform(0.0, self.wait)):
                    return
                candidates = self.sessions(conn, busy=True)
                if not candidates and self.idle_too:
                    candidates = self.sessions(conn, busy=False)
                if not candidates:
                    continue
                mode = self.rng.choice(["one", "all"]) if self.mode == "mixed" else self.mode
                if mode == "all":
                    every = self.sessions(conn, busy=False)
                    for session, _ in every:
                        self.kill(conn, session)
                    self.killed.append(f"all ({len(every)} sessions)")
                else:
                    session, what = self.rng.choice(candidates)
                    self.kill(conn, session)
                    self.killed.append(what)

    def admin(self) -> Any:
        raise NotImplementedError

    def sessions(self, conn: Any, *, busy: bool) -> list[tuple[int, str]]:
        raise NotImplementedError

    def kill(self, conn: Any, session: int) -> None:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{len(self.killed)} kills {self.killed}"


MODES = ["mixed", "one", "all"]


class PgKiller(Killer):
    """``pg_terminate_backend`` on the sessions of one PostgreSQL database."""

    def admin(self) -> Any:
        return pg_admin(self.url)

    def sessions(self, conn: Any, *, busy: bool) -> list[tuple[int, str]]:
        rows = conn.execute(
            "SELECT pid, state || ': ' || left(query, 40) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND (NOT %s OR state IN ('active', 'idle in transaction'))",
            (self.url.database, busy),
        ).fetchall()
        return [(int(pid), str(what)) for pid, what in rows]

    def kill(self, conn: Any, session: int) -> None:
        conn.execute("SELECT pg_terminate_backend(%s)", (session,))


class MysqlKiller(Killer):
    """``KILL`` (the whole connection) of the sessions using one MariaDB/MySQL database."""

    def admin(self) -> Any:
        return contextlib.closing(mysql_admin(self.url, None))

    def sessions(self, conn: Any, *, busy: bool) -> list[tuple[int, str]]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id, concat(command, ': ', left(coalesce(info, ''), 40))"
                " FROM information_schema.processlist"
                " WHERE db = %s AND id <> connection_id() AND (NOT %s OR command = 'Query')",
                (self.url.database, busy),
            )
            return [(int(i), str(what)) for i, what in cur.fetchall()]

    def kill(self, conn: Any, session: int) -> None:
        with conn.cursor() as cur:
            try:
                cur.execute(f"KILL {int(session)}")
            except Exception as exc:  # gone meanwhile
                if "Unknown thread" not in str(exc):
                    raise


@pytest.fixture
def threads() -> Iterator[list[Killer]]:
    """Fault threads of a test, stopped at its end whatever happened."""
    started: list[Killer] = []
    yield started
    for thread in started:
        thread.stop.set()
        thread.join(timeout=30)


# -- 1. target connections killed mid-batch ------------------------------------------------------


def test_target_connection_killed_mid_batch(
    targets: Targets, tmp_path: Path, threads: list[Killer]
) -> None:
    """`migrate` (SQLite source) while 2-4 of its target sessions are terminated at random
    moments, one busy session at a time, all sessions of the database at once, or either
    kill by kill: retried within the run, which completes and counts every row."""
    tally = Tally("target connection killed (pg_terminate_backend)")
    rng = random.Random(821)
    scale = scale_for(rows(5_000, 25_000))
    count = trials(1, 21)
    for n in range(count):
        with targets.take() as target:
            setup = sqlite_setup(tmp_path / f"t{n}", target, scale)
        mode = MODES[n % 3]
        killer = PgKiller(target, rng.randint(2, 4), mode, rng)
        threads.append(killer)
        killer.start()
        first = migrate(setup)
        killer.stop.set()
        killer.join()
        outcome = until_done(setup, first)
        total = assert_nothing_lost(setup)
        in_run(setup, outcome, total)
        tally.trial(f"trial {n} ({mode}): {killer}, {outcome}")
    tally.report(count)


# -- 2. source connections killed mid-read -------------------------------------------------------


@pytest.mark.parametrize("dialect", ["mysql", "postgresql"])
def test_source_connection_killed_mid_read(
    dialect: str,
    request: pytest.FixtureRequest,
    targets: Targets,
    tmp_path: Path,
    threads: list[Killer],
) -> None:
    """`migrate` from MariaDB (``KILL``) or PostgreSQL (``pg_terminate_backend``) while its
    source sessions are killed: the reader mid-stream or between reads, the metadata session,
    or all at once. Retried within the run."""
    how = "MariaDB KILL" if dialect == "mysql" else "pg_terminate_backend"
    tally = Tally(f"source connection killed ({how})")
    rng = random.Random(822)
    scale = scale_for(rows(4_000, 25_000))
    count = trials(1, 12)
    source: DatabaseURL = request.getfixturevalue(f"{dialect}_source")
    for n in range(count):
        with targets.take() as target:
            setup = server_setup(source, target, tmp_path / f"t{n}", scale)
        mode = MODES[n % 3]
        kind = MysqlKiller if dialect == "mysql" else PgKiller
        killer = kind(setup.source, rng.randint(1, 4), mode, rng, wait=0.2, idle_too=True)
        threads.append(killer)
        killer.start()
        first = migrate(setup)
        killer.stop.set()
        killer.join()
        outcome = until_done(setup, first)
        total = assert_nothing_lost(setup)
        in_run(setup, outcome, total)
        tally.trial(f"trial {n} ({mode}): {killer}, {outcome}")
    tally.report(count)


def test_mysql_reader_killed_mid_stream_never_ends_short(mysql_source: DatabaseURL) -> None:
    """The MariaDB reader killed while the server is still sending (a result larger than the
    socket buffers): the stream must fail as a transient error, never end early as if the
    table had ended (that would lose every row after it)."""
    from isthmus.dialects import open_source
    from isthmus.errors import TransientDatabaseError

    source = mysql_source
    wanted = 200_000
    run_sql(
        source,
        [
            "DROP TABLE IF EXISTS wide",
            "CREATE TABLE wide (id INT PRIMARY KEY, pad VARCHAR(200) NOT NULL)",
            f"INSERT INTO wide SELECT seq, repeat('x', 190) FROM seq_1_to_{wanted}",  # noqa: S608
        ],
    )
    tally = Tally("MariaDB reader killed mid-stream")
    count = trials(2, 6)
    for n in range(count):
        driver = "pymysql" if n % 2 else "auto"
        url = parse_url(f"{source.raw}?driver={driver}")
        dialect = open_source(url)
        got = 0
        try:
            stream = dialect.stream_columns("wide", ["id", "pad"], ["id"], batch_size=1000)
            got += len(next(iter(stream))[0])
            with contextlib.closing(mysql_admin(source, None)) as admin, admin.cursor() as cur:
                cur.execute(
                    "SELECT id FROM information_schema.processlist WHERE db = %s"
                    " AND info LIKE 'SELECT%%wide%%' AND id <> connection_id()",
                    (source.database,),
                )
                (reader,) = cur.fetchall()
                cur.execute(f"KILL {int(reader[0])}")
            with pytest.raises(TransientDatabaseError):
                for batch in stream:
                    got += len(batch[0])
            assert got < wanted, "the kill landed after the last row: make the table larger"
        finally:
            dialect.close()
        tally.trial(f"trial {n} (driver {driver}): {got} of {wanted} rows, then a clear error")
    tally.report(count)


# -- 3. a server restarted mid-run ---------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of the test's own, on a free port (initdb + pg_ctl; as the
    ``postgres`` system user when the tests run as root), so that it can be restarted."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} to run a private server")
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-chaos-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._tool(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "-N"
        )
        self.start()

    def _tool(self, name: str, *args: str) -> None:
        sudo = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*sudo, str(PG_BIN / name), *args], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, *args: str) -> None:
        # wal_writer_delay = 10s: commits made with synchronous_commit = off (migrate's
        # batches) stay in the WAL buffers until something else flushes them, so a crash
        # forgets every batch since the last synchronous commit (the worst case, not 200 ms)
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c wal_writer_delay=10s"
        )
        self._tool(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            *args,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str) -> None:
        """``fast``: a clean restart (sessions terminated); ``immediate``: a crash (no
        shutdown checkpoint), recovered from the WAL at start."""
        if mode == "fast":
            self._ctl("restart", "-m", "fast")
        else:
            self._ctl("stop", "-m", "immediate")
            self._ctl("start")

    def url(self, database: str = "postgres") -> DatabaseURL:
        return parse_url(f"postgresql://postgres@127.0.0.1:{self.port}/{database}")

    def create(self, name: str) -> DatabaseURL:
        with psycopg.connect(self.url().raw, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateMariadb:
    """A MariaDB server of the test's own (mariadb-install-db + mariadbd) on a free port."""

    def __init__(self) -> None:
        if not (shutil.which("mariadbd") and shutil.which("mariadb-install-db")):
            pytest.skip("no mariadbd / mariadb-install-db to run a private MariaDB server")
        self.dir = Path(tempfile.mkdtemp(prefix="isthmus-chaos-my-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.data}",
             f"--socket={self.dir / 'sock'}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--user=root", "--innodb-buffer-pool-size=64M", f"--log-error={self.dir / 'err'}",
             f"--pid-file={self.dir / 'pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                mysql_admin(self.url(), None).close()
                return
            except Exception:
                assert self.proc.poll() is None, (self.dir / "err").read_text()[-2000:]
                assert time.monotonic() < deadline, "the private MariaDB did not start"
                time.sleep(0.1)

    def restart(self, mode: str) -> None:
        """``fast``: SIGTERM, a clean shutdown; ``immediate``: SIGKILL, a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM if mode == "fast" else signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.start()

    def url(self, database: str = "mysql") -> DatabaseURL:
        return parse_url(f"mysql://root@127.0.0.1:{self.port}/{database}")

    def create(self, name: str) -> DatabaseURL:
        run_sql(self.url(), [f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"])
        return self.url(name)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class Restarter(Killer):
    """Restarts a whole server once ``watch`` sees a session of the run's database busy
    (with its ``idle_too``: open), then up to ``wait`` seconds later, once per mode of
    ``modes`` (``fast``: a clean restart, ``immediate``: a crash)."""

    def __init__(
        self,
        watch: Killer,
        restart: Callable[[str], None],
        modes: list[str],
        rng: random.Random,
    ) -> None:
        super().__init__(watch.url, len(modes), "one", rng, wait=0.3)
        self.watch = watch
        self.restart = restart
        self.modes = modes

    def run(self) -> None:
        while not self.stop.is_set() and len(self.killed) < self.wanted:
            try:
                with self.watch.admin() as conn:
                    while not self.watch.sessions(conn, busy=not self.watch.idle_too):
                        if self.stop.wait(0.01):
                            return
            except Exception:  # the server is still coming back: look again
                self.stop.wait(0.05)
                continue
            if self.stop.wait(self.rng.uniform(0.0, self.wait)):
                return
            mode = self.modes[len(self.killed)]
            began = time.perf_counter()
            self.restart(mode)
            self.killed.append(f"{mode} ({time.perf_counter() - began:.1f}s)")
            self.stop.wait(0.5)

    def __str__(self) -> str:
        return f"{len(self.killed)} restarts {self.killed}"


STALL = """
CREATE SEQUENCE public.chaos_stall;
CREATE FUNCTION public.chaos_stall() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'in_progress' AND NEW.status = 'completed'
            AND NEW.entity_type = TG_ARGV[0] AND nextval('public.chaos_stall') = 1 THEN
        PERFORM pg_sleep(5);
    END IF;
    RETURN NEW;
END $$;
"""


class EndOfPassCrasher(Killer):
    """Crashes the server in the narrowest window of a pass: ``entity``'s last batch has
    committed and the run is marking its checkpoint completed. A trigger on the checkpoints
    table holds that first completion for 5 s (the test's own instrument); the server is
    stopped immediately meanwhile: the batches committed with ``synchronous_commit = off``
    that were still in the WAL buffers are forgotten, though the run saw them commit."""

    def __init__(self, setup: Setup, entity: str, restart: Callable[[str], None]) -> None:
        super().__init__(setup.target, 1, "one", random.Random(0))
        self.entity = entity
        self.restart = restart
        target_sql(setup, STALL)
        target_sql(
            setup,
            f"CREATE TRIGGER chaos_stall BEFORE UPDATE ON {STATE}.migration_checkpoints"
            f" FOR EACH ROW EXECUTE FUNCTION public.chaos_stall('{entity}')",
        )

    def run(self) -> None:
        with pg_admin(self.url) as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                    " AND wait_event = 'PgSleep'",
                    (self.url.database,),
                ).fetchone()
                if row is not None:
                    break
                time.sleep(0.005)
            else:
                return
        self.restart("immediate")
        self.killed.append(f"crash while {self.entity} completed")

    def __str__(self) -> str:
        said = self.killed or [f"the run never completed {self.entity}"]
        return f"{len(self.killed)} crashes {said}"


def test_target_server_restarted_mid_run(tmp_path: Path, threads: list[Killer]) -> None:
    """A private PostgreSQL target restarted (`pg_ctl restart -m fast`, or an immediate stop,
    i.e. a crash, and a start) while `migrate` writes into it: the run waits with backoff,
    reconnects and completes; a crash may forget the last batches (`synchronous_commit =
    off`), each one whole, and they are redone."""
    server = PrivatePostgres()
    try:
        tally = Tally("target server restarted (private PostgreSQL, fast or crash)")
        rng = random.Random(823)
        scale = scale_for(rows(5_000, 25_000))
        count = trials(2, 9)
        for n in range(count):
            target = server.create(f"isthmus_chaos_restart_{n}")
            setup = sqlite_setup(tmp_path / f"t{n}", target, scale)
            restarter: Killer
            if n % 3 == 1:  # aimed at the end of a pass
                entity = rng.choice(["patients", "orders", "products"])
                restarter = EndOfPassCrasher(setup, entity, server.restart)
            else:
                watch = PgKiller(target, 0, "one", rng)
                modes = [["immediate", "fast"][(n + i) % 2] for i in range(rng.randint(1, 2))]
                restarter = Restarter(watch, server.restart, modes, rng)
            threads.append(restarter)
            restarter.start()
            first = migrate(setup)
            restarter.stop.set()
            restarter.join()
            outcome = until_done(setup, first)
            assert_nothing_lost(setup)
            assert outcome.reruns == 0, outcome.errors
            redone = "; the run redid the batches the crash forgot" * (
                "the target forgot its last batches" in first.stderr
            )
            tally.trial(f"trial {n}: {restarter}, {outcome}{redone}")
        tally.report(count)
    finally:
        server.close()


def test_source_server_restarted_mid_run(
    targets: Targets, tmp_path: Path, threads: list[Killer]
) -> None:
    """A private MariaDB source restarted (SIGTERM, or SIGKILL: a crash) while `migrate`
    reads it: retried within the run until the server answers again."""
    server = PrivateMariadb()
    try:
        tally = Tally("source server restarted (private MariaDB, clean or crash)")
        rng = random.Random(824)
        scale = scale_for(rows(4_000, 25_000))
        count = trials(1, 5)
        for n in range(count):
            source = server.create(f"isthmus_chaos_restart_{n}")
            counts = generate_legacy(source, scale=scale)
            with targets.take() as target:
                setup = prepare_target(source, target, tmp_path / f"t{n}", counts)
            watch = MysqlKiller(source, 0, "one", rng, idle_too=True)
            restarter = Restarter(watch, server.restart, [["immediate", "fast"][n % 2]], rng)
            threads.append(restarter)
            restarter.start()
            first = migrate(setup)
            restarter.stop.set()
            restarter.join()
            outcome = until_done(setup, first)
            total = assert_nothing_lost(setup)
            in_run(setup, outcome, total)
            tally.trial(f"trial {n}: {restarter}, {outcome}")
        tally.report(count)
    finally:
        server.close()


# -- 4. sync runs: target connections killed -----------------------------------------------------


def change_source(setup: Setup, rng: random.Random, share: float = 0.3) -> int:
    """Change a share of the products and orders rows in the SQLite source and delete five
    products: what a sync run has to carry over. Returns the records a run must write or
    delete (a changed row deleted too counts once)."""
    touched: set[tuple[str, int]] = set()
    statements: list[str | tuple[str, list[Any]]] = []
    for table, column in (("products", "name"), ("orders", "status")):
        ids = [r[0] for r in fetch(setup.source, f"SELECT id FROM {table}")]  # noqa: S608
        picked = rng.sample(ids, int(len(ids) * share))
        touched.update((table, i) for i in picked)
        statements.append(
            (f"UPDATE {table} SET {column} = {column} || ' v2' WHERE id IN"  # noqa: S608
             f" ({','.join('%s' for _ in picked)})", picked)
        )  # fmt: skip
    gone = [r[0] for r in fetch(setup.source, "SELECT id FROM products ORDER BY id DESC LIMIT 5")]
    statements.append(("DELETE FROM products WHERE id IN (%s, %s, %s, %s, %s)", gone))
    touched.update(("products", i) for i in gone)
    run_sql(setup.source, statements)
    setup.counts["products"] -= len(gone)
    return len(touched)


def sync_job(setup: Setup, name: str) -> None:
    commands.jobs_create(
        setup.config, name, "manual_sync", direction="source_to_target", batch_size=int(BATCH)
    )


def job_status(setup: Setup, name: str) -> str:
    (row,) = target_sql(
        setup,
        f"SELECT status FROM {STATE}.synchronization_jobs WHERE job_name = %s",  # noqa: S608
        (name,),
    )
    return str(row[0])


def test_target_connection_killed_during_sync(
    targets: Targets, tmp_path: Path, threads: list[Killer]
) -> None:
    """A one-way sync job carrying ~30% changed rows while its target sessions are killed
    (one busy session, or all at once): retried within the run, which completes; the job is
    not left `failed` (a failed job can never run again)."""
    tally = Tally("target connection killed during a sync run")
    rng = random.Random(825)
    scale = scale_for(rows(4_000, 25_000))
    count = trials(1, 10)
    for n in range(count):
        with targets.take() as target:
            setup = migrated(tmp_path / f"t{n}", target, scale)
        touched = change_source(setup, rng)
        sync_job(setup, "chaos")
        mode = MODES[n % 3]
        # every other trial kills within 20 ms of the first statement: the run's start
        wait = 0.02 if n % 2 else 0.3
        killer = PgKiller(target, rng.randint(1, 3), mode, rng, wait=wait)
        threads.append(killer)
        killer.start()
        ran = cli(setup, "jobs", "run", "chaos")
        killer.stop.set()
        killer.join()
        assert ran.code == 0, ran.stderr[-3000:]
        said = json.loads(ran.stdout)
        assert said["status"] == "completed", said
        assert (said["records_synced"], said["records_failed"]) == (touched, 0), said
        assert job_status(setup, "chaos") == "completed"
        assert_nothing_lost(setup)
        tally.trial(
            f"trial {n} ({mode}, {'early' if n % 2 else 'any time'}): {killer},"
            f" {touched} rows to sync, {ran.stderr.count('(attempt ')} retried"
        )
    tally.report(count)


# -- 5. statement timeouts and a disk-full target: faults raised by the target itself ------------

FAULT_FUNCTION = """
CREATE SEQUENCE public.chaos_calls;
CREATE FUNCTION public.chaos_fault() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := nextval('public.chaos_calls');
BEGIN
    IF n > TG_ARGV[1]::bigint AND n <= TG_ARGV[1]::bigint + TG_ARGV[2]::bigint THEN
        IF TG_ARGV[0] = 'slow' THEN
            PERFORM pg_sleep(0.6);
        ELSE
            RAISE EXCEPTION 'could not extend file "base/16384/16402": No space left on device'
                USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
        END IF;
    END IF;
    RETURN NULL;
END $$;
"""
# At full size the default backoff (0.5 s doubling: 15.5 s before a run gives up); at smoke
# size a tenth of it, so that a fault that outlasts the retries costs 1.6 s, not 15.5.
RETRY_DELAY = "" if FULL else "retry_delay = 0.05"
FAULT_TABLES = ["public.products", "public.orders", f"{STATE}.legacy_id_mappings"]
FOREVER = 10**9


def install_fault(setup: Setup, table: str, action: str, after: int, times: int) -> None:
    """A statement trigger on ``table``: the statements writing it after the first ``after``
    (a COPY of a batch, an UPDATE) ``slow`` down by 0.6 s or fail as ``disk_full``
    (SQLSTATE 53100), ``times`` times."""
    target_sql(setup, FAULT_FUNCTION)
    target_sql(
        setup,
        f"CREATE TRIGGER chaos_fault BEFORE INSERT OR UPDATE ON {table} FOR EACH STATEMENT"
        f" EXECUTE FUNCTION public.chaos_fault('{action}', '{after}', '{times}')",
    )


def remove_fault(setup: Setup, table: str) -> None:
    target_sql(setup, f"DROP TRIGGER chaos_fault ON {table}")


def fault_calls(setup: Setup) -> int:
    (row,) = target_sql(setup, "SELECT last_value FROM public.chaos_calls")
    return int(row[0])


def entity_of(table: str) -> str:
    return table.split(".")[1] if table.startswith("public.") else "the mappings of an entity"


@dataclass
class FaultTrial:
    n: int
    table: str
    after: int
    times: int  # FOREVER: the fault outlasts the retries

    @property
    def persistent(self) -> bool:
        return self.times == FOREVER


def fault_trials(count: int, rng: random.Random) -> list[FaultTrial]:
    """Half of them (at least one) persistent; the others 1-3 faults, retried in the run."""
    return [
        FaultTrial(n, rng.choice(FAULT_TABLES), rng.randint(0, 6), FOREVER if n % 2 == 0 else
                   rng.randint(1, 3))
        for n in range(count)
    ]  # fmt: skip


def check_stopped(setup: Setup, ran: Ran, trial: FaultTrial, says: str) -> str:
    """A persistent fault: the run gave up after its retries with a clear line naming the
    reason and what it was doing, and left a failed checkpoint saying the same."""
    assert ran.code == 3, (ran.code, ran.stderr[-3000:])
    line = assert_clear_error(ran.stderr)
    assert says in line and "gave up after 5 retries" in line, line
    assert retried(ran) == 5, ran.stderr[-3000:]
    failed = [c for c in checkpoints(setup) if c["status"] == "failed"]
    assert len(failed) == 1 and says in (failed[0]["error_message"] or ""), failed
    if trial.table.startswith("public."):
        assert failed[0]["entity_type"] == entity_of(trial.table), failed
        assert f"migrating {failed[0]['entity_type']}" in line, line
    return line


def resumed(setup: Setup, stopped: dict[str, Any], rerun: Ran) -> None:
    """The rerun went on after the failed checkpoint's last key, in that checkpoint."""
    (entity,) = [
        e for e in json.loads(rerun.stdout)["entities"] if e["entity"] == stopped["entity_type"]
    ]
    assert entity["checkpoint_id"] == str(stopped["id"]), (entity, stopped)
    assert entity["resumed_after"] == stopped["last_processed_id"], (entity, stopped)


def run_fault_trials(
    targets: Targets,
    directory: Path,
    scale: int,
    planned: list[FaultTrial],
    *,
    action: str,
    says: str,
    extra: Sequence[Callable[[], str]] = (),
) -> list[str]:
    """Each trial on an emptied target, two at a time (a persistent one mostly waits out its
    backoff): install the fault, migrate; a transient one must be retried within the run; a
    persistent one must stop clearly, and once the fault is gone a rerun resumes and
    completes. Nothing lost either way. ``extra`` trials run in the same pool."""

    def one(trial: FaultTrial) -> str:
        with targets.take() as target:
            setup = sqlite_setup(directory / f"t{trial.n}", target, scale, RETRY_DELAY)
            return fault_trial(setup, trial, action, says)

    with ThreadPoolExecutor(max_workers=2 + len(extra)) as pool:
        more = [pool.submit(task) for task in extra]
        return [*pool.map(one, planned), *(f.result() for f in more)]


def fault_trial(setup: Setup, trial: FaultTrial, action: str, says: str) -> str:
    install_fault(setup, trial.table, action, trial.after, trial.times)
    if action == "slow":
        target_sql(setup, f"ALTER DATABASE {quoted(setup.target)} SET statement_timeout = '200ms'")
    first = migrate(setup)
    calls = fault_calls(setup)
    if action == "slow":
        target_sql(setup, f"ALTER DATABASE {quoted(setup.target)} RESET statement_timeout")
    if trial.persistent:
        line = check_stopped(setup, first, trial, says)
        (stopped,) = [c for c in checkpoints(setup) if c["status"] == "failed"]
        remove_fault(setup, trial.table)
        rerun = migrate(setup)
        assert rerun.code == 0, rerun.stderr[-3000:]
        resumed(setup, stopped, rerun)
        assert_nothing_lost(setup)
        return (
            f"trial {trial.n}: {trial.table} after {trial.after} statements, for ever:"
            f" {line!r}; {stopped['entity_type']} resumed after key"
            f" {stopped['last_processed_id']} ({stopped['records_processed']} rows kept)"
        )
    remove_fault(setup, trial.table)
    outcome = until_done(setup, first, allowed_reruns=0)
    total = assert_nothing_lost(setup)
    in_run(setup, outcome, total)
    hit = max(0, min(calls - trial.after, trial.times))
    # each fault that hit cost a retry; two lanes may hit at once and share one
    assert outcome.retries >= min(hit, 1), (outcome, calls, trial)
    warned = json.loads(outcome.last.stdout)["warnings"]
    return (
        f"trial {trial.n}: {trial.table} after {trial.after} statements, {trial.times}"
        f" times ({hit} hit): {outcome}" + (f"; warnings {warned}" if warned else "")
    )


def test_statement_timeout(targets: Targets, tmp_path: Path) -> None:
    """`ALTER DATABASE … SET statement_timeout = '200ms'` on the target, and a trigger making
    some batch statements (target rows or mappings) take 0.6 s: each one is cancelled
    (57014). A few are retried within the run, which completes; a statement that always
    times out ends the run after its retries with a line naming the timeout and the entity,
    a failed checkpoint, and a rerun (timeout reset) resumes from that checkpoint."""
    tally = Tally("statement timeout (statement_timeout = 200ms)")
    scale = scale_for(rows(3_000, 12_000))
    count = trials(2, 10)
    planned = fault_trials(count, random.Random(826))
    for note in run_fault_trials(
        targets, tmp_path, scale, planned, action="slow", says="statement timeout"
    ):
        tally.trial(note)
    tally.report(count)


def test_disk_full(targets: Targets, tmp_path: Path) -> None:
    """A target write failing as a full disk does (SQLSTATE 53100 disk_full, raised by a
    trigger on the target rows or the mappings): a passing shortage is retried within the
    run; one that lasts stops the run after bounded retries with a clear line and a failed,
    resumable checkpoint, and once space is back (the trigger dropped) a rerun completes."""
    tally = Tally("disk full (SQLSTATE 53100 on a target write)")
    scale = scale_for(rows(3_000, 12_000))
    count = trials(2, 10)
    planned = fault_trials(count, random.Random(827))
    syncs = [
        functools.partial(sync_gives_up, targets, tmp_path / f"sync{n}", scale, n)
        for n in range(trials(1, 4))
    ]
    for note in run_fault_trials(
        targets,
        tmp_path,
        scale,
        planned,
        action="disk_full",
        says="No space left on device",
        extra=syncs,
    ):
        tally.trial(note)
    tally.report(count + len(syncs))


def sync_gives_up(targets: Targets, directory: Path, scale: int, n: int) -> str:
    """A sync job's run whose products writes fail as a full disk, for ever: after its
    retries it stops with a clear line, the job `failed` (the state machine's end) with the
    error on its checkpoint; with space back, a new job's run carries over the rest."""
    rng = random.Random(829 + n)
    with targets.take() as target:
        setup = migrated(directory, target, scale, RETRY_DELAY)
        touched = change_source(setup, rng)
        sync_job(setup, "chaos")
        install_fault(setup, "public.products", "disk_full", rng.randint(0, 4), FOREVER)
        ran = cli(setup, "jobs", "run", "chaos")
        assert ran.code == 3, ran.stderr[-3000:]
        line = assert_clear_error(ran.stderr)
        assert "job chaos: PostgreSQL: could not extend file" in line, line
        assert "No space left on device (gave up after 5 retries)" in line, line
        assert job_status(setup, "chaos") == "failed"
        (failed, synced) = target_sql(
            setup,
            f"SELECT count(*) FILTER (WHERE c.status = 'failed' AND c.error_message LIKE"  # noqa: S608
            f" '%%No space left on device%%'), max(j.total_records_synced)"
            f" FROM {STATE}.synchronization_jobs j"
            f" LEFT JOIN {STATE}.migration_checkpoints c ON c.job_id = j.id"
            " WHERE j.job_name = 'chaos'",
        )[0]
        assert failed >= 1, failed
        remove_fault(setup, "public.products")
        sync_job(setup, "chaos-again")
        again = cli(setup, "jobs", "run", "chaos-again")
        assert again.code == 0, again.stderr[-3000:]
        said = json.loads(again.stdout)
        assert said["status"] == "completed", said
        # the failed run's statistics count what it applied; the new job, the rest
        assert int(synced) + said["records_synced"] == touched, (synced, said, touched)
        assert_nothing_lost(setup)
    return (
        f"sync trial {n}: {line!r}; job failed with {synced} of {touched} records applied,"
        f" a new job applied the other {said['records_synced']}"
    )


# -- 6. deadlocks ----------------------------------------------------------------------------------


class Deadlocker(Killer):
    """Provokes real deadlocks with a run's writes into ``public.products``.

    For each candidate batch (the target keys of 100 rows the run will update in one
    statement, in the order it reads them): lock a row in its middle (``FOR UPDATE``), wait
    until the run's UPDATE waits for it, find a row of the batch the run's transaction has
    already updated (``FOR UPDATE NOWAIT`` fails on it) and ask for it: each transaction now
    waits for the other. PostgreSQL aborts one with 40P01; this session waits 10 s before it
    looks for a deadlock, the run's 1 s, so the run's statement is the one aborted."""

    def __init__(self, url: DatabaseURL, batches: list[list[str]], wanted: int) -> None:
        super().__init__(url, wanted, "one", random.Random(0))
        self.batches = batches
        self.misses = 0

    def run(self) -> None:
        with (
            psycopg.connect(self.url.raw) as conn,
            psycopg.connect(self.url.raw, autocommit=True) as watch,
        ):
            conn.execute("SET deadlock_timeout = '10s'")
            conn.commit()
            me = conn.info.backend_pid
            for batch in self.batches:
                if self.stop.is_set() or len(self.killed) >= self.wanted:
                    return
                middle = batch[len(batch) // 2]
                conn.execute("SELECT 1 FROM public.products WHERE id = %s FOR UPDATE", (middle,))
                waiter = self._waiter(watch, me)
                if waiter is None:  # the run did not get to this row (yet): the next batch
                    conn.rollback()
                    self.misses += 1
                    continue
                held = None
                for key in batch:
                    if key == middle:
                        continue
                    try:
                        with conn.transaction():
                            conn.execute(
                                "SELECT 1 FROM public.products WHERE id = %s FOR UPDATE NOWAIT",
                                (key,),
                            )
                    except psycopg.errors.LockNotAvailable:
                        held = key
                        break
                if held is None:  # the waiting row came first in its statement
                    conn.rollback()
                    self.misses += 1
                    continue
                try:  # waits until PostgreSQL aborts the run's statement
                    conn.execute("SELECT 1 FROM public.products WHERE id = %s FOR UPDATE", (held,))
                    self.killed.append(f"deadlock with pid {waiter}")
                except psycopg.errors.DeadlockDetected:
                    self.killed.append(f"deadlock with pid {waiter} (this side aborted)")
                conn.rollback()

    def _waiter(self, watch: psycopg.Connection[Any], me: int) -> int | None:
        """The session waiting for a lock this one holds (up to 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stop.is_set():
            row = watch.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (me,)
            ).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.005)
        return None

    def __str__(self) -> str:
        return f"{len(self.killed)} deadlocks {self.killed} ({self.misses} batches missed)"


def product_batches(setup: Setup, first: int) -> list[list[str]]:
    """The target keys of the products in the run's batches of ``BATCH`` (by legacy key),
    from the ``first``-th batch on."""
    keys = [
        str(r[0])
        for r in target_sql(
            setup,
            f"SELECT uuid_id FROM {STATE}.legacy_id_mappings"  # noqa: S608
            " WHERE entity_type = 'products' ORDER BY legacy_id",
        )
    ]
    size = int(BATCH)
    return [keys[i : i + size] for i in range(first * size, len(keys), size)]


@pytest.mark.parametrize("run_kind", ["migrate", "sync"])
def test_deadlock(run_kind: str, targets: Targets, tmp_path: Path, threads: list[Killer]) -> None:
    """Every product changed in the source, then a differential `migrate` (or a one-way sync
    job) rewrites them in the target while another session deadlocks with its UPDATEs, 1-3
    times: PostgreSQL aborts the run's statement (40P01), the run retries and completes."""
    tally = Tally(f"deadlock (40P01) with a {run_kind} run's writes")
    rng = random.Random(828)
    scale = scale_for(rows(4_000, 25_000))
    count = trials(1, 10)
    for n in range(count):
        with targets.take() as target:
            setup = migrated(tmp_path / f"t{n}", target, scale)
        run_sql(setup.source, ["UPDATE products SET name = name || ' v2'"])
        if run_kind == "sync":
            sync_job(setup, "chaos")
        locker = Deadlocker(target, product_batches(setup, rng.randint(0, 3)), rng.randint(1, 3))
        threads.append(locker)
        locker.start()
        ran = cli(setup, "jobs", "run", "chaos") if run_kind == "sync" else migrate(setup)
        locker.stop.set()
        locker.join()
        assert ran.code == 0, ran.stderr[-3000:]
        assert locker.killed, f"no deadlock provoked: {locker}"
        assert "deadlock detected" in ran.stderr, ran.stderr[-3000:]
        assert retried(ran) >= len(locker.killed), (retried(ran), str(locker))
        if run_kind == "sync":
            said = json.loads(ran.stdout)
            assert said["status"] == "completed", said
            assert said["records_synced"] == setup.counts["products"], said
        else:
            (products,) = [
                e for e in json.loads(ran.stdout)["entities"] if e["entity"] == "products"
            ]
            assert products["updated"] == setup.counts["products"], products
        assert_nothing_lost(setup)
        tally.trial(f"trial {n}: {locker}, {retried(ran)} retried")
    tally.report(count)
