"""Every error the HTTP API answers with: one JSON object ``{"error": "one line"}``.

isthmus errors keep their meaning as a status code (:func:`status_for`): a name or id that
is not there is 404, a move the state machines or a running job forbid is 409, a request the
library refuses is 400 (422 for a rule of the control tables or the server's config), a
database that does not answer (or a state schema not initialised) is 503. Bad input that
the request's own schema catches is 422 with the fields named. Anything else is a 500 whose
message is masked (passwords in URLs) and one line, and is logged; no input should reach it.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from isthmus.errors import (
    ConfigError,
    DatabaseError,
    IllegalTransition,
    IsthmusError,
    MappingConflict,
    RuleViolation,
    TerminalDatabaseError,
    TransientDatabaseError,
    UsageError,
    first_line,
)
from isthmus.migrate_result import EntityBusy
from isthmus.state.db_errors import NotFound, refusal
from isthmus.state.schema import StateSchemaNotReady
from isthmus.sync import JobBusy
from isthmus.urls import mask_secrets

log = logging.getLogger("isthmus.api")


class ErrorBody(BaseModel):
    """What every 4xx and 5xx answer holds."""

    error: str


class Conflict(IsthmusError):
    """The request cannot be carried out in the current state (a job running, paused, …)."""


class Unauthorized(IsthmusError):
    """A mutation without the right bearer token."""


# the first match wins: subclasses before their bases
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (StateSchemaNotReady, 503),
    (Conflict, 409),
    (IllegalTransition, 409),
    (JobBusy, 409),
    (EntityBusy, 409),
    (MappingConflict, 409),
    (RuleViolation, 422),
    (ConfigError, 422),
    (UsageError, 400),
    (TransientDatabaseError, 503),
    (TerminalDatabaseError, 500),
    (DatabaseError, 503),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status of an isthmus error (500 for one with no meaning to a client)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def one_line(exc: BaseException) -> str:
    """The error's message on one line, passwords masked."""
    return mask_secrets(first_line(exc))


def error_response(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _isthmus_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, one_line(exc))
    return error_response(status, one_line(exc))


def _where(loc: tuple[int | str, ...] | list[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "body", "header"):
        kind, rest = parts[0], parts[1:]
        return f"{kind} {'.'.join(rest)}" if rest else kind
    return ".".join(parts)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A driver error that no library function translated: as the library would."""
    return await _isthmus_error(request, refusal(exc, "the state tables"))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{_where(err.get('loc', ()))}: {message}")
    text = "; ".join(problems) or "invalid request"
    return error_response(422, mask_secrets(" ".join(text.split()))[:1000])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    response = error_response(exc.status_code, " ".join(detail.split()) or "error")
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    message = one_line(exc)
    log.error(
        "%s %s: unexpected %s: %s", request.method, request.url.path, type(exc).__name__, message
    )
    return error_response(500, f"internal error: {type(exc).__name__}: {message}")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into ``{"error": ...}``."""
    app.add_exception_handler(IsthmusError, _isthmus_error)
    app.add_exception_handler(sa_exc.DBAPIError, _database_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


# the error answers each route may give, for the OpenAPI schema
DESCRIBED = {
    400: "the library refused the request",
    401: "missing or wrong bearer token",
    404: "no such job, item, report or mapping",
    409: "not possible in the current state",
    422: "invalid input",
    503: "the state schema or a database is not available",
}


def responses(*statuses: int, json_ref: bool = False) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for these error statuses. ``json_ref``: name the JSON schema
    explicitly (a route whose own answers are not JSON, e.g. HTML)."""
    if json_ref:
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        return {
            s: {"description": DESCRIBED[s], "content": {"application/json": {"schema": ref}}}
            for s in statuses
        }
    return {s: {"model": ErrorBody, "description": DESCRIBED[s]} for s in statuses}
