"""Read throughput of each source dialect: rows/s of ``Source.stream`` over a typical table.

    .venv/bin/python bench/read_bench.py [--rows N] [--batch-size B] [--only sqlite,mysql,postgresql] [--text]

Creates a table of N rows (default 1,000,000) with the usual legacy columns (integers, varchar,
decimal, datetime with microseconds, text, nullable columns) in SQLite (a temporary file),
MariaDB/MySQL (``ISTHMUS_BENCH_MYSQL``, default root@127.0.0.1:3306) and PostgreSQL
(``ISTHMUS_BENCH_PG``, default postgres@127.0.0.1:5432), each in a database of its own that is
dropped afterwards, then times one full ``stream()`` over it; with ``--text``, also one full
``stream_text()`` (rows as COPY text fields), on the line below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from isthmus.dialects import mysql_driver, open_source
from isthmus.urls import DatabaseURL, parse_url

# Before psycopg or PyMySQL import ssl: see mysql_driver's docstring.
C_EXTENSION = mysql_driver.preload_c_extension()

MYSQL_SERVER = os.environ.get("ISTHMUS_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/mysql")
PG_SERVER = os.environ.get("ISTHMUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLE = "bench_rows"
COLUMNS = ("id", "account_id", "code", "email", "amount", "created_at", "notes", "active", "ratio")
LOAD_BATCH = 10_000

MYSQL_DDL = f"""CREATE TABLE {TABLE} (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    account_id INT NOT NULL,
    code VARCHAR(40) NOT NULL,
    email VARCHAR(255) NULL,
    amount DECIMAL(12,2) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    notes TEXT NULL,
    active TINYINT(1) NOT NULL,
    ratio DOUBLE NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

PG_DDL = f"""CREATE TABLE {TABLE} (
    id BIGINT PRIMARY KEY,
    account_id INTEGER NOT NULL,
    code VARCHAR(40) NOT NULL,
    email VARCHAR(255),
    amount NUMERIC(12,2) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL,
    notes TEXT,
    active BOOLEAN NOT NULL,
    ratio DOUBLE PRECISION
)"""

SQLITE_DDL = f"""CREATE TABLE {TABLE} (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    code VARCHAR(40) NOT NULL,
    email VARCHAR(255),
    amount NUMERIC(12,2) NOT NULL,
    created_at DATETIME NOT NULL,
    notes TEXT,
    active BOOLEAN NOT NULL,
    ratio REAL
)"""


def typical_rows(count: int, *, sqlite: bool = False) -> Iterator[list[tuple[Any, ...]]]:
    """Deterministic rows in batches; every third email and every fifth note is NULL."""
    start = dt.datetime(2015, 1, 1)
    batch: list[tuple[Any, ...]] = []
    for i in range(1, count + 1):
        created = start + dt.timedelta(seconds=i * 37, microseconds=i % 1_000_000)
        amount = Decimal(i % 1_000_000) / 100
        row = (
            i,
            i % 5000 + 1,
            f"C-{i:09d}",
            None if i % 3 == 0 else f"user{i}@example.com",
            str(amount) if sqlite else amount,
            created.isoformat(sep=" ") if sqlite else created,
            None if i % 5 == 0 else f"note {i} " + "x" * (i % 120),
            i % 2,
            None if i % 7 == 0 else i / 7.0,
        )
        batch.append(row)
        if len(batch) == LOAD_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def load_mysql(url: DatabaseURL, rows: int) -> None:
    import pymysql

    conn = pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        autocommit=False,
    )
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    insert = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
    with conn.cursor() as cur:
        cur.execute(MYSQL_DDL)
        for batch in typical_rows(rows):
            cur.executemany(insert, batch)
        conn.commit()
        cur.execute(f"ANALYZE TABLE {TABLE}")
    conn.close()


