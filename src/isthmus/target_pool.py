"""Pooled state-store connections for a process that runs many jobs (``isthmus worker``).

A one-off command opens its connections and closes them. A worker runs job after job,
several at once, and each run talks to the state store many times (checkpoints, statuses,
statistics, between every batch). There every ``Workspace`` shares one SQLAlchemy engine per
target whose connections come from one ``psycopg_pool.ConnectionPool`` (SQLAlchemy's own
pooling off: ``NullPool`` over the psycopg pool, as psycopg's documentation describes), so
concurrent runs reuse a bounded set of connections and the statements they repeat stay
prepared on them. A connection given back is reset before anyone else gets it: no
transaction, session settings back to their defaults, advisory locks released.

A run's data connections (COPY streams, the run's lock, the writer lanes) stay its own: they
live as long as the run and gain nothing from a pool.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg_pool import ConnectionPool
from sqlalchemy.pool import NullPool


class _Settings:
    enabled = False
    max_size = 8


_lock = threading.Lock()
_settings = _Settings()
_pools: dict[str, ConnectionPool[Any]] = {}
_engines: dict[str, sa.Engine] = {}


def enable(max_size: int = 8) -> None:
    """Pool state-store connections in this process from now on (``max_size`` per target)."""
    with _lock:
        _settings.enabled = True
        _settings.max_size = max(2, max_size)
    # connections are given back after a read (a transaction open): the reset rolls it
    # back, as the pool does, and that is no news worth a warning per statement
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def enabled() -> bool:
    return _settings.enabled


def _reset(conn: psycopg.Connection[Any]) -> None:
    conn.rollback()
    conn.autocommit = True
    conn.execute("RESET ALL")
    conn.execute("SELECT pg_advisory_unlock_all()")
    conn.autocommit = False


def pool(conninfo: str) -> ConnectionPool[Any]:
    """The process's pool of connections to ``conninfo``."""
    with _lock:
        found = _pools.get(conninfo)
        if found is None:
            found = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=_settings.max_size,
                reset=_reset,
                close_returns=True,  # SQLAlchemy's close() gives it back
                open=True,
                name="isthmus-state",
            )
            found.wait()  # the first connection made: a wrong target fails here, once
            _pools[conninfo] = found
        return found


def engine(conninfo: str) -> sa.Engine:
    """The process's SQLAlchemy engine for ``conninfo``, drawing from :func:`pool`."""
    with _lock:
        found = _engines.get(conninfo)
    if found is not None:
        return found
    source = pool(conninfo)
    made = sa.create_engine("postgresql+psycopg://", creator=source.getconn, poolclass=NullPool)
    with _lock:
        return _engines.setdefault(conninfo, made)


def stats() -> dict[str, dict[str, int]]:
    """Each pool's counters (connections made, requests served, …)."""
    with _lock:
        return {name: dict(p.get_stats()) for name, p in _pools.items()}


def close_all() -> None:
    with _lock:
        for found in _engines.values():
            found.dispose()
        for p in _pools.values():
            p.close()
        _pools.clear()
        _engines.clear()
        _settings.enabled = False
