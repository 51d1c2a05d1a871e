"""MySQL/MariaDB connections for the source dialect: which driver, how to connect, what errors mean.

bench/mysql_drivers.py measured the drivers that install with pip alone (500k rows, full
unbuffered read): mysql-connector-python's C extension ~315k rows/s, PyMySQL ~118k rows/s,
mysql-connector-python in pure Python ~71k rows/s. So the C extension is used when it loads
and PyMySQL otherwise (never connector's pure mode, the slowest of the three).

The C extension's wheel vendors its own OpenSSL 3.2+ ``libssl.so.3``; on systems whose own
``libssl.so.3`` is older (Debian 12, Ubuntu 22.04/24.04) it loads only if it is imported
before Python's ``ssl`` module has loaded the system one (psycopg, SQLAlchemy and PyMySQL all
import ``ssl``). Hence ``preload_c_extension()``, to be called before anything else is
imported (the top of ``isthmus/__init__.py`` is the place), and the PyMySQL fallback.
``?driver=pymysql`` or ``?driver=connector`` on the URL forces a choice.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from isthmus.errors import ConfigError, DatabaseError, TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, mask_secrets

log = logging.getLogger(__name__)

# Server error codes worth retrying: lock wait timeout, deadlock, too many connections (global
# and per user), server shutting down, connection killed (MariaDB), query interrupted, network
# read/write timeouts; client codes: cannot connect (refused, server restarting), server gone
# away, lost connection (also after KILL), lost connection during connect.
TRANSIENT_ERRNOS = frozenset(
    {1205, 1213, 1040, 1203, 1053, 1927, 1317, 1159, 1161, 1614, 2002, 2003, 2006, 2013, 2055, 2048}
)


@functools.cache
def preload_c_extension() -> bool:
    """Import mysql-connector's C extension now, before ``ssl`` is imported; True if it loaded."""
    try:
        importlib.import_module("_mysql_connector")
    except ImportError as exc:
        log.debug("mysql-connector C extension unavailable: %s", exc)
        return False
    return True


def choose(url: DatabaseURL) -> str:
    """``connector`` (C extension) or ``pymysql``."""
    wanted = dict(url.query).get("driver", "auto")
    if wanted == "pymysql":
        return "pymysql"
    if wanted in ("connector", "mysql-connector"):
        if not preload_c_extension():
            raise ConfigError(
                f"source.url: driver=connector asked for, but mysql-connector-python's C extension "
                f"does not load here ({url.masked()}); use driver=pymysql"
            )
        return "connector"
    if wanted != "auto":
        raise ConfigError(
            f"source.url: unknown driver {wanted!r} in {url.masked()} (connector, pymysql)"
        )
    return "connector" if preload_c_extension() else "pymysql"


def connect(driver: str, url: DatabaseURL, *, session_sql: list[str], raw: bool = False) -> Any:
    """A DB-API connection in autocommit mode with ``session_sql`` already run.

    ``raw``: PyMySQL hands back every value as the server's bytes (no decoders, no decoding);
    for connector, ask ``unbuffered_cursor`` for a raw cursor.
    """
    params = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "database": url.database,
        "charset": "utf8mb4",
        "autocommit": True,
    }
    try:
        if driver == "connector":
            import mysql.connector

            conn: Any = mysql.connector.connect(**params, use_pure=False, connection_timeout=10)
        else:
            import pymysql

            extra: dict[str, Any] = {}
            if raw:
                from pymysql.converters import conversions

                encoders = {k: v for k, v in conversions.items() if not isinstance(k, int)}
                extra = {"conv": encoders, "use_unicode": False}
            conn = pymysql.connect(**params, connect_timeout=10, **extra)
    except Exception as exc:
        raise translate(exc, f"connecting to {url.masked()}") from exc
    try:
        cur = conn.cursor()
        for statement in session_sql:
            cur.execute(statement)
        cur.close()
    except Exception as exc:
        conn.close()
        raise translate(exc, f"setting up the session on {url.masked()}") from exc
    return conn


# A quoted name or string of a statement (MySQL's default sql_mode reads "…" as a string).
_QUOTED = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_MARK = re.compile(rb"%s")


