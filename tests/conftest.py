"""Real databases for the test session: one uniquely named database per session, dropped after.

PostgreSQL: the server at 127.0.0.1:5432 when it answers, else the embedded one.
MySQL/MariaDB: the server at 127.0.0.1:3306; tests that need it skip, saying why, when none answers.
Override with ISTHMUS_TEST_PG / ISTHMUS_TEST_MYSQL (server URLs without a database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import isthmus  # noqa: F401
from isthmus.urls import DatabaseURL, parse_url

PG_SERVER = os.environ.get("ISTHMUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_SERVER = os.environ.get("ISTHMUS_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _pg_admin_uri() -> str:
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=3) as conn:
            conn.execute("select 1")
        return PG_SERVER
    except psycopg.Error:
        from isthmus import embedded

        return embedded.start()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A libpq URI of a PostgreSQL server's admin database."""
    return _pg_admin_uri()


class PgDatabases:
    """Creates databases on the session's PostgreSQL server and drops them all at the end."""

    def __init__(self, admin_uri: str) -> None:
        self.admin_uri = admin_uri
        self.created: list[str] = []

    def create(self, prefix: str = "isthmus_test") -> DatabaseURL:
        name = _unique(prefix)
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return parse_url(self.admin_uri).with_database(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases(pg_server: str) -> Iterator[PgDatabases]:
    dbs = PgDatabases(pg_server)
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def pg_url(pg_databases: PgDatabases) -> DatabaseURL:
    """The session's own PostgreSQL database (tests share it; use distinct schemas/tables)."""
    return pg_databases.create()


@pytest.fixture
def fresh_pg_url(pg_databases: PgDatabases) -> DatabaseURL:
    """A brand-new empty PostgreSQL database for one test."""
    return pg_databases.create()


def _mysql_connect(url: DatabaseURL, database: str | None) -> object:
    import pymysql

    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=database,
        connect_timeout=3,
        autocommit=True,
    )


class MysqlDatabases:
    def __init__(self, server: DatabaseURL) -> None:
        self.server = server
        self.created: list[str] = []

    def create(self, prefix: str = "isthmus_test") -> DatabaseURL:
        name = _unique(prefix)
        conn = _mysql_connect(self.server, None)
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()  # type: ignore[attr-defined]
        self.created.append(name)
        return self.server.with_database(name)

    def drop_all(self) -> None:
        conn = _mysql_connect(self.server, None)
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            for name in self.created:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def mysql_databases() -> Iterator[MysqlDatabases]:
    server = parse_url(MYSQL_SERVER)
    try:
        _mysql_connect(server, None).close()  # type: ignore[attr-defined]
    except Exception as exc:
        pytest.skip(f"no MySQL/MariaDB server answers at {server.masked()}: {exc}")
    dbs = MysqlDatabases(server)
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def mysql_url(mysql_databases: MysqlDatabases) -> DatabaseURL:
    return mysql_databases.create()


@pytest.fixture
def fresh_mysql_url(mysql_databases: MysqlDatabases) -> DatabaseURL:
    return mysql_databases.create()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> DatabaseURL:
    return parse_url(f"sqlite:///{tmp_path / 'legacy.db'}")
