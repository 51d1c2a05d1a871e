"""Synchronization jobs as a user handles them: create, list, show, pause, resume, cancel.

Every status change goes through the state store, which refuses a move the job state
machine does not allow (``scheduled → running → completed | failed | paused``, ``running →
cancelled``, ``paused → running``, ``completed → scheduled``) with a message naming the job,
both statuses and the moves allowed. Runs are in :mod:`isthmus.sync`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isthmus.errors import UsageError
from isthmus.state.enums import JobStatus, JobType
from isthmus.state.models import MigrationCheckpoint, SynchronizationJob
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.validate import parse_types
from isthmus.workspace import Workspace

JOB_TYPES = tuple(t.value for t in JobType)


def parse_cron(expression: str) -> dict[str, Any]:
    """The ``schedule_config`` of a cron expression (five fields, UTC, or six: a sixth field
    is seconds, as croniter reads it); a malformed one is a UsageError that quotes it."""
    from croniter import croniter

    text = " ".join(expression.split())
    if len(text.split(" ")) not in (5, 6) or not croniter.is_valid(text):
        raise UsageError(
            f"not a cron expression: {expression!r} (five fields: minute hour day-of-month "
            "month day-of-week, e.g. '*/15 * * * *'; a sixth is seconds, e.g. "
            "'* * * * * */30')"
        )
    schedule = {"cron": text, "timezone": "UTC"}
    try:  # a well-formed schedule may still never come ('0 0 30 2 *': February 30th)
        next_run(schedule, datetime.now(UTC))
    except ValueError as exc:  # croniter's CroniterBadDateError
        raise UsageError(f"cron expression {expression!r} never matches a date ({exc})") from None
    return schedule


def next_run(schedule_config: dict[str, Any] | None, after: datetime) -> datetime | None:
    """When a job with this schedule runs next, strictly after ``after``."""
    if not schedule_config or not schedule_config.get("cron"):
        return None
    from croniter import croniter

    after = after if after.tzinfo else after.replace(tzinfo=UTC)
    found: datetime = croniter(str(schedule_config["cron"]), after.astimezone(UTC)).get_next(
        datetime
    )
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@dataclass
class JobDetail:
    job: SynchronizationJob
    checkpoints: list[MigrationCheckpoint] = field(default_factory=list)
    open_review_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.model_dump(mode="json"),
            "recent_checkpoints": [c.model_dump(mode="json") for c in self.checkpoints],
            "open_review_items": self.open_review_items,
        }


VALIDATE_AFTER = "validate_after"  # job metadata: validation types run after each run


def create_job(
    ws: Workspace,
    name: str,
    *,
    job_type: str,
    entities: Sequence[str] | None = None,
    direction: str = "source_to_target",
    conflict: str = "source_wins",
    cron: str | None = None,
    batch_size: int | None = None,
    validate: Sequence[str] | None = None,
) -> SynchronizationJob:
    """A new job, ``scheduled``; a scheduled_sync needs ``cron`` and gets its next_run_at;
    ``validate``: the validation types each completed run is followed by (metadata
    ``validate_after``)."""
    require_current(ws.engine, ws.state_schema)
    if job_type not in JOB_TYPES:
        raise UsageError(f"unknown job type {job_type!r}: one of {', '.join(JOB_TYPES)}")
    if job_type == JobType.SCHEDULED_SYNC and not cron:
        raise UsageError(f"job {name}: a scheduled_sync job needs --cron")
    schedule = parse_cron(cron) if cron else None
    known = [p.name for p in ws.plan.entities]
    chosen = list(entities) if entities else known
    unknown = [e for e in chosen if e not in known]
    if unknown:
        raise UsageError(
            f"job {name}: unknown entit{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(unknown)} (known: {', '.join(known)})"
        )
    if direction == "bidirectional" and not ws.source.capabilities.writable_source:
        raise UsageError(
            f"job {name}: the {ws.source.capabilities.name} source cannot be written to, so a "
            "bidirectional job cannot run against it"
        )
    ordered = [e for e in known if e in chosen]  # plan order, whatever order they were named
    store = StateStore(ws.state_schema)
    with ws.engine.begin() as sa:
        return store.create_job(
            sa,
            job_name=name,
            job_type=job_type,
            entities=ordered,
            sync_direction=direction,
            conflict_resolution=conflict,
            max_records_per_batch=batch_size or ws.config.migration.batch_size,
            schedule_config=schedule,
            next_run_at=next_run(schedule, datetime.now(UTC)),
            metadata={VALIDATE_AFTER: parse_types(validate)} if validate else None,
            known_entities=known,
        )


def list_jobs(ws: Workspace) -> list[SynchronizationJob]:
    require_current(ws.engine, ws.state_schema)
    with ws.engine.connect() as sa:
        return StateStore(ws.state_schema).list_jobs(sa)


def show_job(ws: Workspace, name: str, checkpoints: int = 20) -> JobDetail:
    """The job, its newest checkpoints and how many of its records wait for review."""
    from isthmus.review import open_items

    require_current(ws.engine, ws.state_schema)
    store = StateStore(ws.state_schema)
    with ws.engine.connect() as sa:
        job = store.get_job(sa, name)
        recent = store.list_checkpoints(sa, job_id=job.id, limit=checkpoints)
    return JobDetail(job, recent, len(open_items(ws, job=job.job_name)))


def set_status(ws: Workspace, name: str, status: JobStatus) -> SynchronizationJob:
    """``pause`` and ``cancel``: a running job stops at its next batch boundary."""
    require_current(ws.engine, ws.state_schema)
    with ws.engine.begin() as sa:
        return StateStore(ws.state_schema).set_job_status(sa, name, status)


def due_jobs(
    ws: Workspace,
    now: datetime | None = None,
    statuses: Collection[str] = (JobStatus.SCHEDULED,),
) -> list[SynchronizationJob]:
    """Scheduled jobs (in one of ``statuses``) whose next_run_at has come."""
    moment = now or datetime.now(UTC)
    return [
        j
        for j in list_jobs(ws)
        if j.status in statuses
        and j.job_type == JobType.SCHEDULED_SYNC
        and j.next_run_at is not None
        and j.next_run_at <= moment
    ]
