"""Migration validation reports in the state store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, select

from isthmus.state.db_errors import NotFound
from isthmus.state.models import MigrationValidationReport, ValidationType, validated
from isthmus.state.store_base import StoreBase, column_values, load

DEFAULT_REPORT_TTL = timedelta(days=7)


class ReportMethods(StoreBase):
    def add_report(
        self,
        conn: Connection,
        *,
        validation_type: ValidationType | str,
        source_entity: str,
        target_entity: str,
        records_validated: int,
        validation_passed: bool,
        execution_time_ms: int,
        discrepancies_found: int = 0,
        discrepancy_details: dict[str, Any] | list[Any] | None = None,
        validation_criteria: dict[str, Any] | None = None,
        generated_at: datetime | None = None,
        expires_at: datetime | None = None,
        ttl: timedelta = DEFAULT_REPORT_TTL,
        job_id: UUID | None = None,
        checkpoint_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MigrationValidationReport:
        """Store one validation; it expires at ``expires_at``, else ``ttl`` after generation."""
        generated = generated_at or datetime.now(UTC)
        report = validated(
            MigrationValidationReport,
            {
                "validation_type": validation_type,
                "source_entity": source_entity,
                "target_entity": target_entity,
                "records_validated": records_validated,
                "validation_passed": validation_passed,
                "discrepancies_found": discrepancies_found,
                "discrepancy_details": discrepancy_details,
                "validation_criteria": validation_criteria or {},
                "execution_time_ms": execution_time_ms,
                "generated_at": generated,
                "expires_at": expires_at or generated + ttl,
                "job_id": job_id,
                "checkpoint_id": checkpoint_id,
                "metadata": metadata or {},
            },
        )
        t = self.reports
        statement = t.insert().values(column_values(report)).returning(*t.c)
        return load(MigrationValidationReport, self._execute(conn, statement, t).one())

    def get_report(self, conn: Connection, report_id: UUID) -> MigrationValidationReport:
        t = self.reports
        row = self._execute(conn, select(t).where(t.c.id == report_id), t).one_or_none()
        if row is None:
            raise NotFound(f"no report with id {report_id} in state schema {self.schema}")
        return load(MigrationValidationReport, row)

    def list_reports(
        self,
        conn: Connection,
        *,
        job_id: UUID | None = None,
        source_entity: str | None = None,
        validation_type: ValidationType | str | None = None,
        passed: bool | None = None,
        include_expired: bool = True,
        limit: int = 1000,
    ) -> list[MigrationValidationReport]:
        """Reports, newest first; each filter applies when given."""
        t = self.reports
        statement = select(t).order_by(t.c.generated_at.desc(), t.c.id).limit(limit)
        if job_id is not None:
            statement = statement.where(t.c.job_id == job_id)
        if source_entity is not None:
            statement = statement.where(t.c.source_entity == source_entity)
        if validation_type is not None:
            statement = statement.where(t.c.validation_type == str(validation_type))
        if passed is not None:
            statement = statement.where(t.c.validation_passed.is_(passed))
        if not include_expired:
            statement = statement.where(t.c.expires_at > datetime.now(UTC))
        return [load(MigrationValidationReport, row) for row in self._execute(conn, statement, t)]
