"""The JSON shapes of the HTTP API: request bodies and responses, for a precise OpenAPI schema.

Control rows keep the field names of the state tables (and of ``isthmus --json``);
``success_rate`` is a number here, not a decimal string. Texts a client sends are bounded
and never hold NUL (PostgreSQL cannot store it), so such input is a 422, not a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from isthmus.state.enums import (
    CheckpointStatus,
    ComparisonType,
    ConflictResolution,
    JobStatus,
    JobType,
    OperationType,
    ResolutionStrategy,
    SyncDirection,
    ValidationType,
)
from isthmus.state.models import INT4_MAX

NO_NUL = r"^[^\x00]*$"
NAME_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"  # not blank, no NUL
MAX_NAME = 200

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
ValidationTypeName = Literal[
    "all", "data_integrity", "relationship_integrity", "completeness_check", "performance_check"
]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- jobs --------------------------------------------------------------------------------------


class Job(Out):
    id: UUID
    job_name: str
    job_type: JobType
    schedule_config: dict[str, Any] | None
    entities_to_sync: list[str]
    sync_direction: SyncDirection
    conflict_resolution: ConflictResolution
    max_records_per_batch: int
    status: JobStatus
    last_run_at: datetime | None
    next_run_at: datetime | None
    total_records_synced: int
    success_rate: float | None = Field(description="percent of records synced without failure")
    average_duration_ms: int | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = Field(
        description="``last_run``: the newest run's result; ``run``: the run going on"
    )


class JobCreate(BaseModel):
    """``isthmus jobs create``'s arguments."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    type: JobType
    entities: list[Name] | None = Field(default=None, max_length=1000, description="default: all")
    direction: SyncDirection = SyncDirection.SOURCE_TO_TARGET
    conflict: ConflictResolution = ConflictResolution.SOURCE_WINS
    cron: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        pattern=r"^[ -~]*$",
        description="UTC cron expression (five fields, or six with seconds); scheduled_sync only",
    )
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    validate_after: list[ValidationTypeName] | None = Field(
        default=None,
        alias="validate",
        max_length=10,
        description="validate the job's entities after each completed run",
    )


class Task(BaseModel):
    """Work the server runs in the background (a job run, a validation)."""

    id: UUID
    kind: Literal["job_run", "validate"]
    subject: str = Field(description="the job's name, or 'validate'")
    status: Literal["running", "done", "failed"] = Field(
        description="done: the work returned (a job run may still have stopped paused, "
        "cancelled or with failed records: see result); failed: it raised (see error)"
    )
    started_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None = Field(
        description="what `isthmus --json jobs run` / `validate` prints"
    )
    exit_code: int | None = Field(description="the CLI's exit code for the same work")
    error: str | None


class QueuedRun(BaseModel):
    job: str
    queued: bool
    queue_job_id: int
    already_queued: bool


class RunAccepted(BaseModel):
    """A run started: in this server (``task``) or handed to the workers (``queued``)."""

    job: str
    task: Task | None = None
    queued: QueuedRun | None = None


class Checkpoint(Out):
    id: UUID
    job_id: UUID | None
    operation_type: OperationType
    entity_type: str
    last_processed_id: str | None
    records_processed: int
    records_total: int | None
    batch_size: int
    status: CheckpointStatus
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CheckpointProgress(Checkpoint):
    job_name: str | None = None
    percent: float | None = Field(
        default=None, description="records_processed of records_total, 0-100 (None: total unknown)"
    )
    rows_per_second: float | None = Field(
        default=None,
        description="records_processed over the time from started_at to updated_at (to "
        "completed_at once completed)",
    )
    elapsed_seconds: float | None = None


class JobDetail(BaseModel):
    job: Job
    recent_checkpoints: list[CheckpointProgress]
    open_review_items: int
    task: Task | None = Field(default=None, description="this server's newest background run of it")


# -- differentials and review ------------------------------------------------------------------


class Differential(Out):
    id: UUID
    checkpoint_id: UUID | None
    entity: str
    source_table: str
    target_table: str
    comparison_type: ComparisonType
    legacy_ids: list[Any] = Field(description="the first 1000 of them")
    legacy_ids_truncated: bool
    record_count: int
    comparison_criteria: dict[str, Any]
    resolution_strategy: ResolutionStrategy
    resolved: bool
    resolved_at: datetime | None
    created_at: datetime
    metadata: dict[str, Any]


class DifferentialResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: ResolutionStrategy | None = Field(
        default=None, description="instead of the differential's stored resolution_strategy"
    )


class Resolution(BaseModel):
    differential_id: UUID
    entity: str
    comparison_type: str
    strategy: str
    already_resolved: bool
    written: int
    deleted: int
    quarantined: int
    left_open: int
    notes: list[str]


class ResolveResult(BaseModel):
    resolutions: list[Resolution]
    waiting_for_review: int


class ReviewItem(Out):
    id: UUID
    entity: str
    legacy_id: int
    comparison_type: str
    side: str
    job: str | None
    source: dict[str, str | None] | None = Field(description="column → value in the source")
    target: dict[str, str | None] | None = Field(description="column → value in the target")
    created_at: datetime
    resolved: bool


class ReviewResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winner: Literal["source", "target", "skip"]


# -- validation --------------------------------------------------------------------------------


class Report(Out):
    id: UUID
    job_id: UUID | None
    checkpoint_id: UUID | None
    validation_type: ValidationType
    entity: str
    run_id: str | None
    stale: bool = Field(description="past expires_at: says what was true then")
    source_entity: str
    target_entity: str
    records_validated: int
    validation_passed: bool
    discrepancies_found: int
    discrepancy_details: dict[str, Any] | list[Any] | None
    validation_criteria: dict[str, Any]
    execution_time_ms: int
    generated_at: datetime
    expires_at: datetime
    metadata: dict[str, Any]


class ReportRun(BaseModel):
    """One report, or every report of one validation run."""

    run_id: str | None
    passed: bool
    stale: bool
    reports: list[Report]


class ValidateRequest(BaseModel):
    """``isthmus validate``'s arguments."""

    model_config = ConfigDict(extra="forbid")

    types: list[ValidationTypeName] | None = Field(
        default=None, max_length=10, description="default: all"
    )
    entities: list[Name] | None = Field(default=None, max_length=1000, description="default: all")
    sample_rows: int | None = Field(
        default=None,
        ge=0,
        le=INT4_MAX,
        description="data_integrity: a random sample (0: every row)",
    )


# -- the rest ----------------------------------------------------------------------------------


class Mapping(Out):
    entity_type: str
    legacy_id: int
    uuid_id: UUID
    migration_batch: str | None
    migration_timestamp: datetime
    validation_status: str
    source_table: str | None
    target_table: str | None
    checksum: str | None
    metadata: dict[str, Any]


class QuarantineEntry(Out):
    id: UUID
    entity_type: str
    source_table: str
    legacy_key: str
    kind: str
    column_name: str | None
    reason: str
    attempts: int
    resolved: bool
    created_at: datetime
    updated_at: datetime


class Probe(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    state_schema: Probe = Field(description="reachable and at this isthmus's revision")
    source: Probe