def bind(driver: str, conn: Any, sql: str, params: Sequence[Any]) -> tuple[Any, Any]:
    """``cursor.execute``'s arguments for ``sql`` with its parameters marked ``%s``, such that
    a ``%`` inside a quoted name or string (`` `50%s off` ``) stays a character.

    PyMySQL formats a statement with ``%`` whenever parameters are passed (even none):
    there, ``%`` inside quotes is doubled. Connector substitutes every ``%s`` it finds, with
    no escape: there, the values are put in by their marks outside quotes here, quoted by
    the connection as connector would."""
    if not params:
        return sql, None
    if driver == "pymysql":
        return _QUOTED.sub(lambda m: m[0].replace("%", "%%"), sql), tuple(params)
    values = list(conn.prepare_for_mysql(tuple(params)))
    pieces: list[bytes] = []
    used = 0

    def value(_: re.Match[bytes]) -> bytes:
        nonlocal used
        used += 1
        if used > len(values):
            raise TypeError(f"more %s marks than the {len(values)} parameters in {sql[:200]!r}")
        return bytes(values[used - 1])

    end = 0
    for match in _QUOTED.finditer(sql):
        pieces += [_MARK.sub(value, sql[end : match.start()].encode()), match[0].encode()]
        end = match.end()
    pieces.append(_MARK.sub(value, sql[end:].encode()))
    if used != len(values):
        raise TypeError(f"{len(values)} parameters for {used} %s marks in {sql[:200]!r}")
    return b"".join(pieces), None


def unbuffered_cursor(driver: str, conn: Any, *, raw: bool = False) -> Any:
    """A cursor that reads rows as they arrive; ``raw``: values as the server's text bytes."""
    if driver == "connector":
        return conn.cursor(buffered=False, raw=raw)
    import pymysql.cursors

    return conn.cursor(pymysql.cursors.SSCursor)


def abandon(conn: Any, kill: Callable[[int], None] | None = None) -> None:
    """Drop a connection whose unbuffered result was not read to the end, without reading it.

    A polite close first drains every remaining row of the result. PyMySQL's socket can be
    closed under it (the server then aborts the query); the C extension drains in C, so the
    query is killed first through ``kill(connection_id)`` (another connection) to cut it short.
    """
    try:
        if type(conn).__module__.startswith("pymysql"):
            result = getattr(conn, "_result", None)
            if result is not None:
                result.unbuffered_active = False  # or its __del__ would try to drain
            if conn._sock is not None:
                conn._sock.close()
            conn._sock = None
            conn._rfile = None
            return
        connection_id = getattr(conn, "connection_id", None)
        if kill is not None and isinstance(connection_id, int):
            kill(connection_id)
        conn.close()
    except Exception:  # the connection is being thrown away; nothing useful to report
        log.debug("abandoning a MySQL connection failed", exc_info=True)


def errno_of(exc: BaseException) -> int | None:
    errno = getattr(exc, "errno", None)  # mysql-connector
    if isinstance(errno, int) and errno > 0:
        return errno
    args = exc.args
    if args and isinstance(args[0], int) and args[0] > 0:  # PyMySQL: (errno, message)
        return args[0]
    return None


def is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("pymysql", "mysql.connector", "_mysql_connector")) or isinstance(
        exc, OSError
    )


@contextmanager
def driver_errors(failed: Callable[[BaseException], DatabaseError]) -> Iterator[None]:
    """The driver's errors raised inside, as ``failed(exc)``; isthmus's own and any other
    exception pass through as they are."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        raise failed(exc) from exc


def translate(exc: BaseException, doing: str) -> DatabaseError:
    """One line, password masked: transient if retrying can help, terminal otherwise."""
    errno = errno_of(exc)
    message = _message(exc)
    text = mask_secrets(f"MySQL: {doing}: {message}")
    if errno in TRANSIENT_ERRNOS:
        return TransientDatabaseError(text)
    if errno is None and _is_connection_problem(exc):
        return TransientDatabaseError(text)
    return TerminalDatabaseError(text)


def _is_connection_problem(exc: BaseException) -> bool:
    # PyMySQL raises InterfaceError(0, '') on a connection the server has already closed, and
    # bare socket errors can escape both drivers.
    name = type(exc).__name__
    return isinstance(exc, OSError | EOFError) or name in ("InterfaceError", "OperationalError")


def _message(exc: BaseException) -> str:
    errno = errno_of(exc)
    msg = getattr(exc, "msg", None)  # mysql-connector keeps the server's text here
    if not isinstance(msg, str):
        args = exc.args
        msg = args[1] if len(args) > 1 and isinstance(args[1], str) else str(exc)
    msg = (msg.strip() or type(exc).__name__).splitlines()[0]
    return f"({errno}) {msg}" if errno else msg
