"""Target sessions of a run: their settings, the advisory locks that keep two writers of an
entity apart, and which database faults a run retries (and how long it waits)."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import exc as sa_exc

from isthmus.dialects.pgconn import translate
from isthmus.errors import DatabaseError, TransientDatabaseError


def entity_lock_key(schema: str, entity: str) -> tuple[int, str]:
    """The advisory lock of an entity being written (migrated, chunked or synced)."""
    return 0x15_7A_06, f"{schema}.{entity}"


def try_lock(conn: psycopg.Connection[Any], key: tuple[int, str]) -> bool:
    """Take the session advisory lock ``key`` on ``conn`` if nobody holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()
    return bool(row and row[0])


def database_error(exc: BaseException) -> DatabaseError | None:
    """``exc`` as an isthmus database error (transient or terminal) when it is one: psycopg's
    and SQLAlchemy's own errors are translated (a dropped connection is transient)."""
    if isinstance(exc, DatabaseError):
        return exc
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(orig, psycopg.Error):
        return translate(orig)
    return None


def retryable(exc: BaseException) -> TransientDatabaseError:
    """``exc`` (being handled) as the transient error to retry; anything else is raised
    again, as an isthmus error where it is a database's."""
    error = database_error(exc) if isinstance(exc, Exception) else None
    if isinstance(error, TransientDatabaseError):
        return error
    if error is None or error is exc:
        raise exc
    raise error from exc


def target_session(conn: psycopg.Connection[Any]) -> None:
    """Session settings of every connection that writes target rows.

    ``synchronous_commit = off``: a server crash may forget the last few batches, but each
    batch (rows, mappings, checkpoint) commits as one, so it is forgotten whole and the
    next run redoes it; the process never waits for the WAL flush.
    """
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.execute("SET synchronous_commit = off")
    conn.commit()


def synchronous(conn: psycopg.Connection[Any]) -> None:
    """Commits on ``conn`` are durable when they return again (``synchronous_commit``)."""
    conn.execute("SET synchronous_commit = on")
    conn.commit()


def backoff(first: float, attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): ``first``, doubling, at most 10 s
    (or ``first`` if that is longer)."""
    return float(min(first * 2.0 ** (attempt - 1), max(10.0, first)))


def alive(conn: psycopg.Connection[Any] | None) -> bool:
    """Whether ``conn``'s server session still answers (an autocommit connection)."""
    if conn is None or conn.closed:
        return False
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        conn.close()
        return False
    return True
