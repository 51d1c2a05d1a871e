"""Data differentials in the state store: what differs between source and target, and its fate."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Connection, func, literal, select, update

from isthmus.state.db_errors import NotFound
from isthmus.state.models import (
    STRATEGY_FOR_CONFLICT_RESOLUTION,
    ComparisonType,
    DataDifferential,
    ResolutionStrategy,
    validated,
)
from isthmus.state.store_base import StoreBase, column_values, load


class DifferentialMethods(StoreBase):
    def add_differential(
        self,
        conn: Connection,
        *,
        source_table: str,
        target_table: str,
        comparison_type: ComparisonType | str,
        legacy_ids: list[Any],
        checkpoint_id: UUID | None = None,
        resolution_strategy: ResolutionStrategy | str | None = None,
        comparison_criteria: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        record_count: int | None = None,
    ) -> DataDifferential:
        """Store one comparison result.

        Attached to a job's checkpoint, the strategy must match the job's conflict rule
        (source_wins, target_wins, manual -> manual_review) or be ``skip``; left out, it is
        that strategy (``manual_review`` without a job). ``record_count`` defaults to the
        number of ``legacy_ids``.
        """
        context: dict[str, Any] = {}
        if checkpoint_id is not None:
            context = self._job_rule_of_checkpoint(conn, checkpoint_id)
        if resolution_strategy is None:
            rule = context.get("conflict_resolution")
            resolution_strategy = (
                STRATEGY_FOR_CONFLICT_RESOLUTION[rule] if rule else ResolutionStrategy.MANUAL_REVIEW
            )
        differential = validated(
            DataDifferential,
            {
                "source_table": source_table,
                "target_table": target_table,
                "comparison_type": comparison_type,
                "legacy_ids": list(legacy_ids),
                "record_count": len(legacy_ids) if record_count is None else record_count,
                "checkpoint_id": checkpoint_id,
                "resolution_strategy": resolution_strategy,
                "comparison_criteria": comparison_criteria or {},
                "metadata": metadata or {},
            },
            context=context,
        )
        t = self.differentials
        values = column_values(differential, exclude={"created_at"})
        # clock_timestamp: differentials of one transaction still list in creation order
        values["created_at"] = func.clock_timestamp()
        statement = t.insert().values(values).returning(*t.c)
        return load(DataDifferential, self._execute(conn, statement, t).one())

    def get_differential(self, conn: Connection, differential_id: UUID) -> DataDifferential:
        t = self.differentials
        row = self._execute(conn, select(t).where(t.c.id == differential_id), t).one_or_none()
        if row is None:
            raise NotFound(
                f"no differential with id {differential_id} in state schema {self.schema}"
            )
        return load(DataDifferential, row)

    def list_differentials(
        self,
        conn: Connection,
        *,
        checkpoint_id: UUID | None = None,
        job_id: UUID | None = None,
        source_table: str | None = None,
        comparison_type: ComparisonType | str | None = None,
        resolution_strategy: ResolutionStrategy | str | None = None,
        resolved: bool | None = None,
        limit: int = 1000,
        newest: bool = False,
    ) -> list[DataDifferential]:
        """Differentials, oldest first (with ``newest``, the newest ``limit`` of them, still
        oldest first); each filter applies when given."""
        t, c = self.differentials, self.checkpoints
        statement = select(t).order_by(t.c.created_at, t.c.id).limit(limit)
        if newest:
            statement = select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
        if checkpoint_id is not None:
            statement = statement.where(t.c.checkpoint_id == checkpoint_id)
        if job_id is not None:
            statement = statement.where(
                t.c.checkpoint_id.in_(select(c.c.id).where(c.c.job_id == job_id))
            )
        if source_table is not None:
            statement = statement.where(t.c.source_table == source_table)
        if comparison_type is not None:
            statement = statement.where(t.c.comparison_type == str(comparison_type))
        if resolution_strategy is not None:
            statement = statement.where(t.c.resolution_strategy == str(resolution_strategy))
        if resolved is not None:
            statement = statement.where(t.c.resolved.is_(resolved))
        found = [load(DataDifferential, row) for row in self._execute(conn, statement, t)]
        return found[::-1] if newest else found

    def mark_differential_resolved(
        self, conn: Connection, differential_id: UUID, *, metadata: dict[str, Any] | None = None
    ) -> DataDifferential:
        """Mark resolved (now, unless it already was), merging ``metadata`` into the row's."""
        t = self.differentials
        values: dict[str, Any] = {
            "resolved": True,
            "resolved_at": func.coalesce(t.c.resolved_at, func.clock_timestamp()),
        }
        if metadata:
            values["metadata"] = t.c.metadata.op("||")(literal(metadata, t.c.metadata.type))
        statement = update(t).where(t.c.id == differential_id).values(values).returning(*t.c)
        row = self._execute(conn, statement, t).one_or_none()
        if row is None:
            raise NotFound(
                f"no differential with id {differential_id} in state schema {self.schema}"
            )
        return load(DataDifferential, row)

    def _job_rule_of_checkpoint(self, conn: Connection, checkpoint_id: UUID) -> dict[str, Any]:
        c, j = self.checkpoints, self.jobs
        statement = (
            select(j.c.conflict_resolution, j.c.job_name)
            .select_from(c.outerjoin(j, j.c.id == c.c.job_id))
            .where(c.c.id == checkpoint_id)
        )
        row = self._execute(conn, statement, c).one_or_none()
        if row is None:
            raise NotFound(f"no checkpoint with id {checkpoint_id} in state schema {self.schema}")
        if row.conflict_resolution is None:
            return {}
        return {"conflict_resolution": str(row.conflict_resolution), "job_name": row.job_name}
