"""Writing the demo's row chunks into SQLite, PostgreSQL or MariaDB/MySQL, fast.

Each writer creates the tables, streams chunks in (executemany in one transaction,
COPY, LOAD DATA LOCAL INFILE or multi-row INSERTs), then builds the FK indexes and
constraints in one pass each. The next chunk is generated in a thread while the
database digests the current one, at most ``_PREFETCH`` chunks ahead, so memory stays flat.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from isthmus.demo_rows import Chunk, Row
from isthmus.demo_schema import TABLES, DemoTable, legacy_constraints, legacy_create_table
from isthmus.dialects import pgconn
from isthmus.errors import DatabaseError, TerminalDatabaseError, TransientDatabaseError, UsageError
from isthmus.urls import DatabaseURL, mask_secrets, parse_url

Progress = Callable[[str, int], None]
NAMES = tuple(t.name for t in TABLES)
_PREFETCH = 2


def prefetched(chunks: Iterable[Chunk]) -> Generator[Chunk, None, None]:
    """``chunks``, produced by a thread running ahead of the consumer (errors re-raised here)."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_PREFETCH)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(("chunk", chunk), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(("error", exc))

    producer = threading.Thread(target=produce, name="isthmus-demo-rows", daemon=True)
    producer.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def _write_chunks(
    chunks: Iterable[Chunk],
    write: Callable[[DemoTable, list[Row]], None],
    progress: Progress | None,
) -> dict[str, int]:
    written = dict.fromkeys(NAMES, 0)
    with contextlib.closing(prefetched(chunks)) as stream:  # stops the producer on error
        for chunk in stream:
            for table in TABLES:  # parents before children, so FK checks (if any) pass
                rows = chunk[table.name]
                write(table, rows)
                written[table.name] += len(rows)
                if progress is not None:
                    progress(table.name, len(rows))
    return written


def _exists_error(url: DatabaseURL, table: str) -> UsageError:
    return UsageError(
        f"table {table} already exists in {url.masked()}; pass replace=True to recreate the demo tables"
    )


def write_sqlite(
    url: DatabaseURL,
    chunks: Iterable[Chunk],
    *,
    foreign_keys: bool,
    replace: bool,
    progress: Progress | None,
) -> dict[str, int]:
    try:
        conn = sqlite3.connect(url.database or "", isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise TerminalDatabaseError(f"SQLite {url.database}: {exc}") from exc
    try:
        cur = conn.cursor()
        # The generator's own file: durability buys nothing here, speed does.
        cur.execute("PRAGMA journal_mode=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        found = {r[0] for r in cur.fetchall()}
        if not replace and (clash := [t for t in NAMES if t in found]):
            raise _exists_error(url, clash[0])
        cur.execute("BEGIN")
        for name in reversed(NAMES):
            cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        inserts = {}
        for table in TABLES:
            cur.execute(legacy_create_table("sqlite", table, foreign_keys=foreign_keys))
            cols = ", ".join(f'"{c}"' for c in table.column_names)
            marks = ", ".join("?" * len(table.columns))
            inserts[table.name] = f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})'  # noqa: S608
        written = _write_chunks(
            chunks, lambda t, rows: _executemany(cur, inserts[t.name], rows), progress
        )
        for table in TABLES:
            for statement in legacy_constraints("sqlite", table, foreign_keys=foreign_keys):
                cur.execute(statement)
        cur.execute("COMMIT")
        return written
    except sqlite3.Error as exc:
        raise TerminalDatabaseError(f"SQLite {url.database}: {exc}") from exc
    finally:
        conn.close()


def _executemany(cur: sqlite3.Cursor, sql: str, rows: list[Row]) -> None:
    cur.executemany(sql, rows)


@contextmanager
def pg_connection(target: DatabaseURL | str) -> Iterator[psycopg.Connection[Any]]:
    """A PostgreSQL connection from a DatabaseURL, a URL string or a libpq key=value conninfo;
    commits when the block succeeds, rolls back when it raises."""
    if isinstance(target, str) and "://" in target:
        target = parse_url(target)
    with pgconn.translated():
        if isinstance(target, DatabaseURL):
            if target.dialect not in ("postgresql", "embedded"):
                raise UsageError(f"{target.masked()} is not a PostgreSQL database")
            conn = pgconn.connect(target)
        else:
            conn = psycopg.connect(target)
        with conn:
            yield conn


