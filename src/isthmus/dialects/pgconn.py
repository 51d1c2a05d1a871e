"""PostgreSQL connections (source, target and the embedded default) and psycopg error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from isthmus import embedded
from isthmus.errors import DatabaseError, TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, mask_secrets

# SQLSTATE classes worth retrying: connection exceptions, serialization failure,
# deadlock, lock not available, operator intervention (admin shutdown), insufficient resources.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "55P03", "57P", "53")
_TRANSIENT_SQLSTATES = {"57014"}  # query_canceled (statement timeout)
# libpq reports a refused log-in without an SQLSTATE, like a dropped connection; these server
# answers do not change by waiting, and retrying them only delays the error (English messages:
# a server with another lc_messages falls back to "transient", which is slow but still ends)
_REFUSED_LOGIN = (
    "password authentication failed",
    "is not permitted to log in",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied for database",
    "invalid port number",
)


def conninfo(url: DatabaseURL) -> str:
    """A libpq URI for ``url``.

    ``embedded://[/data/dir][?dbname=NAME]`` starts the embedded server first and
    creates database NAME on it when missing (default: ``postgres``).
    """
    if url.dialect == "embedded":
        return _embedded_conninfo(url)
    parts = urlsplit(url.raw)
    return urlunsplit(
        ("postgresql", _netloc(url, parts.netloc), parts.path, parts.query, parts.fragment)
    )


def _netloc(url: DatabaseURL, netloc: str) -> str:
    """``netloc`` with its user and password percent-encoded afresh, as ``url`` read them (up to
    the last ``@``). A password written raw in the config (through ``${VAR}``, say) may hold an
    ``@``, a space or a stray ``%``: libpq would split the URI elsewhere or refuse it, quoting
    the password in its error message."""
    if url.username is None and url.password is None:
        return netloc
    host = netloc.rpartition("@")[2]
    user = quote(url.username or "", safe="")
    if url.password is None:
        return f"{user}@{host}"
    return f"{user}:{quote(url.password, safe='')}@{host}"


def _embedded_conninfo(url: DatabaseURL) -> str:
    admin = embedded.start(url.database or None)
    dbname = dict(url.query).get("dbname", "postgres")
    if dbname == "postgres":
        return admin
    with translated(), psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def sqlalchemy_url(url: DatabaseURL) -> str:
    """The same database as a SQLAlchemy URL using the psycopg 3 driver."""
    uri = conninfo(url)
    return "postgresql+psycopg" + uri[len("postgresql") :]


def translate(exc: BaseException) -> DatabaseError:
    """Map a psycopg error to a transient or terminal isthmus error (password masked)."""
    message = mask_secrets(_first_line(exc))
    if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
        if any(refusal in str(exc) for refusal in _REFUSED_LOGIN):
            return TerminalDatabaseError(f"PostgreSQL: {message}")
        return TransientDatabaseError(f"PostgreSQL: {message}")
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
        return TransientDatabaseError(f"PostgreSQL: {message}")
    if isinstance(exc, pgerr.DeadlockDetected | pgerr.SerializationFailure):
        return TransientDatabaseError(f"PostgreSQL: {message}")
    return TerminalDatabaseError(f"PostgreSQL: {message}")


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc


def connect(url: DatabaseURL, **kwargs: Any) -> psycopg.Connection[Any]:
    with translated():
        return psycopg.connect(conninfo(url), **kwargs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
