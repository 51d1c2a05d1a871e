"""Secrets and access, by tests that try to break them (issue 8, area 5).

- **Passwords masked**: PostgreSQL roles and MariaDB users with passwords (also hostile ones:
  a raw ``@``, a stray ``%``, given through ``${VAR}``) in the source and target URLs, then
  every kind of output provoked: auth failures, refused connections, unknown databases, config
  errors, a failing migrate, ``--debug`` tracebacks and logs, ``--json`` errors, plan/schema
  output, the listings, the HTML report, the API's bodies and a worker's and a server's logs;
  then every row of every state table. The password's random parts must appear nowhere.
- **Read-only source**: migrate, diff, validate and a ``source_to_target`` job run against a
  SELECT-only PostgreSQL role whose rows are visible only to read-only transactions (a
  row-level security policy that raises otherwise), a SELECT-only MariaDB user whose every
  session is checked from inside, and a SQLite file in a read-only directory read by a process
  without CAP_DAC_OVERRIDE. A bidirectional job with a SELECT-only role fails with a clear
  error and corrupts nothing.
- **API token**: every mutation route of the OpenAPI schema against a token-protected app and a
  real ``isthmus serve``, with every way of not quite carrying the token; nothing changes.
  ``--no-auth`` is refused off loopback; the token never shows in a log or an answer.
- **Separate state owner**: the state schema owned by one role, the target tables by the
  application's; isthmus runs as the owner with grants on the application's tables, the
  application cannot touch the control tables, and its deletes still work under isthmus's
  delete-capturing trigger.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from chaos_support import FULL, trials
from psycopg import sql

from conftest import MYSQL_SERVER
from isthmus import commands
from isthmus.config import load_config
from isthmus.demo import generate_legacy
from isthmus.urls import DatabaseURL, parse_url
from migrate_support import DEMO_ENTITIES, cli_env, isthmus_executable

pytestmark = pytest.mark.chaos

STATE = "isthmus"
SCALE = 2  # 2,418 demo rows: a setup takes well under a second


def _hex(chars: int = 12) -> str:
    return secrets.token_hex(chars // 2)


def report(kind: str, survived: int, total: int) -> None:
    """The line docs/reliability.md's figures are read from."""
    print(f"secrets-access: {kind} {survived}/{total}")


# -- playgrounds: uniquely named databases and roles, dropped after ------------------------------