def pg_existing(conn: psycopg.Connection[Any], schema: str | None = None) -> list[str]:
    """The demo tables already present in ``schema`` (default: the current schema)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = coalesce(%s, current_schema()) AND table_name = ANY(%s)",
        (schema, list(NAMES)),
    ).fetchall()
    found = {r[0] for r in rows}
    return [t for t in NAMES if t in found]


def write_postgresql(
    url: DatabaseURL,
    chunks: Iterable[Chunk],
    *,
    foreign_keys: bool,
    replace: bool,
    progress: Progress | None,
) -> dict[str, int]:
    with pg_connection(url) as conn, pgconn.translated():
        existing = pg_existing(conn)
        if existing and not replace:
            raise _exists_error(url, existing[0])
        for name in reversed(NAMES):
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        for table in TABLES:
            conn.execute(legacy_create_table("postgresql", table, foreign_keys=foreign_keys))
        cur = conn.cursor()

        def copy(table: DemoTable, rows: list[Row]) -> None:
            cols = ", ".join(f'"{c}"' for c in table.column_names)
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as stream:
                for row in rows:
                    stream.write_row(row)

        written = _write_chunks(chunks, copy, progress)
        # An index or an FK check over loaded rows is one sorted pass, not a million probes.
        for table in TABLES:
            for statement in legacy_constraints("postgresql", table, foreign_keys=foreign_keys):
                conn.execute(statement)
    with pg_connection(url) as conn, pgconn.translated():
        conn.autocommit = True
        conn.execute("ANALYZE " + ", ".join(f'"{t}"' for t in NAMES))
    return written


# COPY's text format and LOAD DATA's defaults share these escapes, and \N for NULL.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv(rows: Sequence[Row]) -> bytes:
    """Rows as tab-separated lines with backslash escapes (most text needs none: test first)."""
    esc = _TSV_ESCAPES
    lines = [
        "\t".join(
            [
                "\\N"
                if v is None
                else str(v)
                if type(v) is not str
                else v.translate(esc)
                if ("\\" in v or "\t" in v or "\n" in v or "\r" in v)
                else v
                for v in row
            ]
        )
        for row in rows
    ]
    lines.append("")
    return "\n".join(lines).encode()


# PyMySQL error codes meaning "LOAD DATA LOCAL is switched off" (server or client side).
_LOCAL_INFILE_REFUSED = {1148, 2068, 3948}
_INSERT_ROWS_PER_STATEMENT = 2000


def mysql_connect(url: DatabaseURL) -> Any:
    import pymysql

    try:
        return pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database,
            charset="utf8mb4",
            local_infile=True,
            autocommit=False,
        )
    except pymysql.MySQLError as exc:
        raise mysql_error(url, exc) from exc


def mysql_error(url: DatabaseURL, exc: Exception) -> DatabaseError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = mask_secrets(str(exc.args[1] if len(exc.args) > 1 else exc))
    transient = code in (1205, 1213, 2003, 2006, 2013)  # lock wait, deadlock, connection lost
    cls = TransientDatabaseError if transient else TerminalDatabaseError
    return cls(f"MySQL {url.masked()}: {message}")


def write_mysql(
    url: DatabaseURL,
    chunks: Iterable[Chunk],
    *,
    foreign_keys: bool,
    replace: bool,
    progress: Progress | None,
    load_data: bool = True,
) -> dict[str, int]:
    """``load_data=False`` skips LOAD DATA LOCAL INFILE for multi-row INSERTs, which is
    also what happens by itself when the server or client has it switched off."""
    import pymysql

    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur, tempfile.TemporaryDirectory(prefix="isthmus-demo-") as scratch:
            cur.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name IN %s",
                (NAMES,),
            )
            found = {r[0] for r in cur.fetchall()}
            if not replace and (clash := [t for t in NAMES if t in found]):
                raise _exists_error(url, clash[0])
            # The rows are consistent by construction; checking each one costs minutes.
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            for name in reversed(NAMES):
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
            for table in TABLES:
                cur.execute(legacy_create_table("mysql", table, foreign_keys=foreign_keys))
            path = os.path.join(scratch, "rows.tsv")
            use_load = load_data

            def write(table: DemoTable, rows: list[Row]) -> None:
                nonlocal use_load
                if use_load:
                    try:
                        _mysql_load(cur, table, rows, path)
                        return
                    except pymysql.MySQLError as exc:
                        if exc.args[0] not in _LOCAL_INFILE_REFUSED:
                            raise
                        use_load = False
                _mysql_insert(cur, table, rows)

            written = _write_chunks(chunks, write, progress)
            conn.commit()
            for table in TABLES:
                for statement in legacy_constraints("mysql", table, foreign_keys=foreign_keys):
                    cur.execute(statement)
            return written
    except pymysql.MySQLError as exc:
        raise mysql_error(url, exc) from exc
    finally:
        conn.close()


def _mysql_load(cur: Any, table: DemoTable, rows: list[Row], path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(tsv(rows))
    cols = ", ".join(f"`{c}`" for c in table.column_names)
    loaded = cur.execute(
        f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table.name}` CHARACTER SET utf8mb4"
        f" FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({cols})",
        (path,),
    )
    # LOCAL turns bad values into warnings and skips duplicate keys: make both loud.
    cur.execute("SHOW WARNINGS LIMIT 1")
    warning = cur.fetchone()
    if warning or loaded != len(rows):
        detail = warning[2] if warning else f"{loaded} of {len(rows)} rows loaded"
        raise TerminalDatabaseError(f"loading demo table {table.name}: {detail}")


def _mysql_insert(cur: Any, table: DemoTable, rows: list[Row]) -> None:
    from pymysql.converters import escape_string

    cols = ", ".join(f"`{c}`" for c in table.column_names)
    head = f"INSERT INTO `{table.name}` ({cols}) VALUES "  # noqa: S608
    for start in range(0, len(rows), _INSERT_ROWS_PER_STATEMENT):
        values = ",".join(
            "("
            + ",".join(
                [
                    "NULL"
                    if v is None
                    else "'" + escape_string(v) + "'"
                    if type(v) is str
                    else repr(v)
                    for v in row
                ]
            )
            + ")"
            for row in rows[start : start + _INSERT_ROWS_PER_STATEMENT]
        )
        cur.execute(head + values)
