"""Stored validation reports, read back: listed, and shown as a table, JSON or HTML.

A report is one entity and one validation type; the reports of one ``isthmus validate`` share
a ``run_id`` (in their metadata). ``reports show`` takes a report's ID, a validation run's
ID, a unique prefix of either, or ``latest`` (the newest run), and shows that report or
every report of that run. A report past its ``expires_at`` is shown as *stale*: it says what
was true when it was made, not what is true now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, String, cast, select

from isthmus.errors import UsageError
from isthmus.state.models import MigrationValidationReport
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.state.store_base import load
from isthmus.workspace import Workspace

FORMATS = ("table", "json", "html")
_HEX = re.compile(r"^[0-9a-fA-F-]{4,36}$")


def is_stale(report: MigrationValidationReport, now: datetime | None = None) -> bool:
    return report.expires_at <= (now or datetime.now(UTC))


def report_dict(report: MigrationValidationReport, now: datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = report.model_dump(mode="json")
    out["entity"] = report.metadata.get("entity", report.source_entity)
    out["run_id"] = report.metadata.get("run_id")
    out["stale"] = is_stale(report, now)
    return out


@dataclass
class ReportList:
    reports: list[MigrationValidationReport]
    now: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"reports": [report_dict(r, self.now) for r in self.reports]}


@dataclass
class ReportView:
    """One report, or every report of one validation run."""

    reports: list[MigrationValidationReport]
    run_id: str | None
    format: str
    now: datetime

    @property
    def passed(self) -> bool:
        return all(r.validation_passed for r in self.reports)

    @property
    def stale(self) -> bool:
        return any(is_stale(r, self.now) for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "passed": self.passed,
            "stale": self.stale,
            "reports": [report_dict(r, self.now) for r in self.reports],
        }

    def html(self) -> str:
        from isthmus.report_html import render_html

        title = "isthmus validation report"
        if self.run_id:
            title += f" {self.run_id}"
        return render_html(self.reports, title=title, now=self.now)


def list_reports(
    ws: Workspace,
    *,
    entity: str | None = None,
    validation_type: str | None = None,
    failed_only: bool = False,
    limit: int = 50,
) -> ReportList:
    """The newest reports, newest first; filtered by entity (its source table) and type."""
    require_current(ws.engine, ws.state_schema)
    source_entity = ws.plan[entity].entity.source_table if entity else None
    store = StateStore(ws.state_schema)
    with ws.engine.connect() as conn:
        reports = store.list_reports(
            conn,
            source_entity=source_entity,
            validation_type=validation_type,
            passed=False if failed_only else None,
            limit=limit,
        )
    return ReportList(reports, datetime.now(UTC))


def show_report(ws: Workspace, ident: str, format: str = "table") -> ReportView:
    """The report or validation run ``ident`` names (see the module docstring)."""
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: one of {', '.join(FORMATS)}")
    require_current(ws.engine, ws.state_schema)
    store = StateStore(ws.state_schema)
    with ws.engine.connect() as conn:
        reports, run_id = _find(conn, store, ident.strip())
    return ReportView(reports, run_id, format, datetime.now(UTC))


def _find(
    conn: Connection, store: StateStore, ident: str
) -> tuple[list[MigrationValidationReport], str | None]:
    t = store.reports
    run = t.c.metadata["run_id"].astext
    if ident == "latest":
        newest = conn.execute(
            select(run).where(run.is_not(None)).order_by(t.c.generated_at.desc()).limit(1)
        ).scalar()
        if newest is None:
            raise UsageError("no validation reports yet (run `isthmus validate`)")
        return _run(conn, store, str(newest)), str(newest)
    if not _HEX.match(ident):
        raise UsageError(f"{ident!r} is not a report ID, a run ID or 'latest'")
    try:
        exact: UUID | None = UUID(ident)
    except ValueError:
        exact = None
    if exact is not None:
        by_run = _run(conn, store, str(exact))
        if by_run:
            return by_run, str(exact)
        rows = conn.execute(select(t).where(t.c.id == exact)).all()
        if rows:
            return [load(MigrationValidationReport, rows[0])], None
        raise UsageError(f"no report or validation run with ID {ident}")
    prefix = ident.lower() + "%"
    ids = conn.execute(select(t.c.id).where(cast(t.c.id, String).like(prefix)).limit(2)).all()
    runs = conn.execute(select(run).where(run.like(prefix)).distinct().limit(2)).all()
    found = [("report", str(r[0])) for r in ids] + [("run", str(r[0])) for r in runs]
    if not found:
        raise UsageError(f"no report or validation run with an ID starting {ident}")
    if len(found) > 1:
        raise UsageError(f"{ident} is ambiguous: give more of the ID")
    kind, full = found[0]
    if kind == "run":
        return _run(conn, store, full), full
    rows = conn.execute(select(t).where(t.c.id == UUID(full))).all()
    return [load(MigrationValidationReport, rows[0])], None


def _run(conn: Connection, store: StateStore, run_id: str) -> list[MigrationValidationReport]:
    """The reports of a validation run, in the order they were made."""
    t = store.reports
    rows = conn.execute(
        select(t).where(t.c.metadata["run_id"].astext == run_id).order_by(t.c.generated_at, t.c.id)
    ).all()
    return [load(MigrationValidationReport, r) for r in rows]
