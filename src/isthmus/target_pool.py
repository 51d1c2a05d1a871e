"""Pooled connections to the target for a process that runs many jobs (``isthmus worker``).

A one-off command opens its connections and closes them. A worker runs job after job, several
at once: there every ``Workspace`` draws its psycopg connections from one process-wide
``psycopg_pool.ConnectionPool`` per target (``close()`` gives a connection back, so callers do
not change) and shares one SQLAlchemy engine (itself a pool) per target. Statements a
connection runs often are then prepared once per connection and reused across runs.

A connection given back is reset before anyone else gets it: no transaction, session
settings back to their defaults, advisory locks released (a run's lock is let go when its
connection is closed, pooled or not), temporary tables dropped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg_pool import ConnectionPool


class _Settings:
    enabled = False
    max_size = 8


_lock = threading.Lock()
_settings = _Settings()
_pools: dict[str, ConnectionPool[Any]] = {}
_engines: dict[str, sa.Engine] = {}


def enable(max_size: int = 8) -> None:
    """Pool target connections in this process from now on (``max_size`` per target)."""
    with _lock:
        _settings.enabled = True
        _settings.max_size = max(2, max_size)
    # our connections are often given back after a read (a transaction open): the reset
    # rolls it back, as the pool does, and that is no news worth a warning per run
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def enabled() -> bool:
    return _settings.enabled


def _reset(conn: psycopg.Connection[Any]) -> None:
    conn.rollback()
    conn.autocommit = True
    conn.execute("RESET ALL")
    conn.execute("SELECT pg_advisory_unlock_all()")
    conn.execute("DISCARD TEMP")
    conn.autocommit = False


def _pool(conninfo: str) -> ConnectionPool[Any]:
    with _lock:
        pool = _pools.get(conninfo)
        if pool is None:
            pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=_settings.max_size,
                reset=_reset,
                close_returns=True,
                open=True,
                name="isthmus-target",
            )
            pool.wait()  # the first connection made: a wrong target fails here, once
            _pools[conninfo] = pool
        return pool


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A pooled connection (``autocommit`` as asked); ``close()`` gives it back."""
    conn: psycopg.Connection[Any] = _pool(conninfo).getconn()
    conn.autocommit = bool(kwargs.get("autocommit", False))
    return conn


def engine(url: str) -> sa.Engine:
    """The process's SQLAlchemy engine for ``url`` (kept until :func:`close_all`)."""
    with _lock:
        found = _engines.get(url)
        if found is None:
            found = sa.create_engine(url, pool_pre_ping=True, pool_size=_settings.max_size)
            _engines[url] = found
        return found


def stats() -> dict[str, dict[str, int]]:
    """Each pool's counters (connections made, requests served, …)."""
    with _lock:
        return {name: dict(pool.get_stats()) for name, pool in _pools.items()}


def close_all() -> None:
    with _lock:
        for pool in _pools.values():
            pool.close()
        for found in _engines.values():
            found.dispose()
        _pools.clear()
        _engines.clear()
        _settings.enabled = False