class PgPlayground:
    """Databases and roles on the test PostgreSQL server, all uniquely named, all dropped."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.server = parse_url(admin)
        self.databases: list[str] = []
        self.roles: list[str] = []

    def sql(self, statement: str | sql.Composable, database: str | None = None) -> None:
        uri = self.server.with_database(database).raw if database else self.admin
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def role(self, prefix: str, *, password: str | None = None, options: str = "LOGIN") -> str:
        name = f"{prefix}_{_hex(10)}"
        statement = sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name))
        if password is not None:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        self.sql(statement)
        self.roles.append(name)
        return name

    def database(self, prefix: str, owner: str | None = None) -> str:
        name = f"{prefix}_{_hex(10)}"
        self.sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        if owner:
            self.sql(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return name

    def admin_url(self, database: str) -> DatabaseURL:
        return self.server.with_database(database)

    def url(self, database: str, user: str, password: str | None = None) -> str:
        """``postgresql://user[:password]@host:port/database``; the password as given (raw)."""
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@{self.server.host}:{self.server.port or 5432}/{database}"

    def close(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in reversed(self.databases):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            for name in reversed(self.roles):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def pg(pg_server: str) -> Iterator[PgPlayground]:
    play = PgPlayground(pg_server)
    try:
        yield play
    finally:
        play.close()


class MyPlayground:
    """Databases and users on the test MariaDB server, uniquely named, dropped after."""

    def __init__(self, server: DatabaseURL) -> None:
        self.server = server
        self.databases: list[str] = []
        self.users: list[str] = []

    def sql(self, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
        import pymysql

        conn = pymysql.connect(
            host=self.server.host or "127.0.0.1",
            port=self.server.port or 3306,
            user=self.server.username or "root",
            password=self.server.password or "",
            autocommit=True,
            connect_timeout=5,
        )
        try:
            with conn.cursor() as cur:
                for item in statements:
                    text, params = item if isinstance(item, tuple) else (item, ())
                    cur.execute(text, params or None)
        finally:
            conn.close()

    def database(self, prefix: str) -> str:
        name = f"{prefix}_{_hex(10)}"
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.databases.append(name)
        return name

    def user(self, prefix: str, password: str, grants: str, database: str) -> str:
        name = f"{prefix}_{_hex(8)}"
        self.sql(
            (f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (password,)),
            f"GRANT {grants} ON `{database}`.* TO '{name}'@'%'",
        )
        self.users.append(name)
        return name

    def admin_url(self, database: str) -> DatabaseURL:
        return self.server.with_database(database)

    def url(self, database: str, user: str, password: str) -> str:
        host, port = self.server.host or "127.0.0.1", self.server.port or 3306
        return f"mysql://{user}:{password}@{host}:{port}/{database}"

    def close(self) -> None:
        self.sql(
            *(f"DROP USER IF EXISTS '{u}'@'%'" for u in self.users),
            *(f"DROP DATABASE IF EXISTS `{d}`" for d in self.databases),
        )


@pytest.fixture
def my() -> Iterator[MyPlayground]:
    server = parse_url(MYSQL_SERVER)
    play = MyPlayground(server)
    try:
        play.sql("SELECT 1")
    except Exception as exc:
        pytest.skip(f"no MySQL/MariaDB server answers at {server.masked()}: {exc}")
    try:
        yield play
    finally:
        play.close()


# -- running isthmus ----------------------------------------------------------------------------


def write_config(directory: Path, source: str, target: str, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"isthmus-{_hex(6)}.toml"
    path.write_text(
        f"[source]\nurl = {json.dumps(source)}\n"
        f"[target]\nurl = {json.dumps(target)}\nstate_schema = {json.dumps(STATE)}\n{extra}\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Ran:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


def cli(
    config: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Ran:
    """The installed ``isthmus`` in a process of its own, to the end."""
    command = [isthmus_executable(), *(["--config", str(config)] if config else []), *args]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**cli_env(), **(env or {})},
    )
    return Ran(tuple(args), done.returncode, done.stdout, done.stderr)


def inproc(config: Path | None, *args: str, env: dict[str, str] | None = None) -> Ran:
    """The CLI's ``main`` in this process (click's runner): the same code, the same logging
    set-up, without an interpreter's start-up. An exception that escapes (``--debug``) is
    printed as Python would print it, to be scanned as well."""
    import logging
    import traceback

    from click.testing import CliRunner

    from isthmus.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    argv = [*(["--config", str(config)] if config else []), *args]
    try:
        result = CliRunner(env=env).invoke(main, argv, catch_exceptions=True)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = result.stderr
    if result.exc_info and not isinstance(result.exception, (SystemExit, type(None))):
        err += "".join(traceback.format_exception(*result.exc_info))
        code = 1
    else:
        code = result.exit_code
    return Ran(tuple(args), code, result.stdout, err)


# -- the leak detector ----------------------------------------------------------------------------


@dataclass
class Scanner:
    """Every text isthmus produced goes through :meth:`scan`; none may hold a needle."""

    needles: list[str]
    scanned: list[str] = field(default_factory=list)
    leaks: dict[str, str] = field(default_factory=dict)  # label → where

    def scan(self, label: str, text: str) -> None:
        self.scanned.append(label)
        for needle in self.needles:
            at = text.find(needle)
            if at >= 0:
                self.leaks[label] = f"…{text[max(0, at - 120) : at + 60]!r}…"

    def ran(self, ran: Ran, label: str = "") -> Ran:
        self.scan(f"isthmus {' '.join(ran.args)} {label}".strip(), ran.text)
        return ran

    def state_tables(self, target_admin: DatabaseURL, schema: str = STATE) -> int:
        """Every text, json and array column of every table of ``schema`` (found through
        information_schema.columns), and every row cast whole to text; returns the rows."""
        rows = 0
        with psycopg.connect(target_admin.raw, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
                " FROM information_schema.columns WHERE table_schema = %s"
                " AND (data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',"
                " 'ARRAY', 'USER-DEFINED') OR udt_name IN ('text', 'jsonb', 'json'))"
                " GROUP BY table_name ORDER BY table_name",
                (schema,),
            ).fetchall()
            assert tables, f"no tables in {schema}"
            for table, columns in tables:
                t = sql.Identifier(schema, table)
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(t)).fetchone()
                rows += count[0] if count else 0
                for column in columns:
                    for needle in self.needles:
                        hit = conn.execute(
                            sql.SQL(
                                "SELECT {c}::text FROM {t} WHERE strpos({c}::text, %s) > 0"
                            ).format(c=sql.Identifier(column), t=t),
                            (needle,),
                        ).fetchone()
                        if hit:
                            self.leaks[f"{schema}.{table}"] = f"{column}: {hit[0]!r}"
                for needle in self.needles:  # and each row as a whole
                    whole = conn.execute(
                        sql.SQL("SELECT r::text FROM {} AS r WHERE strpos(r::text, %s) > 0").format(
                            t
                        ),
                        (needle,),
                    ).fetchone()
                    if whole:
                        self.leaks[f"{schema}.{table}"] = f"a row: {whole[0]!r}"
                self.scanned.append(f"{schema}.{table}")
        return rows

    def check(self, kind: str) -> None:
        """Report how many outputs held no secret; fail naming each that did."""
        report(kind, len(set(self.scanned) - set(self.leaks)), len(set(self.scanned)))
        assert not self.leaks, "leaked:\n" + "\n".join(f"{k}: {v}" for k, v in self.leaks.items())


# == 1. passwords are masked everywhere ===========================================================


def hostile_password() -> tuple[str, list[str]]:
    """A password people really write into URLs unencoded (a raw ``@``, a stray ``%``, a
    space), and the random parts that must never be seen again."""
    a, b, c = _hex(12), _hex(12), _hex(12)
    return f"s3cr3t-{a}@{b}%zz {c}", [a, b, c]


def test_masking_holds_for_hostile_passwords_and_text() -> None:
    """``mask_secrets`` on random raw passwords (every printable character but whitespace and
    ``/``: ``@``, ``%``, ``:``, ``#``, ``?``, quotes…) in URLs of every scheme, inside prose,
    JSON and repr quotes, and ``DatabaseURL.masked()`` on passwords with spaces: no part of a
    password survives. On hostile text (a megabyte of letters, a URL without an ``@``, thousands
    of ``://`` or ``@``) it takes linear time: it runs on every string a ``--json`` command
    prints, and on every error and log line."""
    import random
    import string

    from isthmus.errors import ConfigError
    from isthmus.urls import mask_secrets

    rng = random.Random(8)
    alphabet = "".join(c for c in string.printable if not c.isspace() and c != "/")
    schemes = ("postgresql", "postgres", "mysql", "mariadb", "postgresql+psycopg", "embedded")
    frames = ("{}", "connecting to {}: refused", '"url": "{}", "x": "a@b"', "'{}'", "({})", "<{}>")
    leaks = []
    count = trials(2_000, 50_000)
    for _ in range(count):
        marks = [_hex(8) for _ in range(3)]
        pieces = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(2)]
        password = marks[0] + pieces[0] + marks[1] + pieces[1] + marks[2]
        url = (
            f"{rng.choice(schemes)}://user_{_hex(4)}:{password}@db.example:5432/app"
            f"{rng.choice(['', '?sslmode=require', '?schema=x&driver=pymysql'])}"
        )
        text = rng.choice(frames).format(url)
        masked = mask_secrets(text)
        if any(mark in masked for mark in marks) or "@db.example:5432/app" not in masked:
            leaks.append((text, masked))
    for raw in ("pa/ss", "%zz", "a:b:c", "@@@", "p@", "#?"):
        masked = mask_secrets(f"postgresql://u:{raw}{_hex(8)}@h/db")
        if masked != "postgresql://u:***@h/db":
            leaks.append((raw, masked))
    # a URL isthmus holds (DatabaseURL.masked(), config errors): spaces in the password too
    spaced = alphabet.replace("#", "").replace("?", "") + "  "
    for _ in range(count // 4):
        marks = [_hex(8) for _ in range(3)]
        pieces = ["".join(rng.choices(spaced, k=rng.randint(0, 6))) for _ in range(2)]
        password = marks[0] + pieces[0] + marks[1] + pieces[1] + marks[2]
        scheme = rng.choice(("postgresql", "mysql"))
        try:
            masked = parse_url(f"{scheme}://u:{password}@db.example:5432/app").masked()
        except ConfigError as exc:  # a raw '[' or ']': refused, saying so, password masked
            masked = str(exc)
            if "percent-encode" not in masked:
                leaks.append((password, masked))
        if any(mark in masked for mark in marks) or "@db.example:5432/app" not in masked:
            leaks.append((password, masked))
    hostile = [
        "a" * 1_000_000,
        "postgresql://u:" + "a" * 300_000,
        "postgresql://u:" + "a@" * 150_000 + "/x",
        "x://" * 100_000 + " a@b",
        "a://b:" * 100_000 + "@",
        "http://h:8080/p," * 50_000 + "u@x",
        ("mysql://u:p@h/db " * 20_000),
    ]
    slow = []
    for text in hostile:
        started = time.perf_counter()
        mask_secrets(text)
        seconds = time.perf_counter() - started
        if seconds > 2:
            slow.append((text[:40], len(text), round(seconds, 1)))
    total = count + 6 + count // 4 + len(hostile)
    report(
        "password masking (random raw passwords, hostile text)",
        total - len(leaks) - len(slow),
        total,
    )
    assert not leaks, leaks[:5]
    assert not slow, slow


def api_texts(config: Path, token: str, scanner: Scanner, label: str) -> int:
    """Drive the API in-process (TestClient) through its reads, its errors and a failing
    background task; scan every body and every log record. Returns the requests made."""
    import logging

    from fastapi.testclient import TestClient

    from isthmus.api import create_app

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    keep = Keep()
    keep.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(keep)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    auth = {"Authorization": f"Bearer {token}"}
    requests = [
        ("GET", "/api/health", None),
        ("GET", "/api/jobs", None),
        ("GET", "/api/jobs/no-such-job", None),
        ("GET", "/api/checkpoints?limit=1000", None),
        ("GET", "/api/differentials", None),
        ("GET", "/api/quarantine?include_resolved=true", None),
        ("GET", "/api/reports", None),
        ("GET", "/api/reports/latest", None),
        ("GET", "/api/reports/latest/html", None),
        ("GET", "/api/mappings/offices/1", None),
        ("GET", "/metrics", None),
        (
            "POST",
            "/api/jobs",
            {"name": f"api-{_hex(6)}", "type": "manual_sync", "entities": ["nope"]},
        ),
        ("POST", "/api/jobs/no-such-job/run", None),
        ("POST", "/api/validate", {"entities": ["offices"], "types": ["completeness_check"]}),
    ]
    try:
        with TestClient(create_app(load_config(config), token=token)) as client:
            for method, path, body in requests:
                response = client.request(method, path, json=body, headers=auth)
                scanner.scan(f"API {label} {method} {path} → {response.status_code}", response.text)
                scanner.scan(f"API {label} {method} {path} headers", str(response.headers))
                if path == "/api/validate" and response.status_code == 202:
                    task = response.json()["id"]
                    deadline = time.monotonic() + 60
                    while True:
                        seen = client.get(f"/api/tasks/{task}")
                        if seen.json().get("status") != "running" or time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
                    scanner.scan(f"API {label} task {seen.json().get('status')}", seen.text)
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    scanner.scan(f"API {label} logs", "\n".join(records))
    return len(requests)


def test_passwords_never_leak_postgresql(pg: PgPlayground, tmp_path: Path) -> None:
    password, needles = hostile_password()
    scanner = Scanner(needles)
    role = pg.role("isthmus_pw", password=password)
    src, tgt = pg.database("isthmus_pw_src", owner=role), pg.database("isthmus_pw_tgt", owner=role)
    encoded = quote(password, safe="")
    generate_legacy(parse_url(pg.url(src, role, encoded)), scale=SCALE)
    with psycopg.connect(pg.admin_url(src).raw) as conn:
        first_id = conn.execute("SELECT min(id) FROM offices").fetchone()[0]  # type: ignore[index]
    env = {"ISTHMUS_CHAOS_PW": password}  # the config holds ${ISTHMUS_CHAOS_PW}, raw
    via_env = pg.url(src, role, "${ISTHMUS_CHAOS_PW}"), pg.url(tgt, role, "${ISTHMUS_CHAOS_PW}")
    good = write_config(tmp_path, *via_env)
    literal = write_config(tmp_path, pg.url(src, role, encoded), pg.url(tgt, role, encoded))
    html = tmp_path / "report.html"

    # what works, each output scanned (a few in processes of their own, the rest in this one)
    for config, args, real in (
        (good, ("init",), True),
        (good, ("schema", "--apply"), False),
        (good, ("--json", "migrate"), False),
        (good, ("--debug", "--json", "diff"), True),
        (good, ("--json", "validate", "--html", str(html)), False),
        (good, ("jobs", "create", "j1", "--type", "manual_sync"), False),
        (
            good,
            ("jobs", "create", "j2", "--type", "manual_sync", "--direction", "bidirectional"),
            False,
        ),
        (good, ("jobs", "create", "j3", "--type", "manual_sync"), False),
        (good, ("--debug", "--json", "jobs", "run", "j1"), FULL),
        (good, ("plan",), False),
        (literal, ("--json", "plan"), False),
        (good, ("schema",), False),
        (good, ("checkpoints", "list"), False),
        (good, ("--json", "checkpoints", "list"), False),
        (good, ("--json", "jobs", "list"), False),
        (good, ("--json", "jobs", "show", "j1"), False),
        (good, ("--json", "quarantine", "list", "--all"), False),
        (good, ("--json", "differentials", "list", "--all"), False),
        (good, ("reports", "list"), False),
        (good, ("reports", "show", "latest", "--format", "html"), False),
        (good, ("--json", "reports", "show", "latest"), False),
        (good, ("--json", "mappings", "lookup", "offices", str(first_id)), False),
        (good, ("--json", "prune", "--dry-run"), False),
    ):
        ran = scanner.ran(cli(config, *args, env=env) if real else inproc(config, *args, env=env))
        assert ran.code in (0, 1), (args, ran.code, ran.err)
    scanner.scan("validate --html file", html.read_text(encoding="utf-8"))

    # what fails: each failure as a line, as JSON, and with --debug's traceback and logs
    nologin = pg.role("isthmus_nl", password=password, options="NOLOGIN")
    refused = pg.url(src, role, password).replace(f":{pg.server.port or 5432}/", ":1/")
    unset = "${ISTHMUS_NOT_SET_" + _hex(6) + "}"
    broken = {
        "unknown database": write_config(
            tmp_path, pg.url(f"nope_{_hex(6)}", role, password), via_env[1]
        ),
        "unknown role": write_config(
            tmp_path, pg.url(src, f"nobody_{_hex(6)}", password), via_env[1]
        ),
        "unknown key": write_config(tmp_path, *via_env, extra="[migration]\nbatch_sise = 5"),
        "bad scheme": write_config(
            tmp_path, via_env[0].replace("postgresql:", "postgresqlx:"), via_env[1]
        ),
        "target not postgresql": write_config(
            tmp_path, via_env[0], "mysql://u:" + password + "@h/db"
        ),
        "unset variable": write_config(tmp_path, *via_env, extra=f'[diff]\nresolution = "{unset}"'),
        "not TOML": tmp_path / "broken.toml",
        # (the first and the last also run in a process of their own; all with the full trials)
        "role may not log in": write_config(tmp_path, via_env[0], pg.url(tgt, nologin, password)),
        "bad port": write_config(tmp_path, via_env[0].replace(":5432/", ":99999/"), via_env[1]),
        "connection refused": write_config(tmp_path, refused, via_env[1]),  # retried: slow
    }
    broken["not TOML"].write_text(f'[source]\nurl = "{pg.url(src, role, password)}\n')
    for what, config in broken.items():
        if what != "connection refused":
            for args in (("--json", "diff"), ("--debug", "migrate")):
                ran = scanner.ran(inproc(config, *args, env=env), what)
                assert ran.code in (2, 3), (what, ran.args, ran.code, ran.out, ran.err)
    in_a_process = list(broken) if FULL else ["role may not log in", "connection refused"]
    for what in in_a_process:
        ran = scanner.ran(cli(broken[what], "--debug", "--json", "diff", env=env), what)
        assert ran.code in (2, 3), (what, ran.args, ran.code, ran.out, ran.err)

    # a worker's logs with a working and a failing source; a job run whose source went away
    # (its error is stored); a migrate that fails (a target table gone)
    for name, config in (("j1", good), ("j3", broken["unknown database"])):
        ran = scanner.ran(inproc(good, "--json", "jobs", "run", name, "--queue", env=env))
        assert ran.code == 0, ran.err
        ran = scanner.ran(cli(config, "--debug", "worker", "--once", env=env, timeout=180))
        failed = "does not exist" in ran.err  # a failed run: the worker says so, and exits 3
        assert (ran.code, failed) == ((3, True) if name == "j3" else (0, False)), (
            ran.code,
            ran.out,
        )
    ran = scanner.ran(inproc(broken["unknown database"], "--json", "jobs", "run", "j2", env=env))
    assert ran.code == 3, ran.err
    ran = scanner.ran(inproc(good, "--json", "jobs", "show", "j2", env=env))
    assert ran.code == 0 and "does not exist" in ran.out, ran.out
    pg.sql("DROP TABLE orders CASCADE", database=tgt)
    pg.sql("UPDATE products SET name = name || '!' WHERE id % 7 = 0", database=src)
    ran = scanner.ran(cli(good, "--debug", "--json", "migrate", env=env))
    assert ran.code in (2, 3), ran.err

    # the API: bodies, headers and log records, with a working and a missing source
    with _env(env):
        requests = api_texts(good, "t0ken-" + _hex(8), scanner, "good")
        requests += api_texts(broken["unknown database"], "t0ken-" + _hex(8), scanner, "no source")
    assert requests >= 20

    rows = scanner.state_tables(pg.admin_url(tgt))
    assert rows > 2000  # mappings, checkpoints, jobs, reports, queue rows were all scanned
    scanner.check("passwords masked (PostgreSQL)")


def test_passwords_never_leak_mariadb(my: MyPlayground, pg: PgPlayground, tmp_path: Path) -> None:
    """MariaDB checks passwords for real: a wrong one, through both drivers."""
    password, needles = hostile_password()
    scanner = Scanner(needles)
    db = my.database("isthmus_pw")
    user = my.user("isthmus_pw", password, "ALL PRIVILEGES", db)
    generate_legacy(my.admin_url(db), scale=SCALE)
    role = pg.role("isthmus_pw", password=password)
    tgt = pg.database("isthmus_pw_tgt", owner=role)
    env = {"ISTHMUS_CHAOS_PW": password}
    target = pg.url(tgt, role, "${ISTHMUS_CHAOS_PW}")
    good = write_config(tmp_path, my.url(db, user, "${ISTHMUS_CHAOS_PW}"), target)
    for args in (
        ("init",),
        ("schema", "--apply"),
        ("--json", "migrate"),
        ("--json", "diff"),
        ("--json", "validate", "--type", "completeness_check,data_integrity"),
        ("jobs", "create", "j1", "--type", "manual_sync", "--direction", "bidirectional"),
        ("--json", "jobs", "run", "j1"),
        ("--json", "checkpoints", "list"),
        ("--json", "jobs", "show", "j1"),
        ("plan",),
    ):
        ran = scanner.ran(inproc(good, *args, env=env))
        assert ran.code in (0, 1), (args, ran.code, ran.err)

    wrong = f"wrong-{needles[0]}@{needles[1]}"
    failures = {
        "wrong password": my.url(db, user, wrong),
        "unknown user": my.url(db, f"nobody_{_hex(6)}", password),
        "unknown database": my.url(f"nope_{_hex(6)}", user, password),
        "connection refused": my.url(db, user, password).replace(":3306/", ":1/"),
    }
    configs: list[tuple[str, Path]] = []
    for what, url in failures.items():
        for driver in ("pymysql", "connector"):
            configs.append(
                (f"{what} ({driver})", write_config(tmp_path, f"{url}?driver={driver}", target))
            )
    for what, config in configs:
        if "refused" not in what:  # retried, slow: once in a process below
            ran = scanner.ran(inproc(config, "--json", "diff", env=env), what)
            assert ran.code in (2, 3), (what, ran.code, ran.out, ran.err)
    for what, config in [*configs[: trials(1, len(configs))], configs[-1]]:
        ran = scanner.ran(cli(config, "--debug", "--json", "migrate", env=env), what)
        assert ran.code in (2, 3), (what, ran.code, ran.out, ran.err)
        if what.startswith("wrong password"):
            assert "Access denied" in ran.err, ran.err  # a real authentication failure
    ran = scanner.ran(inproc(configs[0][1], "--json", "jobs", "run", "j1", env=env))
    assert ran.code == 3, ran.err
    with _env(env):
        requests = api_texts(configs[0][1], "t0ken-" + _hex(8), scanner, "wrong password")
    assert requests
    scanner.state_tables(pg.admin_url(tgt))
    scanner.check("passwords masked (MariaDB)")


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# == 2. the source is read-only for one-way work ==================================================

ONE_WAY = (
    ("migrate",),
    ("--json", "diff"),
    ("--json", "validate", "--type", "completeness_check,data_integrity,relationship_integrity"),
    ("--json", "jobs", "run", "oneway"),
)


def one_way_rounds(
    config: Path, change: Callable[[int], None], ran_ok: Callable[[Ran], None]
) -> int:
    """Create a source_to_target job, then per round change the source and run migrate, diff,
    validate and the job; returns the commands run."""
    ran = inproc(config, "jobs", "create", "oneway", "--type", "manual_sync")
    assert ran.code == 0, ran.err
    commands_run = 0
    for round_ in range(trials(1, 3)):
        change(round_)
        for args in ONE_WAY:
            ran = inproc(config, *args)
            ran_ok(ran)
            commands_run += 1
    return commands_run


def target_counts(url: str, schema: str = "public") -> dict[str, int]:
    """Rows per demo table in the target."""
    counts = {}
    with psycopg.connect(url) as conn:
        for table in DEMO_ENTITIES:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            row = conn.execute(query).fetchone()
            counts[table] = row[0] if row else -1
    return counts


def must_succeed(ran: Ran) -> None:
    # diff and validate say 1 while differences remain: the source changed since the migrate
    assert ran.code in (0, 1), (ran.args, ran.code, ran.out[-2000:], ran.err)
    assert "read-only" not in ran.text and "permission denied" not in ran.text.lower(), ran.text


def bidirectional_refused(
    reader: Path, writer: Path, source_admin: DatabaseURL, target_admin: DatabaseURL, says: str
) -> int:
    """A bidirectional job run with a SELECT-only source fails, saying ``says``, and writes
    nothing to the source; the same job with a writer then brings the target's change back
    and nothing differs. Returns the runs checked."""
    from diff_support import source_fingerprint

    ran = inproc(
        reader, "jobs", "create", "both", "--type", "manual_sync", "--direction", "bidirectional"
    )
    assert ran.code == 0, ran.err
    with psycopg.connect(target_admin.raw, autocommit=True) as conn:
        changed = conn.execute(
            "UPDATE offices SET name = name || ' (target)' WHERE id IN"
            " (SELECT id FROM offices ORDER BY id LIMIT 2)"
        ).rowcount
    assert changed == 2
    before = source_fingerprint(source_admin)
    ran = inproc(reader, "--json", "jobs", "run", "both")
    assert ran.code == 3 and says in ran.err, (ran.code, ran.out[-2000:], ran.err)
    assert ran.err.count("\n") == 1  # one line, no traceback
    assert source_fingerprint(source_admin) == before
    # nothing was corrupted: a job that may write carries the change over, and then all agree
    for args in (
        ("jobs", "create", "both2", "--type", "manual_sync", "--direction", "bidirectional"),
        ("--json", "jobs", "run", "both2"),
        ("--json", "diff"),
    ):
        ran = inproc(writer, *args)
        assert ran.code == 0, (args, ran.out[-2000:], ran.err)
    after = source_fingerprint(source_admin)
    names = [row for row in after["offices"] if "(target)" in str(row)]
    assert len(names) == 2, names
    return 2


READ_ONLY_GUARD = """
CREATE FUNCTION public.isthmus_test_read_only() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF current_setting('transaction_read_only') <> 'on' THEN
        RAISE EXCEPTION 'the source was read in a writable transaction';
    END IF;
    RETURN true;
END $$
"""


def test_postgresql_source_read_only_for_one_way_work(pg: PgPlayground, tmp_path: Path) -> None:
    """A SELECT-only role, and rows a row-level security policy shows only to read-only
    transactions (anything else raises): migrate, diff, validate and a one-way job all work,
    so every read they made was in a read-only transaction, with SELECT alone."""
    src, tgt = pg.database("isthmus_ro_src"), pg.database("isthmus_ro_tgt")
    source_admin = pg.admin_url(src)
    counts = generate_legacy(source_admin, scale=SCALE)
    reader = pg.role("isthmus_ro")
    statements: list[str | sql.Composable] = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(src), sql.Identifier(reader)
        ),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(reader)),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(reader)),
        READ_ONLY_GUARD,
    ]
    for table in DEMO_ENTITIES:
        statements += [
            f'CREATE POLICY only_read_only ON "{table}" FOR SELECT USING (public.isthmus_test_read_only())',
            f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        ]
    for statement in statements:
        pg.sql(statement, database=src)
    reader_url = pg.url(src, reader)
    # the guard bites: the same role in a writable transaction cannot read a row
    with psycopg.connect(reader_url) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("SELECT count(*) FROM offices").fetchone()

    config = write_config(tmp_path, reader_url, pg.admin_url(tgt).raw)
    for args in (("init",), ("schema", "--apply")):
        assert inproc(config, *args).code == 0

    def change(round_: int) -> None:
        mark = sql.Literal(f"+{round_}")
        for statement in (
            "UPDATE products SET name = name || {} WHERE id % 5 = 0",
            "UPDATE offices SET name = name || {} WHERE id % 3 = 0",
        ):
            pg.sql(sql.SQL(statement).format(mark), database=src)

    runs = one_way_rounds(config, change, must_succeed)
    assert target_counts(pg.admin_url(tgt).raw) == counts
    final = inproc(config, "--json", "diff")
    assert final.code == 0, final.out  # the job took every change across: nothing left
    writer = write_config(tmp_path, source_admin.raw, pg.admin_url(tgt).raw)
    runs += bidirectional_refused(
        config, writer, source_admin, pg.admin_url(tgt), "permission denied for table offices"
    )

    # from inside: every session the dialect opens is read-only, whoever connects
    from isthmus.dialects import open_source

    hooks = 0
    for url in (parse_url(reader_url), source_admin):
        source: Any = open_source(url)
        try:
            assert source._query("SHOW transaction_read_only") == [("on",)]
            streaming = source._open(streaming=True)
            assert streaming.execute("SHOW transaction_read_only").fetchone() == ("on",)
            streaming.close()
            from isthmus.errors import DatabaseError

            with pytest.raises(DatabaseError, match="read-only transaction"):
                source._query("CREATE TABLE isthmus_must_not_exist (i int)")
            hooks += 3
        finally:
            source.close()
    report("read-only source (PostgreSQL)", runs + hooks, runs + hooks)


