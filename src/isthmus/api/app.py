"""The HTTP API: ``create_app(config, token=...)`` is the FastAPI application ``isthmus serve``
runs. A thin layer: every route calls the library (``isthmus.commands`` and the functions
under it) and turns its result or its error into JSON.

Reads that need only the state tables (jobs, checkpoints, review items, reports, mappings,
metrics) share one SQLAlchemy engine for the app's lifetime (:class:`ApiState`); work that
needs the source (creating a job, runs, validations, resolving) opens its own connections
per request, as the CLI does. The plan (source reflection), needed only to turn an entity
filter into a table name, is kept for ``app_state.PLAN_TTL_SECONDS``.

The dashboard hook: when a module ``isthmus.api.dashboard`` exists, its ``register(app)`` is
called after every API route is in place, so whatever it mounts (``app.mount("/", ...)``,
a router) never shadows ``/api``, ``/metrics`` or the docs. ``app.state.isthmus`` is the
:class:`ApiState` (config, shared engine, background tasks).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

import isthmus
from isthmus.api import errors, health, metrics, routes_data, routes_jobs, routes_reports
from isthmus.api.app_state import ApiState
from isthmus.api.auth import require_token
from isthmus.config import Config
from isthmus.errors import IllegalTransition
from isthmus.state.enums import JobStatus

log = logging.getLogger("isthmus.api")

SHUTDOWN_WAIT_SECONDS = 30.0
DASHBOARD_MODULE = "isthmus.api.dashboard"


def create_app(config: Config, *, token: str | None) -> FastAPI:
    """The API on ``config``'s databases. ``token``: the bearer token every mutation must
    carry; None serves without one (``serve --no-auth``, loopback only)."""
    state = ApiState(config, token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(_stop_runs, state)
        state.close()

    app = FastAPI(
        title="isthmus",
        version=isthmus.__version__,
        summary="Jobs, progress, differentials, review, validation and the ID map of an "
        "isthmus migration.",
        description="Reads are open. Every POST needs `Authorization: Bearer "
        "<ISTHMUS_API_TOKEN>` unless the server runs with `--no-auth` on a loopback "
        'address. Errors are `{"error": "one line"}`.',
        lifespan=lifespan,
    )
    app.state.isthmus = state
    errors.install(app)
    auth = [Depends(require_token)] if token is not None else []
    for router in (routes_jobs.router(auth), routes_data.router(auth), routes_reports.router(auth)):
        app.include_router(router, prefix="/api")
    app.include_router(health.router(), prefix="/api")
    metrics.install(app, state)

    if importlib.util.find_spec(DASHBOARD_MODULE) is not None:
        importlib.import_module(DASHBOARD_MODULE).register(app)
    else:

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/docs")

    return app


def _stop_runs(state: ApiState) -> None:
    """At shutdown: the job runs this server started are paused (they stop at their next
    batch and can be resumed), then every task gets SHUTDOWN_WAIT_SECONDS in all to end."""
    from isthmus import jobs

    deadline = time.monotonic() + SHUTDOWN_WAIT_SECONDS
    pending = state.tasks.running("job_run")
    while pending and time.monotonic() < deadline:
        with state.workspace() as ws:
            for task in list(pending):
                if task.status != "running":
                    pending.remove(task)
                    continue
                try:
                    jobs.set_status(ws, task.subject, JobStatus.PAUSED)
                except IllegalTransition:  # not running yet (or just finished): look again
                    continue
                except Exception as exc:  # the database went away: nothing more to do
                    log.warning("job %s not paused: %s", task.subject, errors.one_line(exc))
                else:
                    log.warning("job %s paused: the server is stopping", task.subject)
                pending.remove(task)
        time.sleep(0.05)
    state.tasks.join(max(0.0, deadline - time.monotonic()))
