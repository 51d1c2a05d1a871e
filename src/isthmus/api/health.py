"""``GET /api/health``: 200 when the state schema answers at this isthmus's revision and the
source answers; 503 (same body) when either does not."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

import isthmus
from isthmus.api.app_state import ApiState, State
from isthmus.api.errors import one_line
from isthmus.api.models import Health, Probe
from isthmus.dialects import open_source
from isthmus.state.schema import current_revision, head_revision


def state_probe(state: ApiState) -> Probe:
    try:
        revision = current_revision(state.engine, state.state_schema)
    except Exception as exc:  # unreachable, refused, …: the probe says so
        return Probe(ok=False, detail=one_line(exc))
    head = head_revision()
    if revision is None:
        return Probe(ok=False, detail=f"state schema {state.state_schema} is not initialised")
    if revision != head:
        return Probe(
            ok=False,
            detail=f"state schema {state.state_schema} is at revision {revision}, "
            f"this isthmus needs {head}",
        )
    return Probe(ok=True, detail=f"state schema {state.state_schema} at revision {revision}")


def source_probe(state: ApiState) -> Probe:
    url = state.config.source.database_url
    try:
        source = open_source(url)
        try:
            source._query("SELECT 1", doing="checking health")
        finally:
            source.close()
    except Exception as exc:
        return Probe(ok=False, detail=one_line(exc))
    return Probe(ok=True, detail=f"{url.dialect} source answers")


def router() -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "a database does not answer"}},
    )
    def health(state: State) -> JSONResponse:
        """Whether this server can work: state schema reachable and current, source
        reachable."""
        found = Health(
            status="ok",
            version=isthmus.__version__,
            state_schema=state_probe(state),
            source=source_probe(state),
        )
        if not (found.state_schema.ok and found.source.ok):
            found.status = "unavailable"
        return JSONResponse(
            found.model_dump(mode="json"), status_code=200 if found.status == "ok" else 503
        )

    return r