def my_read_only_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int]]:
    """Every MySQL/MariaDB connection isthmus opens, asked from inside whether its session is
    read-only: (opened as a writer, @@transaction_read_only)."""
    from isthmus.dialects import mysql_driver

    seen: list[tuple[bool, int]] = []
    real = mysql_driver.connect

    def connect(driver: str, url: DatabaseURL, *, session_sql: list[str], raw: bool = False) -> Any:
        conn = real(driver, url, session_sql=session_sql, raw=raw)
        cur = conn.cursor()
        try:
            cur.execute("SELECT @@session.transaction_read_only")
        except Exception:  # MariaDB before 11.1 calls it tx_read_only
            cur.execute("SELECT @@session.tx_read_only")
        value = int(cur.fetchone()[0])
        cur.close()
        writer = not any("READ ONLY" in s for s in session_sql)
        seen.append((writer, value))
        return conn

    monkeypatch.setattr(mysql_driver, "connect", connect)
    return seen


@pytest.mark.mysql
def test_mariadb_source_read_only_for_one_way_work(
    my: MyPlayground, pg: PgPlayground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SELECT-only MariaDB user: migrate, diff, validate and a one-way job work, and every
    session they open says from inside that it is read-only; none opens a writer."""
    db = my.database("isthmus_ro")
    counts = generate_legacy(my.admin_url(db), scale=SCALE)
    password = "ro-" + _hex(12)
    reader = my.user("isthmus_ro", password, "SELECT", db)
    tgt = pg.database("isthmus_ro_tgt")
    config = write_config(tmp_path, my.url(db, reader, password), pg.admin_url(tgt).raw)
    for args in (("init",), ("schema", "--apply")):
        assert inproc(config, *args).code == 0
    seen = my_read_only_spy(monkeypatch)

    def change(round_: int) -> None:
        update = f"UPDATE `{db}`.products SET name = CONCAT(name, %s) WHERE id %% 5 = 0"  # noqa: S608
        my.sql((update, (f"+{round_}",)))

    runs = one_way_rounds(config, change, must_succeed)
    assert seen and all(value == 1 and not writer for writer, value in seen), seen
    assert target_counts(pg.admin_url(tgt).raw) == counts
    assert inproc(config, "--json", "diff").code == 0
    writer = write_config(tmp_path, my.admin_url(db).raw, pg.admin_url(tgt).raw)
    runs += bidirectional_refused(
        config, writer, my.admin_url(db), pg.admin_url(tgt), "table 'offices': (1044) Access denied"
    )

    # a full-rights user's sessions refuse writes too
    from isthmus.dialects import open_source
    from isthmus.errors import DatabaseError

    source: Any = open_source(my.admin_url(db))
    try:
        with pytest.raises(DatabaseError, match="READ ONLY"):
            source._query("UPDATE offices SET name = name WHERE id < 0")
    finally:
        source.close()
    report("read-only source (MariaDB)", runs + len(seen) + 1, runs + len(seen) + 1)


def tree_fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file of ``directory``: its hash and its mtime."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


SANDBOX = ["setpriv", "--bounding-set", "-dac_override,-fowner,-linux_immutable"]


def test_sqlite_source_read_only_for_one_way_work(pg: PgPlayground, tmp_path: Path) -> None:
    """The legacy file and its directory made read-only (0444, 0555) and read by a process
    without CAP_DAC_OVERRIDE (root would otherwise write anyway): migrate, diff, validate and a
    one-way job work, and not a byte or a file of the directory changes; a bidirectional job
    fails saying why, and writes nothing."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    db = legacy_dir / "legacy.db"
    source = parse_url(f"sqlite:///{db}")
    counts = generate_legacy(source, scale=SCALE)
    tgt = pg.database("isthmus_ro_tgt")
    target = pg.admin_url(tgt).raw
    config = write_config(tmp_path / "config", source.raw, target)
    for args in (("init",), ("schema", "--apply")):
        assert inproc(config, *args).code == 0

    def lock(locked: bool) -> None:
        db.chmod(0o444 if locked else 0o644)
        legacy_dir.chmod(0o555 if locked else 0o755)

    def sandboxed(*steps: tuple[str, ...] | str) -> list[Ran]:
        """In one process without CAP_DAC_OVERRIDE: each tuple is a command run by the CLI's
        main, each string a statement run on the target."""
        script = (
            "import json, sys, psycopg\n"
            "from click.testing import CliRunner\n"
            "from isthmus.cli import main\n"
            "for step in json.loads(sys.argv[1]):\n"
            "    if isinstance(step, str):\n"
            f"        psycopg.connect({target!r}, autocommit=True).execute(step).close()\n"
            "        continue\n"
            "    r = CliRunner().invoke(main, step)\n"
            "    print(json.dumps([r.exit_code, r.stdout, r.stderr, repr(r.exception)]))\n"
        )
        argv = [s if isinstance(s, str) else ["--config", str(config), *s] for s in steps]
        done = subprocess.run(
            [*SANDBOX, "--", sys.executable, "-c", script, json.dumps(argv)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=cli_env(),
        )
        assert done.returncode == 0, done.stderr
        results = [json.loads(line) for line in done.stdout.splitlines()]
        commands_ = [s for s in steps if not isinstance(s, str)]
        return [Ran(a, r[0], r[1], r[2] + r[3]) for a, r in zip(commands_, results, strict=True)]

    lock(True)
    try:
        # the sandbox holds: a process in it cannot write the file
        probe = subprocess.run(
            [
                *SANDBOX,
                "--",
                sys.executable,
                "-c",
                f"import sqlite3; sqlite3.connect({str(db)!r}).execute('CREATE TABLE x (i)')",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode != 0 and "readonly" in probe.stderr, probe.stderr
        runs = 0
        for round_ in range(trials(1, 3)):
            if round_:  # a change in the legacy file, made outside the sandbox
                lock(False)
                with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                    conn.execute(
                        "UPDATE products SET name = name || ? WHERE id % 5 = 0", (f"+{round_}",)
                    )
                lock(True)
            before = tree_fingerprint(legacy_dir)
            steps: list[tuple[str, ...] | str] = list(ONE_WAY)
            if round_ == 0:
                steps.insert(0, ("jobs", "create", "oneway", "--type", "manual_sync"))
            for ran in sandboxed(*steps):
                must_succeed(ran)
                runs += 1
            assert tree_fingerprint(legacy_dir) == before
        # a bidirectional job must write back a change made in the target: it cannot
        created, ran = sandboxed(
            ("jobs", "create", "both", "--type", "manual_sync", "--direction", "bidirectional"),
            "UPDATE offices SET name = name || ' (target)'",
            ("--json", "jobs", "run", "both"),
        )
        assert created.code == 0, created.err
        assert ran.code == 3 and "readonly" in ran.err, (ran.code, ran.out, ran.err)
        assert tree_fingerprint(legacy_dir) == before
        # from inside: the dialect's connection refuses to write, even for root
        from isthmus.dialects import open_source
        from isthmus.errors import DatabaseError

        opened: Any = open_source(source)
        try:
            with pytest.raises(DatabaseError, match="readonly"):
                opened._query("CREATE TABLE isthmus_must_not_exist (i)")
        finally:
            opened.close()
    finally:
        lock(False)
    assert target_counts(target) == counts
    report("read-only source (SQLite)", runs + 2, runs + 2)


# == 3. the API's token cannot be bypassed ========================================================


@dataclass
class ApiWorld:
    config: Path
    token: str
    needles: list[str]  # the token's and the target password's random parts
    target_admin: DatabaseURL
    legacy: Path
    job: str
    differential: str
    review_item: str


@pytest.fixture(scope="module")
def api_world(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    """A migrated demo (SQLite → PostgreSQL, the target reached with a password) holding a
    job, an open differential and a review item: every mutation route has something real to
    change."""
    play = PgPlayground(pg_server)
    try:
        directory = tmp_path_factory.mktemp("api")
        password, needles = hostile_password()
        role = play.role("isthmus_api", password=password)
        tgt = play.database("isthmus_api_tgt", owner=role)
        legacy = directory / "legacy.db"
        generate_legacy(parse_url(f"sqlite:///{legacy}"), scale=SCALE)
        target = play.url(tgt, role, quote(password, safe=""))
        config = write_config(directory, f"sqlite:///{legacy}", target)
        loaded = load_config(config)
        commands.init(loaded)
        commands.schema(loaded, apply=True)
        assert commands.migrate(loaded).exit_code == 0
        commands.jobs_create(
            loaded, "nightly", "manual_sync", direction="bidirectional", conflict="manual"
        )
        with contextlib.closing(sqlite3.connect(legacy)) as lite, lite:
            (office,) = lite.execute("SELECT min(id) FROM offices").fetchone()
            lite.execute("UPDATE offices SET name = 'source side' WHERE id = ?", (office,))
        admin = play.admin_url(tgt)
        with psycopg.connect(admin.raw, autocommit=True) as conn:
            conn.execute(
                "UPDATE offices SET name = 'target side' WHERE id = (SELECT uuid_id FROM"
                " isthmus.legacy_id_mappings WHERE entity_type = 'offices' AND legacy_id = %s)",
                (office,),
            )
        commands.jobs_run(loaded, "nightly")  # parks the office for review
        with contextlib.closing(sqlite3.connect(legacy)) as lite, lite:
            lite.execute("UPDATE products SET name = name || ' (new)' WHERE id % 9 = 0")
        commands.diff(loaded)
        with psycopg.connect(admin.raw) as conn:
            differential = conn.execute(
                "SELECT id FROM isthmus.data_differentials WHERE NOT resolved"
                " AND resolution_strategy <> 'manual_review' LIMIT 1"
            ).fetchone()
            item = conn.execute(
                "SELECT id FROM isthmus.data_differentials WHERE NOT resolved"
                " AND resolution_strategy = 'manual_review' LIMIT 1"
            ).fetchone()
        assert differential and item
        token = f"T0k3n-{_hex(16)}-Zz"
        yield ApiWorld(
            config,
            token,
            [*needles, token[6:22]],
            admin,
            legacy,
            "nightly",
            str(differential[0]),
            str(item[0]),
        )
    finally:
        play.close()


def world_fingerprint(world: ApiWorld) -> str:
    """Every row of every state and target table, and the legacy file: what a mutation would
    change."""
    digest = hashlib.sha256(world.legacy.read_bytes())
    with psycopg.connect(world.target_admin.raw) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('isthmus', 'public') AND table_type = 'BASE TABLE'"
            " ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(
                sql.SQL("SELECT r::text FROM {} AS r ORDER BY 1").format(
                    sql.Identifier(schema, table)
                )
            ).fetchall()
            digest.update(f"{schema}.{table}:{rows!r}".encode())
    return digest.hexdigest()


def mutation_routes(schema: dict[str, Any], world: ApiWorld) -> list[tuple[str, Any]]:
    """Every POST route of the OpenAPI schema, its path parameters filled with real things and
    a body that would work: what an attacker would send."""
    values = {
        "name": world.job,
        "differential_id": world.differential,
        "item_id": world.review_item,
    }
    bodies: dict[str, Any] = {
        "/api/jobs": {"name": "evil-" + _hex(6), "type": "manual_sync"},
        "/api/differentials/{differential_id}/resolve": {"strategy": "source_wins"},
        "/api/review/{item_id}/resolve": {"winner": "source"},
        "/api/validate": {},
    }
    routes = []
    for path, operations in schema["paths"].items():
        if "post" in operations:
            filled = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
            routes.append((filled, bodies.get(path)))
    assert len(routes) >= 8, routes
    return routes


def header_attempts(token: str) -> list[tuple[str, list[tuple[str, bytes]], str]]:
    """(what, headers, query string): ways of not quite carrying the token."""
    basic = base64.b64encode(f"isthmus:{token}".encode()).decode()
    homoglyph = token.replace("k", "\u043a")  # a Cyrillic ka
    return [
        ("no token", [], ""),
        ("wrong token", [("Authorization", b"Bearer wrong")], ""),
        ("empty bearer", [("Authorization", b"Bearer ")], ""),
        ("token's prefix", [("Authorization", f"Bearer {token[:-1]}".encode())], ""),
        ("token's suffix", [("Authorization", f"Bearer {token[1:]}".encode())], ""),
        ("token plus a byte", [("Authorization", f"Bearer {token}x".encode())], ""),
        ("token's case changed", [("Authorization", f"Bearer {token.swapcase()}".encode())], ""),
        ("lowercase scheme, wrong token", [("Authorization", b"bearer wrong")], ""),
        ("extra spaces, wrong token", [("Authorization", b"Bearer    wrong   ")], ""),
        ("very long token", [("Authorization", b"Bearer " + b"A" * 60_000)], ""),
        ("unicode homoglyph", [("Authorization", f"Bearer {homoglyph}".encode())], ""),
        ("NUL after the token", [("Authorization", f"Bearer {token}\x00".encode())], ""),
        (
            "NUL inside the token",
            [("Authorization", f"Bearer {token[:5]}\x00{token[5:]}".encode())],
            "",
        ),
        ("Basic auth", [("Authorization", f"Basic {basic}".encode())], ""),
        ("Token scheme", [("Authorization", f"Token {token}".encode())], ""),
        ("no scheme", [("Authorization", token.encode())], ""),
        ("scheme with a colon", [("Authorization", f"Bearer: {token}".encode())], ""),
        ("Proxy-Authorization", [("Proxy-Authorization", f"Bearer {token}".encode())], ""),
        ("X-API-Token", [("X-API-Token", token.encode()), ("X-Auth-Token", token.encode())], ""),
        ("cookie", [("Cookie", f"token={token}; access_token={token}".encode())], ""),
        ("query string", [], f"token={token}&access_token={token}&api_token={token}"),
        ("authorization in the query", [], "authorization=Bearer%20" + quote(token)),
        (
            "query string, percent-encoded",
            [],
            "token=" + "".join(f"%{b:02X}" for b in token.encode()),
        ),
        (
            "wrong header first",
            [("Authorization", b"Bearer wrong"), ("Authorization", f"Bearer {token}".encode())],
            "",
        ),
        (
            "method override",
            [("X-HTTP-Method-Override", b"GET"), ("X-Method-Override", b"GET")],
            "",
        ),
        (
            "cross-origin",
            [("Origin", b"https://evil.example"), ("Sec-Fetch-Site", b"cross-site")],
            "",
        ),
        ("form body", [("Content-Type", b"application/x-www-form-urlencoded")], ""),
    ]


OTHER_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")
PATH_TRICKS = (
    "/api//jobs",
    "//api/jobs",
    "/API/jobs",
    "/api/JOBS",
    "/api/jobs/",
    "/api/./jobs",
    "/api/jobs/%2e%2e/jobs",
    "/api/jobs/..%2fjobs",
    "/api/%6aobs",
    "/static/../api/jobs",
    "/api/jobs;x=1",
    "/api/jobs%00",
    "/api/jobs%20",
    "/api/jobs/{job}/run/",
    "/api/jobs/{job}%2Frun",
    "/api/jobs/{job}/./run",
    "/api/jobs/{job}/x/../run",
    "/api/jobs/{job}/RUN",
    "/api/jobs/{job}/run%3f",
    "/api/jobs/{job}/run?queue=true&token={token}",
    "/api/validate/",
    "/api//validate",
    "/api/review/{item}/resolve/",
    "/api/differentials/{differential}//resolve",
)


def allowed(method: str, status: int) -> bool:
    """A request without the token may be refused in any way; only a read may succeed."""
    return not 200 <= status < 300 or method in ("GET", "HEAD")


def test_api_token_cannot_be_bypassed_in_process(api_world: ApiWorld) -> None:
    """create_app with a token, through TestClient: every mutation route × every way of not
    carrying the token, every other method, path tricks and CORS preflights. Nothing answers
    2xx to a change, nothing changes; the token shows in no answer."""
    from fastapi.testclient import TestClient

    from isthmus.api import create_app

    world = api_world
    before = world_fingerprint(world)
    attempts = 0
    refused = 0
    problems: list[str] = []
    with TestClient(
        create_app(load_config(world.config), token=world.token), follow_redirects=False
    ) as client:
        routes = mutation_routes(client.get("/openapi.json").json(), world)
        for path, body in routes:
            for what, headers, query in header_attempts(world.token):
                form = any(name == "Content-Type" for name, _ in headers)
                said = client.request(
                    "POST",
                    path + (f"?{query}" if query else ""),
                    headers=[(k.encode(), v) for k, v in headers],
                    content=b"name=evil&type=manual_sync"
                    if form
                    else json.dumps(body).encode()
                    if body is not None
                    else None,
                )
                attempts += 1
                ok = said.status_code == 401 and world.token not in said.text
                refused += ok
                if not ok:
                    problems.append(f"POST {path} ({what}): {said.status_code} {said.text[:200]}")
            for method in OTHER_METHODS:
                said = client.request(method, path, headers={"X-HTTP-Method-Override": "POST"})
                attempts += 1
                ok = allowed(method, said.status_code)
                refused += ok
                if not ok:
                    problems.append(f"{method} {path}: {said.status_code}")
            said = client.options(
                path,
                headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            attempts += 1
            ok = not 200 <= said.status_code < 300 and not any(
                h.lower().startswith("access-control-allow") for h in said.headers
            )
            refused += ok
            if not ok:
                problems.append(f"CORS preflight {path}: {said.status_code} {dict(said.headers)}")
        for trick in PATH_TRICKS:
            path = trick.format(
                job=world.job,
                item=world.review_item,
                differential=world.differential,
                token=world.token,
            )
            said = client.post(
                path, json={"name": "evil-" + _hex(6), "type": "manual_sync", "winner": "source"}
            )
            attempts += 1
            ok = not 200 <= said.status_code < 300 and world.token not in said.text
            refused += ok
            if not ok:
                problems.append(f"POST {path}: {said.status_code} {said.text[:200]}")
        tasks = client.get("/api/tasks").json()
        assert tasks == [], tasks  # no run, no validation was started
        assert world_fingerprint(world) == before, "a refused request changed something"
        # the control: with the token the same request does change things
        made = client.post(
            "/api/jobs",
            json={"name": "authorized-" + _hex(6), "type": "manual_sync"},
            headers={"Authorization": f"Bearer {world.token}"},
        )
        assert made.status_code == 201, made.text
        assert world_fingerprint(world) != before
    report("API token bypass attempts (in process)", refused, attempts)
    assert not problems, "\n".join(problems)


def test_no_auth_is_refused_off_loopback(api_world: ApiWorld) -> None:
    """``serve --no-auth`` starts only on a loopback address; without a token it never starts."""
    from isthmus.api.serve import run_server
    from isthmus.errors import UsageError

    config = load_config(api_world.config)
    hosts = (
        "0.0.0.0",
        "::",
        "[::]",
        "192.0.2.1",
        "10.0.0.1",
        "example.com",
        "localhost.example.com",
        "127.0.0.1.nip.io",
        "0",
        "",
        " ",
        "::ffff:0.0.0.0",
        "0x7f000001",
        "127.1",
        "2130706433",
        "localhost:80@evil.example",
        "*",
    )
    refusals = 0
    with _env({"ISTHMUS_API_TOKEN": api_world.token}):
        for host in hosts:  # a token set changes nothing: --no-auth off loopback is refused
            with pytest.raises(UsageError, match="loopback"):
                run_server(config, host, 0, no_auth=True)
            refusals += 1
    with _env({"ISTHMUS_API_TOKEN": ""}):
        for host in ("127.0.0.1", "0.0.0.0"):
            with pytest.raises(UsageError, match="ISTHMUS_API_TOKEN is not set"):
                run_server(config, host, 0, no_auth=False)
            refusals += 1
    # and as a real process, which must exit 2 before it listens
    env = {k: v for k, v in cli_env().items() if k != "ISTHMUS_API_TOKEN"}
    procs = [
        subprocess.Popen(
            [isthmus_executable(), "--config", str(api_world.config), "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **extra},
        )
        for args, extra in (
            (
                ["--no-auth", "--host", "0.0.0.0", "--port", "0"],
                {"ISTHMUS_API_TOKEN": api_world.token},
            ),
            (["--no-auth", "--host", "::", "--port", "0"], {}),
            (["--host", "127.0.0.1", "--port", "0"], {}),
        )
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (out, err)
        assert api_world.token not in out + err
        refusals += 1
    report("--no-auth off loopback / no token refused", refusals, len(hosts) + 2 + len(procs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_http(port: int, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send ``request`` byte for byte; the status (0: no answer, the connection closed)."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(match[1]) if match else 0), data


def request_bytes(
    method: str, target: str, port: int, headers: list[tuple[str, bytes]], body: bytes | None
) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n".encode()
    for name, value in headers:
        head += name.encode() + b": " + value + b"\r\n"
    if body is not None:
        if not any(name.lower() == "content-type" for name, _ in headers):
            head += b"Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + b"\r\n" + (body or b"")


def test_api_token_cannot_be_bypassed_over_the_wire(api_world: ApiWorld, tmp_path: Path) -> None:
    """A real ``isthmus --debug serve`` with ISTHMUS_API_TOKEN, spoken to byte for byte (no
    client normalises a path or refuses a header): the same attempts, raw path tricks, obs-fold,
    absolute-form targets, pipelining. Nothing changes; neither the token nor the target's
    password appears in an answer or in the server's logs (access log included)."""
    world = api_world
    port = free_port()
    out_file, err_file = tmp_path / "serve.out", tmp_path / "serve.err"
    before = world_fingerprint(world)
    with out_file.open("w") as out, err_file.open("w") as err:
        server = subprocess.Popen(
            [
                isthmus_executable(),
                "--config",
                str(world.config),
                "--debug",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=err,
            env={**cli_env(), "ISTHMUS_API_TOKEN": world.token},
        )
    attempts = refused = 0
    problems: list[str] = []
    answers: list[bytes] = []

    def attempt(
        method: str, target: str, headers: list[tuple[str, bytes]], body: bytes | None, what: str
    ) -> None:
        nonlocal attempts, refused
        status, answer = raw_http(port, request_bytes(method, target, port, headers, body))
        answers.append(answer)
        attempts += 1
        ok = allowed(method, status) and world.token.encode() not in answer
        refused += ok
        if not ok:
            problems.append(f"{method} {target} ({what}): {answer[:300]!r}")

    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, err_file.read_text()
            with contextlib.suppress(OSError):
                if raw_http(port, request_bytes("GET", "/api/health", port, [], None))[0] == 200:
                    break
            assert time.monotonic() < deadline, err_file.read_text()
            time.sleep(0.2)
        schema = json.loads(
            raw_http(port, request_bytes("GET", "/openapi.json", port, [], None))[1].split(
                b"\r\n\r\n", 1
            )[1]
        )
        routes = mutation_routes(schema, world)
        for path, body in routes[: trials(3, len(routes))]:
            payload = json.dumps(body).encode() if body is not None else b""
            for what, headers, query in header_attempts(world.token):
                attempt("POST", path + (f"?{query}" if query else ""), headers, payload, what)
        for path, _ in routes:
            for method in OTHER_METHODS:
                attempt(method, path, [("X-HTTP-Method-Override", b"POST")], None, "method")
            attempt(
                "OPTIONS",
                path,
                [
                    ("Origin", b"https://evil.example"),
                    ("Access-Control-Request-Method", b"POST"),
                    ("Access-Control-Request-Headers", b"authorization"),
                ],
                None,
                "CORS",
            )
        body = json.dumps(
            {"name": "evil-" + _hex(6), "type": "manual_sync", "winner": "source"}
        ).encode()
        for trick in PATH_TRICKS:
            target = trick.format(
                job=world.job,
                item=world.review_item,
                differential=world.differential,
                token=world.token,
            )
            attempt("POST", target, [], body, "path trick")
        job_run = f"/api/jobs/{world.job}/run"
        for what, target, headers in (
            ("absolute-form target", f"http://127.0.0.1:{port}{job_run}", []),
            # (folded onto a second line the real token is still the token, RFC 9112 5.2)
            (
                "obs-fold",
                job_run,
                [("Authorization", b"Bearer\r\n " + world.token.encode() + b"x")],
            ),
            (
                "header name with a space",
                job_run,
                [("Authorization ", f"Bearer {world.token}".encode())],
            ),
            ("tab for space", job_run, [("Authorization", f"Bearer\t{world.token}x".encode())]),
            (
                "latin-1 bytes",
                job_run,
                [("Authorization", b"Bearer \xe9\xff" + world.token.encode())],
            ),
        ):
            attempt("POST", target, headers, b"", what)
        # two requests on one connection: the second, a mutation without the token
        pipelined = request_bytes("GET", "/api/jobs", port, [], None).replace(
            b"Connection: close\r\n", b""
        )
        status, answer = raw_http(port, pipelined + request_bytes("POST", job_run, port, [], b""))
        attempts += 1
        ok = answer.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 401" in answer
        refused += ok
        if not ok:
            problems.append(f"pipelined: {answer[:400]!r}")
        # the control: the right token passes the check (the job is not running: 409)
        status, answer = raw_http(
            port,
            request_bytes(
                "POST",
                f"/api/jobs/{world.job}/pause",
                port,
                [("Authorization", f"Bearer {world.token}".encode())],
                b"",
            ),
        )
        assert status == 409, answer
        tasks = raw_http(port, request_bytes("GET", "/api/tasks", port, [], None))[1]
        assert tasks.endswith(b"[]"), (tasks, problems)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert world_fingerprint(world) == before, "a refused request changed something"
    logs = out_file.read_text(errors="replace") + err_file.read_text(errors="replace")
    assert "POST /api/jobs" in logs  # the access log was on
    scanner = Scanner(world.needles)
    scanner.scan("isthmus serve logs", logs)
    for i, answer in enumerate(answers):
        scanner.scan(f"answer {i}", answer.decode("latin-1"))
    report("API token bypass attempts (isthmus serve)", refused, attempts)
    assert not problems, "\n".join(problems)
    scanner.check("token and password masked (isthmus serve)")


# == 4. the state schema owned by a role of its own =================================================

CONTROL_TABLES = (
    "synchronization_jobs",
    "migration_checkpoints",
    "data_differentials",
    "migration_validation_reports",
    "legacy_id_mappings",
    "quarantined_rows",
    "pending_ddl",
    "target_deletions",
    "alembic_version",
)


def test_state_schema_owned_by_its_own_role(pg: PgPlayground, tmp_path: Path) -> None:
    """``isthmus_owner_*`` owns the state schema (it ran ``isthmus init``) and works on the
    application's tables through grants alone; ``app_*`` owns those tables, cannot read or
    change a control table, and can still delete its own rows under isthmus's
    delete-capturing trigger (which records the deletion for the next diff)."""
    from diff_support import cursor_config

    tgt = pg.database("isthmus_roles_tgt")
    owner, app = pg.role("isthmus_owner"), pg.role("app")
    for statement in (
        "GRANT CONNECT, CREATE ON DATABASE {db} TO {owner}",  # CREATE: the state schema
        "GRANT CONNECT, CREATE ON DATABASE {db} TO {app}",  # CREATE: its own schema
    ):
        pg.sql(
            sql.SQL(statement).format(
                db=sql.Identifier(tgt), owner=sql.Identifier(owner), app=sql.Identifier(app)
            )
        )
    legacy = tmp_path / "legacy.db"
    counts = generate_legacy(parse_url(f"sqlite:///{legacy}"), scale=SCALE)
    owner_url, app_url = pg.url(tgt, owner), pg.url(tgt, app)

    def config_for(url: str) -> Path:
        path = write_config(tmp_path, f"sqlite:///{legacy}", url, cursor_config())
        state = f'state_schema = "{STATE}"'
        path.write_text(path.read_text().replace(state, state + '\nschema = "appdata"'))
        return path

    as_owner, as_app = config_for(owner_url), config_for(app_url)
    # the application creates its tables (isthmus prints their DDL) and grants isthmus DML
    ddl = inproc(as_owner, "schema")
    assert ddl.code == 0, ddl.err
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(ddl.out)
        conn.execute(
            sql.SQL(
                "GRANT USAGE ON SCHEMA appdata TO {o};"
                " GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ALL TABLES IN SCHEMA appdata TO {o}"
            ).format(o=sql.Identifier(owner))
        )
    # isthmus, as the owner of the state schema, does its work
    steps = 0
    for args in (
        ("init",),
        ("--json", "migrate"),
        ("--json", "diff"),
        (
            "--json",
            "validate",
            "--type",
            "completeness_check,data_integrity,relationship_integrity",
        ),
        ("jobs", "create", "oneway", "--type", "manual_sync"),
        ("--json", "jobs", "run", "oneway"),
    ):
        ran = inproc(as_owner, *args)
        assert ran.code == 0, (args, ran.out[-3000:], ran.err)
        steps += 1
    with psycopg.connect(pg.admin_url(tgt).raw) as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT n.nspname, pg_get_userbyid(n.nspowner) FROM pg_namespace n"
                " WHERE n.nspname IN ('isthmus', 'appdata')"
            ).fetchall()
        )
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'isthmus_deletions_isthmus'"
        ).fetchone()
    assert owners == {"isthmus": owner, "appdata": app}
    assert target_counts(pg.admin_url(tgt).raw, "appdata") == counts
    assert triggers and triggers[0] == len(DEMO_ENTITIES)  # the diff could put its trigger on

    # the application cannot read or change a control table, nor run isthmus on them
    denied = 0
    with psycopg.connect(app_url, autocommit=True) as conn:
        for table in CONTROL_TABLES:
            for statement in (
                "SELECT * FROM isthmus.{t}",
                "DELETE FROM isthmus.{t}",
                "UPDATE isthmus.{t} SET {c} = {c}",
                "INSERT INTO isthmus.{t} DEFAULT VALUES",
                "TRUNCATE isthmus.{t}",
                "ALTER TABLE isthmus.{t} ADD COLUMN evil int",
                "DROP TABLE isthmus.{t}",
            ):
                column = "version_num" if table == "alembic_version" else "id"
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement.format(t=table, c=column))
                denied += 1
        for statement in (
            "CREATE TABLE isthmus.evil (i int)",
            "DROP SCHEMA isthmus CASCADE",
            "CREATE TRIGGER evil AFTER DELETE ON appdata.offices REFERENCING OLD TABLE AS"
            " isthmus_gone FOR EACH STATEMENT EXECUTE FUNCTION"
            " isthmus.record_target_deletion('isthmus', 'offices', 'id')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            denied += 1
    for args in (("--json", "migrate"), ("--json", "diff"), ("--json", "jobs", "run", "oneway")):
        ran = inproc(as_app, *args)
        assert ran.code in (2, 3) and "permission denied" in ran.err, (args, ran.code, ran.err)
        denied += 1

    # ... but it still owns its data: it deletes rows, isthmus's trigger records the deletions
    # (as the state schema's owner), and the next diff finds them
    with psycopg.connect(app_url, autocommit=True) as conn:
        gone = conn.execute(
            "DELETE FROM appdata.products WHERE id IN (SELECT id FROM appdata.products LIMIT 3)"
        ).rowcount
        conn.execute("UPDATE appdata.offices SET name = name || ' (app)'")
    assert gone == 3
    ran = inproc(as_owner, "--json", "diff")
    assert ran.code == 1, ran.out[-2000:]
    found = json.loads(ran.out)
    text = json.dumps(found)
    assert "missing_records" in text and "conflicted_records" in text, text[:2000]
    with psycopg.connect(pg.admin_url(tgt).raw) as conn:
        captured = conn.execute("SELECT count(*) FROM isthmus.target_deletions").fetchone()
    assert captured and captured[0] == 3
    steps += 2
    report("state schema owned apart (owner works, app denied)", steps + denied, steps + denied)
