"""Validation: stored reports (list, show as JSON or the self-contained HTML) and runs.

``POST /api/validate`` checks its arguments at once (unknown type or entity: 400/422), then
validates in a thread of the server: the answer is a 202 with the task; its result (once
``done``) is what ``isthmus --json validate`` prints, with the ``run_id`` that
``GET /api/reports/{run_id}`` shows. One validation runs at a time in a server (409).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse

from isthmus import commands, reports
from isthmus.api.app_state import ApiState, State
from isthmus.api.errors import responses
from isthmus.api.models import Report, ReportRun, Task, ValidateRequest
from isthmus.api.params import EntityFilter, Limit, ReportId
from isthmus.errors import UsageError
from isthmus.state.db_errors import NotFound
from isthmus.state.enums import ValidationType
from isthmus.validate import parse_types

VALIDATE_KEY = "validate"


def router(auth: Sequence[DependsParam]) -> APIRouter:
    r = APIRouter(tags=["validation"])

    @r.get("/reports", response_model=list[Report], responses=responses(400, 422, 503))
    def list_reports(
        state: State,
        entity: EntityFilter = None,
        type: ValidationType | None = None,
        failed: Annotated[bool, Query(description="only failed validations")] = False,
        limit: Limit = 50,
    ) -> list[Report]:
        """The newest validation reports, newest first (``stale``: past their expiry)."""
        with state.workspace() as ws:
            found = reports.list_reports(
                ws, entity=entity, validation_type=type, failed_only=failed, limit=limit
            )
        now = datetime.now(UTC)
        return [Report.model_validate(reports.report_dict(x, now)) for x in found.reports]

    @r.get(
        "/reports/{report_id}",
        response_model=ReportRun,
        responses=responses(400, 404, 422, 503),
    )
    def show_report(state: State, report_id: ReportId) -> ReportRun:
        """A report, or every report of a validation run."""
        return ReportRun.model_validate(_find(state, report_id).to_dict())

    @r.get(
        "/reports/{report_id}/html",
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {}}, "description": "a self-contained page"},
            **responses(400, 404, 422, 503, json_ref=True),
        },
    )
    def report_html(state: State, report_id: ReportId) -> HTMLResponse:
        """The report (or run) as one self-contained HTML page (inline CSS and SVG)."""
        return HTMLResponse(_find(state, report_id).html())

    @r.post(
        "/validate",
        status_code=202,
        dependencies=list(auth),
        response_model=Task,
        responses=responses(400, 401, 409, 422, 503),
    )
    def validate(state: State, body: ValidateRequest | None = None) -> Task:
        """Start a validation (``isthmus validate``) in the background; poll the task."""
        request = body or ValidateRequest()
        types = parse_types(request.types)
        entities = list(request.entities or [])
        with state.workspace() as ws:
            ws.plan.select(entities)  # an unknown entity is refused now, not in the task
        config, sample = state.config, request.sample_rows
        task = state.tasks.start(
            "validate",
            VALIDATE_KEY,
            VALIDATE_KEY,
            lambda: commands.validate(config, types, entities, sample_rows=sample),
            busy="a validation is running in this server",
        )
        return Task.model_validate(task.view())

    return r


def _find(state: ApiState, report_id: str) -> reports.ReportView:
    """``reports.show_report``; what it does not find is a 404 (it says so as a UsageError
    whose message starts "no ...", an ambiguous prefix stays a 400)."""
    with state.workspace() as ws:
        try:
            return reports.show_report(ws, report_id, "json")
        except UsageError as exc:
            if str(exc).startswith("no "):
                raise NotFound(str(exc)) from None
            raise
