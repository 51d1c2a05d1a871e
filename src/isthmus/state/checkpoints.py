"""Migration checkpoints in the state store: progress of one operation on one entity.

``record_progress`` is on the hot path (once per batch, inside the batch's transaction):
one UPDATE, no read, no model.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Update,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.sql.expression import ColumnClause

from isthmus.errors import RuleViolation
from isthmus.state.db_errors import NotFound
from isthmus.state.models import (
    CheckpointStatus,
    MigrationCheckpoint,
    OperationType,
    validated,
)
from isthmus.state.store_base import StoreBase, column_values, load
from isthmus.state.transitions import check_checkpoint_transition

# Strictly after started_at even when both are taken within the same microsecond.
_ONE_MICROSECOND: ColumnClause[Any] = literal_column("interval '1 microsecond'")


class CheckpointMethods(StoreBase):
    def create_checkpoint(
        self,
        conn: Connection,
        *,
        operation_type: OperationType | str,
        entity_type: str,
        batch_size: int,
        records_total: int | None = None,
        job_id: UUID | None = None,
        last_processed_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MigrationCheckpoint:
        """A new ``pending`` checkpoint (``last_processed_id`` to resume after a given key)."""
        checkpoint = validated(
            MigrationCheckpoint,
            {
                "operation_type": operation_type,
                "entity_type": entity_type,
                "batch_size": batch_size,
                "records_total": records_total,
                "job_id": job_id,
                "last_processed_id": last_processed_id,
                "metadata": metadata or {},
            },
        )
        values = column_values(checkpoint, exclude={"created_at", "updated_at"})
        # clock_timestamp: checkpoints created in one transaction still sort in creation order
        values["created_at"] = func.clock_timestamp()
        statement = self.checkpoints.insert().values(values).returning(*self.checkpoints.c)
        row = self._execute(conn, statement, self.checkpoints).one()
        return load(MigrationCheckpoint, row)

    def get_checkpoint(self, conn: Connection, checkpoint_id: UUID) -> MigrationCheckpoint:
        return self._find_checkpoint(conn, checkpoint_id, lock=False)

    def latest_checkpoint(
        self,
        conn: Connection,
        operation_type: OperationType | str,
        entity_type: str,
        job_id: UUID | None = None,
        *,
        without_metadata_key: str | None = None,
    ) -> MigrationCheckpoint | None:
        """The newest checkpoint of this operation on this entity, for ``job_id``.

        ``job_id=None`` means checkpoints of no job (a standalone ``migrate``), not any job.
        ``without_metadata_key`` leaves out checkpoints whose metadata has that key (the
        key-range chunks of an entity, when the whole entity's checkpoint is wanted).
        """
        t = self.checkpoints
        job_condition = t.c.job_id.is_(None) if job_id is None else t.c.job_id == job_id
        statement = (
            select(t)
            .where(
                t.c.operation_type == str(operation_type),
                t.c.entity_type == entity_type,
                job_condition,
            )
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(1)
        )
        if without_metadata_key is not None:
            statement = statement.where(~t.c.metadata.has_key(without_metadata_key))
        row = self._execute(conn, statement, t).one_or_none()
        return None if row is None else load(MigrationCheckpoint, row)

    def list_checkpoints(
        self,
        conn: Connection,
        *,
        job_id: UUID | None = None,
        entity_type: str | None = None,
        status: CheckpointStatus | str | None = None,
        operation_type: OperationType | str | None = None,
        limit: int = 1000,
    ) -> list[MigrationCheckpoint]:
        """Checkpoints, newest first; each filter applies when given."""
        t = self.checkpoints
        statement = select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
        if job_id is not None:
            statement = statement.where(t.c.job_id == job_id)
        if entity_type is not None:
            statement = statement.where(t.c.entity_type == entity_type)
        if status is not None:
            statement = statement.where(t.c.status == str(status))
        if operation_type is not None:
            statement = statement.where(t.c.operation_type == str(operation_type))
        return [load(MigrationCheckpoint, row) for row in self._execute(conn, statement, t)]

    def set_checkpoint_status(
        self,
        conn: Connection,
        checkpoint_id: UUID,
        new_status: CheckpointStatus | str,
        error_message: str | None = None,
    ) -> MigrationCheckpoint:
        """Move a checkpoint to ``new_status``.

        The first ``in_progress`` sets ``started_at``; ``completed`` sets ``completed_at``
        (strictly after ``started_at``); ``failed`` needs ``error_message``; going back to
        ``in_progress`` (a retry or a resume) clears the previous error.
        """
        new_status = str(new_status)
        old = self._find_checkpoint(conn, checkpoint_id, lock=True)
        check_checkpoint_transition(old.status, new_status, checkpoint_id)
        if error_message is None and new_status != CheckpointStatus.IN_PROGRESS:
            error_message = old.error_message
        validated(
            MigrationCheckpoint,
            {**old.model_dump(), "status": new_status, "error_message": error_message},
        )
        t = self.checkpoints
        values: dict[str, Any] = {"status": new_status, "error_message": error_message}
        if new_status in (CheckpointStatus.IN_PROGRESS, CheckpointStatus.COMPLETED):
            values["started_at"] = func.coalesce(t.c.started_at, func.clock_timestamp())
        if new_status == CheckpointStatus.COMPLETED and old.completed_at is None:
            started = func.coalesce(t.c.started_at, func.clock_timestamp())
            values["completed_at"] = func.greatest(
                func.clock_timestamp(), started + _ONE_MICROSECOND
            )
        statement = update(t).where(t.c.id == checkpoint_id).values(values).returning(*t.c)
        return load(MigrationCheckpoint, self._execute(conn, statement, t).one())

    def merge_checkpoint_metadata(
        self, conn: Connection, checkpoint_id: UUID, values: dict[str, Any]
    ) -> None:
        """Add ``values`` to the checkpoint's metadata (keys it has already are replaced)."""
        t = self.checkpoints
        merged = t.c.metadata.op("||")(literal(values, t.c.metadata.type))
        self._execute(conn, update(t).where(t.c.id == checkpoint_id).values(metadata=merged), t)

    def record_progress(
        self,
        conn: Connection,
        checkpoint_id: UUID,
        *,
        last_processed_id: str | int | None,
        records_processed: int,
        records_total: int | None = None,
    ) -> None:
        """Set the checkpoint's progress (absolute values, not increments) in one UPDATE."""
        if records_processed < 0:
            raise RuleViolation(
                f"migration_checkpoints: records_processed {records_processed} must not be negative"
            )
        if records_total is not None and records_processed > records_total:
            raise RuleViolation(
                f"migration_checkpoints: records_processed {records_processed} must be <= "
                f"records_total {records_total} (checkpoint {checkpoint_id})"
            )
        params: dict[str, Any] = {
            "p_id": checkpoint_id,
            "p_last_id": None if last_processed_id is None else str(last_processed_id),
            "p_processed": records_processed,
        }
        if records_total is None:
            statement = self._progress
        else:
            statement = self._progress_with_total
            params["p_total"] = records_total
        if self._execute(conn, statement, self.checkpoints, params).rowcount != 1:
            raise NotFound(f"no checkpoint with id {checkpoint_id} in state schema {self.schema}")

    @cached_property
    def _progress(self) -> Update:
        t = self.checkpoints
        return (
            update(t)
            .where(t.c.id == bindparam("p_id"))
            .values(
                last_processed_id=bindparam("p_last_id"),
                records_processed=bindparam("p_processed"),
            )
        )

    @cached_property
    def _progress_with_total(self) -> Update:
        return self._progress.values(records_total=bindparam("p_total"))

    def _find_checkpoint(
        self, conn: Connection, checkpoint_id: UUID, *, lock: bool
    ) -> MigrationCheckpoint:
        statement = select(self.checkpoints).where(self.checkpoints.c.id == checkpoint_id)
        if lock:
            statement = statement.with_for_update()
        row = self._execute(conn, statement, self.checkpoints).one_or_none()
        if row is None:
            raise NotFound(f"no checkpoint with id {checkpoint_id} in state schema {self.schema}")
        return load(MigrationCheckpoint, row)
