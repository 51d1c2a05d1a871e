"""Synchronization jobs in the state store: create, find, move through their states, count runs."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from isthmus.errors import RuleViolation
from isthmus.state.db_errors import NotFound
from isthmus.state.models import (
    ConflictResolution,
    JobStatus,
    JobType,
    SyncDirection,
    SynchronizationJob,
    validated,
)
from isthmus.state.store_base import StoreBase, column_values, load
from isthmus.state.transitions import check_job_transition

# What set_job_status may change along with the status.
JOB_FIELDS_SETTABLE = frozenset(
    {
        "schedule_config",
        "entities_to_sync",
        "max_records_per_batch",
        "last_run_at",
        "next_run_at",
        "metadata",
    }
)
# Run statistics kept in the job's metadata, from which the averages are exact.
RUN_COUNT = "run_count"
RECORDS_FAILED_TOTAL = "records_failed_total"
DURATION_MS_TOTAL = "duration_ms_total"

_SERVER_SET = frozenset({"created_at", "updated_at"})


def _counter(metadata: Mapping[str, Any], key: str) -> int:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _maybe_uuid(value: UUID | str) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        return None


class JobMethods(StoreBase):
    def create_job(
        self,
        conn: Connection,
        *,
        job_name: str,
        job_type: JobType | str,
        entities: list[str],
        sync_direction: SyncDirection | str,
        conflict_resolution: ConflictResolution | str,
        max_records_per_batch: int,
        schedule_config: dict[str, Any] | None = None,
        next_run_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        known_entities: Collection[str] | None = None,
    ) -> SynchronizationJob:
        """A new job in state ``scheduled``; a name already taken raises RuleViolation."""
        job = validated(
            SynchronizationJob,
            {
                "job_name": job_name,
                "job_type": job_type,
                "entities_to_sync": list(entities),
                "sync_direction": sync_direction,
                "conflict_resolution": conflict_resolution,
                "max_records_per_batch": max_records_per_batch,
                "schedule_config": schedule_config,
                "next_run_at": next_run_at,
                "metadata": metadata or {},
            },
            context=None if known_entities is None else {"known_entities": set(known_entities)},
        )
        statement = (
            pg_insert(self.jobs)
            .values(column_values(job, exclude=_SERVER_SET))
            .on_conflict_do_nothing(constraint="uq_sync_job_name")
            .returning(*self.jobs.c)
        )
        row = self._execute(conn, statement, self.jobs).one_or_none()
        if row is None:
            raise RuleViolation(f"synchronization_jobs: a job named {job_name!r} already exists")
        return load(SynchronizationJob, row)

    def get_job(self, conn: Connection, name_or_id: UUID | str) -> SynchronizationJob:
        """The job with this name (or id); NotFound names what was asked for."""
        return self._find_job(conn, name_or_id, lock=False)

    def list_jobs(
        self, conn: Connection, *, status: JobStatus | str | None = None
    ) -> list[SynchronizationJob]:
        statement = select(self.jobs).order_by(self.jobs.c.job_name)
        if status is not None:
            statement = statement.where(self.jobs.c.status == str(status))
        rows = self._execute(conn, statement, self.jobs)
        return [load(SynchronizationJob, row) for row in rows]

    def set_job_status(
        self, conn: Connection, job: UUID | str, new_status: JobStatus | str, **fields: Any
    ) -> SynchronizationJob:
        """Move ``job`` (name or id) to ``new_status``, changing ``fields`` with it.

        ``fields`` are among JOB_FIELDS_SETTABLE; ``metadata`` replaces the whole object.
        An illegal move raises IllegalTransition before anything is written.
        """
        unknown = sorted(set(fields) - JOB_FIELDS_SETTABLE)
        if unknown:
            raise TypeError(
                f"set_job_status cannot set {', '.join(unknown)} "
                f"(settable: {', '.join(sorted(JOB_FIELDS_SETTABLE))})"
            )
        old = self._find_job(conn, job, lock=True)
        check_job_transition(old.status, str(new_status), old.job_name)
        new = validated(
            SynchronizationJob, {**old.model_dump(), **fields, "status": str(new_status)}
        )
        return self._write_job(conn, new, {"status", *fields})

    def record_job_run(
        self,
        conn: Connection,
        job: UUID | str,
        *,
        records_synced: int,
        records_failed: int,
        duration_ms: int,
        next_run_at: datetime | None = None,
        ran_at: datetime | None = None,
    ) -> SynchronizationJob:
        """Add one run to the job's statistics.

        ``total_records_synced`` grows by ``records_synced``; ``success_rate`` is the share of
        records applied without error over all runs (100.00 before any record);
        ``average_duration_ms`` is the mean over runs. ``last_run_at`` becomes ``ran_at``
        (default: now, on this machine's clock, like ``next_run_at``).
        """
        for name, value in (
            ("records_synced", records_synced),
            ("records_failed", records_failed),
            ("duration_ms", duration_ms),
        ):
            if value < 0:
                raise RuleViolation(f"synchronization_jobs: {name} {value} must not be negative")
        old = self._find_job(conn, job, lock=True)
        metadata = dict(old.metadata)
        runs = _counter(metadata, RUN_COUNT) + 1
        failed_total = _counter(metadata, RECORDS_FAILED_TOTAL) + records_failed
        duration_total = _counter(metadata, DURATION_MS_TOTAL) + duration_ms
        synced_total = old.total_records_synced + records_synced
        attempted = synced_total + failed_total
        rate = (
            Decimal(100)
            if attempted == 0
            else (Decimal(synced_total) * 100 / Decimal(attempted)).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP
            )
        )
        metadata.update(
            {RUN_COUNT: runs, RECORDS_FAILED_TOTAL: failed_total, DURATION_MS_TOTAL: duration_total}
        )
        changes = {
            "total_records_synced": synced_total,
            "success_rate": rate,
            "average_duration_ms": (duration_total + runs // 2) // runs,
            "last_run_at": ran_at or datetime.now(UTC),
            "next_run_at": next_run_at,
            "metadata": metadata,
        }
        new = validated(SynchronizationJob, {**old.model_dump(), **changes})
        return self._write_job(conn, new, set(changes))

    def _write_job(
        self, conn: Connection, job: SynchronizationJob, columns: set[str]
    ) -> SynchronizationJob:
        values = column_values(job, exclude=_SERVER_SET)
        statement = (
            update(self.jobs)
            .where(self.jobs.c.id == job.id)
            .values({name: values[name] for name in columns})
            .returning(*self.jobs.c)
        )
        return load(SynchronizationJob, self._execute(conn, statement, self.jobs).one())

    def _find_job(self, conn: Connection, job: UUID | str, *, lock: bool) -> SynchronizationJob:
        t = self.jobs
        ident = _maybe_uuid(job)
        if isinstance(job, UUID):
            statement = select(t).where(t.c.id == job)
        else:
            by_name = t.c.job_name == job
            condition = by_name if ident is None else or_(by_name, t.c.id == ident)
            statement = select(t).where(condition).order_by(by_name.desc()).limit(1)
        if lock:
            statement = statement.with_for_update()
        row = self._execute(conn, statement, t).one_or_none()
        if row is None:
            what = f"with id {job}" if isinstance(job, UUID) else f"named {job!r}"
            raise NotFound(f"no job {what} in state schema {self.schema}")
        return load(SynchronizationJob, row)
