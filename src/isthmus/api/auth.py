"""Who may change things: a bearer token on every mutation; reads are open.

``isthmus serve`` takes the token from ``ISTHMUS_API_TOKEN``. Without one it refuses to start,
unless told ``--no-auth`` on a loopback address (then mutations need no token either).
The token is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from isthmus.api.errors import Unauthorized
from isthmus.errors import UsageError

TOKEN_VARIABLE = "ISTHMUS_API_TOKEN"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description=f"the server's {TOKEN_VARIABLE}; needed by every POST",
)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """The dependency of every mutation: 401 unless the request carries the server's token."""
    expected: str | None = request.app.state.isthmus.token
    if expected is None:  # served with --no-auth on loopback
        return
    if credentials is None:
        raise Unauthorized(f"this needs 'Authorization: Bearer <{TOKEN_VARIABLE}>'")
    given = credentials.credentials.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected.encode("utf-8", "surrogateescape")):
        raise Unauthorized("wrong bearer token")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as given to --host) only listens on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def serving_token(host: str, token: str | None, no_auth: bool) -> str | None:
    """The token the server requires (None: none), or UsageError when it must not start."""
    if no_auth:
        if not is_loopback(host):
            raise UsageError(
                f"--no-auth is allowed only on a loopback address (127.0.0.1, localhost, ::1), "
                f"not {host!r}: set {TOKEN_VARIABLE} to serve on other addresses"
            )
        return None
    if not token:
        raise UsageError(
            f"{TOKEN_VARIABLE} is not set: set it to the bearer token mutations must carry, "
            "or serve on 127.0.0.1 with --no-auth"
        )
    return token
