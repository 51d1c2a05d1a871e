"""Progress and what needs a person: checkpoints, differentials, the review queue, the
quarantine and the ID map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Query
from fastapi.params import Depends as DependsParam

from isthmus import commands, mapping, quarantine, review
from isthmus.api.app_state import State
from isthmus.api.errors import responses
from isthmus.api.models import (
    CheckpointProgress,
    Differential,
    DifferentialResolve,
    QuarantineEntry,
    Resolution,
    ResolveResult,
    ReviewItem,
    ReviewResolve,
)
from isthmus.api.models import (
    Mapping as MappingOut,
)
from isthmus.api.params import (
    EntityFilter,
    EntityPath,
    ItemId,
    JobFilter,
    LegacyId,
    Limit,
    psycopg_of,
)
from isthmus.state.db_errors import NotFound
from isthmus.state.enums import CheckpointStatus, ComparisonType, OperationType, ResolutionStrategy
from isthmus.state.models import DataDifferential, MigrationCheckpoint
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore

IDS_SHOWN = 1000  # legacy IDs listed per differential


def checkpoint_progress(
    c: MigrationCheckpoint, job_names: Mapping[UUID, str] | None = None
) -> CheckpointProgress:
    """A checkpoint with how far it is and how fast it went (from its own timestamps)."""
    out = CheckpointProgress.model_validate(c)
    total = c.records_total
    if total:
        out.percent = round(min(100.0, 100.0 * c.records_processed / total), 2)
    elif total == 0 and c.status == CheckpointStatus.COMPLETED:
        out.percent = 100.0
    end: datetime | None = None
    if c.status == CheckpointStatus.IN_PROGRESS:
        end = c.updated_at
    elif c.status == CheckpointStatus.COMPLETED:
        end = c.completed_at
    if c.started_at is not None and end is not None:
        elapsed = (end - c.started_at).total_seconds()
        out.elapsed_seconds = round(max(0.0, elapsed), 3)
        if elapsed > 0:
            out.rows_per_second = round(c.records_processed / elapsed, 1)
    if c.job_id is not None and job_names is not None:
        out.job_name = job_names.get(c.job_id)
    return out


def differential_view(d: DataDifferential) -> Differential:
    entity = d.metadata.get("entity")
    return Differential.model_validate(
        {
            **d.model_dump(),
            "entity": entity if isinstance(entity, str) else d.source_table,
            "legacy_ids": d.legacy_ids[:IDS_SHOWN],
            "legacy_ids_truncated": len(d.legacy_ids) > IDS_SHOWN,
        }
    )


def router(auth: Sequence[DependsParam]) -> APIRouter:
    r = APIRouter()

    @r.get(
        "/checkpoints",
        tags=["progress"],
        response_model=list[CheckpointProgress],
        responses=responses(404, 422, 503),
    )
    def list_checkpoints(
        state: State,
        *,
        job: JobFilter = None,
        entity: EntityFilter = None,
        status: CheckpointStatus | None = None,
        operation: OperationType | None = None,
        limit: Limit = 100,
    ) -> list[CheckpointProgress]:
        """The newest checkpoints (newest first) with live progress: ``percent`` and
        ``rows_per_second``. Reads the state tables only: cheap enough to poll."""
        store = StateStore(state.state_schema)
        require_current(state.engine, state.state_schema)
        with state.engine.connect() as conn:
            names = {j.id: j.job_name for j in store.list_jobs(conn)}
            job_id = store.get_job(conn, job).id if job is not None else None
            found = store.list_checkpoints(
                conn,
                job_id=job_id,
                entity_type=entity,
                status=status,
                operation_type=operation,
                limit=limit,
            )
        return [checkpoint_progress(c, names) for c in found]

    @r.get(
        "/differentials",
        tags=["differentials"],
        response_model=list[Differential],
        responses=responses(400, 422, 503),
    )
    def list_differentials(
        state: State,
        *,
        entity: EntityFilter = None,
        type: ComparisonType | None = None,
        resolved: Annotated[bool | None, Query(description="default: both")] = None,
        strategy: ResolutionStrategy | None = None,
        limit: Limit = 100,
    ) -> list[Differential]:
        """Stored differentials, newest first."""
        with state.workspace() as ws:
            require_current(ws.engine, ws.state_schema)
            source_table = ws.plan[entity].entity.source_table if entity else None
            with ws.engine.connect() as conn:
                found = StateStore(ws.state_schema).list_differentials(
                    conn,
                    source_table=source_table,
                    comparison_type=type,
                    resolution_strategy=strategy,
                    resolved=resolved,
                    limit=limit,
                    newest=True,
                )
        return [differential_view(d) for d in reversed(found)]

    @r.post(
        "/differentials/{differential_id}/resolve",
        tags=["differentials"],
        dependencies=list(auth),
        response_model=ResolveResult,
        responses=responses(400, 401, 404, 409, 422, 503),
    )
    def resolve_differential(
        state: State,
        differential_id: ItemId,
        body: Annotated[DifferentialResolve | None, Body()] = None,
    ) -> ResolveResult:
        """Apply the differential by its stored strategy (or ``strategy``) and mark it
        resolved; resolving a resolved one changes nothing."""
        strategy = body.strategy.value if body and body.strategy else None
        done = commands.differentials_resolve(state.config, [str(differential_id)], strategy)
        return ResolveResult.model_validate(done.to_dict())

    @r.get(
        "/review",
        tags=["review"],
        response_model=list[ReviewItem],
        responses=responses(422, 503),
    )
    def list_review(
        state: State, entity: EntityFilter = None, job: JobFilter = None, limit: Limit = 100
    ) -> list[ReviewItem]:
        """Records changed on both sides waiting for a person, oldest first, with both
        versions (``source``, ``target``: column → value)."""
        with state.workspace() as ws:
            items = review.open_items(ws, entity=entity, job=job, limit=limit)
        return [ReviewItem.model_validate(i) for i in items]

    @r.post(
        "/review/{item_id}/resolve",
        tags=["review"],
        dependencies=list(auth),
        response_model=Resolution,
        responses=responses(400, 401, 404, 409, 422, 503),
    )
    def resolve_review(state: State, item_id: ItemId, body: ReviewResolve) -> Resolution:
        """Apply the winner's current version to the other side (or skip) and close the
        item."""
        done = commands.review_resolve(state.config, str(item_id), body.winner)
        return Resolution.model_validate(done.to_dict())

    @r.get(
        "/quarantine",
        tags=["progress"],
        response_model=list[QuarantineEntry],
        responses=responses(422, 503),
    )
    def list_quarantine(
        state: State,
        entity: EntityFilter = None,
        include_resolved: bool = False,
        limit: Limit = 100,
    ) -> list[QuarantineEntry]:
        """Source rows the migration isolated (refused by the target, or orphans)."""
        require_current(state.engine, state.state_schema)
        with state.engine.connect() as conn:
            entries = quarantine.list_entries(
                psycopg_of(conn),
                state.state_schema,
                entity=entity,
                include_resolved=include_resolved,
                limit=limit,
            )
        return [QuarantineEntry.model_validate(e) for e in entries]

    @r.get(
        "/mappings/{entity}/{legacy_id}",
        tags=["mappings"],
        response_model=MappingOut,
        responses=responses(404, 422, 503),
    )
    def lookup_mapping(state: State, entity: EntityPath, legacy_id: LegacyId) -> MappingOut:
        """The UUID (and the whole mapping row) of one legacy ID."""
        require_current(state.engine, state.state_schema)
        with state.engine.connect() as conn:
            record = mapping.lookup_record(psycopg_of(conn), state.state_schema, entity, legacy_id)
        if record is None:
            raise NotFound(f"no mapping for {entity} legacy id {legacy_id}")
        return MappingOut.model_validate(record)

    return r