class MysqlScratch:
    """A database of its own on the MySQL/MariaDB server, dropped on exit."""

    def __init__(self, prefix: str) -> None:
        self.server = parse_url(MYSQL_SERVER)
        self.name = f"{prefix}_{os.getpid()}"
        self.url = self.server.with_database(self.name)

    def _admin(self, sql: str) -> None:
        import pymysql

        conn = pymysql.connect(
            host=self.server.host or "127.0.0.1",
            port=self.server.port or 3306,
            user=self.server.username or "root",
            password=self.server.password or "",
            autocommit=True,
        )
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    def __enter__(self) -> DatabaseURL:
        self._admin(f"DROP DATABASE IF EXISTS `{self.name}`")
        self._admin(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._admin(f"DROP DATABASE IF EXISTS `{self.name}`")


class PgScratch:
    def __init__(self, prefix: str) -> None:
        self.server = parse_url(PG_SERVER)
        self.name = f"{prefix}_{os.getpid()}"
        self.url = self.server.with_database(self.name)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(sql)

    def __enter__(self) -> DatabaseURL:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def load_pg(url: DatabaseURL, rows: int) -> None:
    import psycopg

    with psycopg.connect(url.raw) as conn:
        conn.execute(PG_DDL)
        copy_sql = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for batch in typical_rows(rows):
                for row in batch:
                    copy.write_row((*row[:7], bool(row[7]), *row[8:]))
        conn.execute(f"ANALYZE {TABLE}")


def load_sqlite(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(SQLITE_DDL)
    placeholders = ", ".join(["?"] * len(COLUMNS))
    insert = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
    for batch in typical_rows(rows, sqlite=True):
        conn.executemany(insert, batch)
    conn.commit()
    conn.close()


def time_stream(url: DatabaseURL, batch_size: int, *, text: bool = False) -> tuple[int, float]:
    """Rows read and seconds taken by one full ``stream()`` (``text``: ``stream_text()``)."""
    with open_source(url) as source:
        read = source.stream_text if text else source.stream
        started = time.perf_counter()
        seen = 0
        for batch in read(TABLE, COLUMNS, ("id",), batch_size=batch_size):
            seen += len(batch)
        return seen, time.perf_counter() - started


def measure(
    name: str, url: DatabaseURL, rows: int, batch_size: int, runs: int, *, text: bool = False
) -> None:
    for how in ("stream", "stream_text") if text else ("stream",):
        best = float("inf")
        for _ in range(runs):
            seen, seconds = time_stream(url, batch_size, text=how == "stream_text")
            if seen != rows:
                raise SystemExit(f"{name}: {how} read {seen} rows, expected {rows}")
            best = min(best, seconds)
        label = f"{name} {how}" if text else name
        print(
            f"{label:<29} {rows:>10,} rows  {best:7.2f} s  {rows / best:>12,.0f} rows/s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2, help="timed reads per database (best kept)")
    parser.add_argument("--only", default="sqlite,mysql,postgresql")
    parser.add_argument("--text", action="store_true", help="also time stream_text()")
    args = parser.parse_args()
    wanted = set(args.only.split(","))

    def bench_sqlite() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            load_sqlite(path, args.rows)
            measure(
                "sqlite",
                parse_url(f"sqlite:///{path}"),
                args.rows,
                args.batch_size,
                args.runs,
                text=args.text,
            )

    def bench_mysql() -> None:
        with MysqlScratch("isthmus_read_bench") as url:
            load_mysql(url, args.rows)
            for driver in ("connector", "pymysql") if C_EXTENSION else ("pymysql",):
                with_driver = parse_url(f"{url.raw}?driver={driver}")
                measure(
                    f"mysql/{driver}",
                    with_driver,
                    args.rows,
                    args.batch_size,
                    args.runs,
                    text=args.text,
                )

    def bench_pg() -> None:
        with PgScratch("isthmus_read_bench") as url:
            load_pg(url, args.rows)
            measure("postgresql", url, args.rows, args.batch_size, args.runs, text=args.text)

    loaders: dict[str, Callable[[], None]] = {
        "sqlite": bench_sqlite,
        "mysql": bench_mysql,
        "postgresql": bench_pg,
    }
    reads = "Source.stream and Source.stream_text" if args.text else "Source.stream"
    print(f"{reads}, batch size {args.batch_size:,}, best of {args.runs}")
    for name, run in loaders.items():
        if name in wanted:
            run()


if __name__ == "__main__":
    main()
