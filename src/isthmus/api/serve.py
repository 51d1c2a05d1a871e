"""``isthmus serve``: the API under uvicorn, once the auth rule allows it to start."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from isthmus.api.auth import TOKEN_VARIABLE, serving_token
from isthmus.config import Config
from isthmus.errors import UsageError
from isthmus.urls import mask_secrets

log = logging.getLogger("isthmus.api")


@dataclass(frozen=True)
class ServeResult:
    """How the server ran, once it has stopped."""

    host: str
    port: int
    auth: bool

    exit_code = 0

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "auth": self.auth, "stopped": True}


def run_server(config: Config, host: str, port: int, no_auth: bool) -> ServeResult:
    """Serve the API until SIGINT/SIGTERM. Without ``ISTHMUS_API_TOKEN`` it refuses to start
    (UsageError, exit 2) unless ``no_auth`` and ``host`` is a loopback address."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 0 and 65535")
    token = serving_token(host, os.environ.get(TOKEN_VARIABLE) or None, no_auth)
    import uvicorn

    from isthmus.api.app import create_app

    app = create_app(config, token=token)
    if token is None:
        log.warning("serving without auth on %s: mutations need no token", host)
    redact = _Redact(token)
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addFilter(redact)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
    finally:
        for logger in loggers:
            logger.removeFilter(redact)
    return ServeResult(host, port, token is not None)


class _Redact(logging.Filter):
    """The token and passwords out of what uvicorn logs: its access log prints each request's
    path and query string, where a client may have put the token (``?token=...``)."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def _clean(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if self.token:
            if self.token not in value and self.token in unquote_plus(value):
                value = unquote_plus(value)  # percent-encoded: shown decoded, and masked
            value = value.replace(self.token, "***")
        return mask_secrets(value)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg) for arg in record.args)
        return True
