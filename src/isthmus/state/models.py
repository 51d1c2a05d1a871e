"""The five control entities of data-model.md as pydantic models, with every validation rule.

The database enforces the same rules (CHECK constraints and triggers of migration 0001);
these models let a writer fail first, with a message naming the field and the value.
Three rules need something only the caller knows, passed as validation context:

- ``known_entities`` (a set of entity names): ``entities_to_sync`` must name only those;
- ``conflict_resolution`` (and ``job_name``): a differential attached to a job's
  checkpoint must use the matching strategy or ``skip``;
- ``from_db=True`` when reading a stored row: "``migration_timestamp`` not in the future"
  is a rule about writing, and is not re-judged against this machine's clock on reading.

``validated()`` builds a model and turns pydantic's report into one RuleViolation line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from isthmus.errors import MappingConflict, RuleViolation
from isthmus.state.enums import (
    CheckpointStatus,
    ComparisonType,
    ConflictResolution,
    JobStatus,
    JobType,
    MappingValidationStatus,
    OperationType,
    ResolutionStrategy,
    SyncDirection,
    ValidationType,
)

# "resolution_strategy must be consistent with system configuration": the strategy a
# job's conflict rule implies; ``skip`` is always consistent.
STRATEGY_FOR_CONFLICT_RESOLUTION: Mapping[str, str] = {
    "source_wins": "source_wins",
    "target_wins": "target_wins",
    "manual": "manual_review",
}

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _int_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


Name = Annotated[str, AfterValidator(_not_blank)]
Count = Annotated[int, _int_range(0, INT8_MAX)]
Count4 = Annotated[int, _int_range(0, INT4_MAX)]
Positive4 = Annotated[int, _int_range(1, INT4_MAX)]
JsonObject = dict[str, JsonValue]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _context(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context if isinstance(info.context, Mapping) else {}


def _is_empty_json(value: object) -> bool:
    return value is None or value in ({}, [])


class ControlRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    table: ClassVar[str]


class SynchronizationJob(ControlRow):
    table: ClassVar[str] = "synchronization_jobs"

    id: UUID = Field(default_factory=uuid4)
    job_name: Name
    job_type: JobType
    schedule_config: JsonObject | None = None
    entities_to_sync: list[Name]
    sync_direction: SyncDirection
    conflict_resolution: ConflictResolution
    max_records_per_batch: Positive4
    status: JobStatus = JobStatus.SCHEDULED
    last_run_at: AwareDatetime | None = None
    next_run_at: AwareDatetime | None = None
    total_records_synced: Count = 0
    success_rate: Decimal | None = None
    average_duration_ms: Count4 | None = None
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    updated_at: AwareDatetime = Field(default_factory=_utcnow)
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("success_rate")
    @classmethod
    def _success_rate_is_a_percentage(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        if not value.is_finite() or not Decimal("0.00") <= value <= Decimal("100.00"):
            raise ValueError(f"success_rate {value} must be between 0.00 and 100.00")
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @field_validator("entities_to_sync")
    @classmethod
    def _entities_are_known(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise ValueError("entities_to_sync must name at least one entity")
        known = _context(info).get("known_entities")
        if known is not None:
            unknown = [name for name in value if name not in known]
            if unknown:
                raise ValueError(
                    f"entities_to_sync: {', '.join(map(repr, unknown))} "
                    f"{'is not a known entity' if len(unknown) == 1 else 'are not known entities'}"
                    f" (known: {', '.join(sorted(known)) or 'none'})"
                )
        return value

    @model_validator(mode="after")
    def _rules(self) -> SynchronizationJob:
        if (
            self.next_run_at is not None
            and self.last_run_at is not None
            and not self.next_run_at > self.last_run_at
        ):
            raise ValueError(
                f"next_run_at {self.next_run_at.isoformat()} must be later than "
                f"last_run_at {self.last_run_at.isoformat()}"
            )
        if self.job_type == JobType.SCHEDULED_SYNC and not self.schedule_config:
            raise ValueError(
                f"schedule_config {self.schedule_config!r} is required (a non-empty object) "
                f"for job_type scheduled_sync (job {self.job_name})"
            )
        return self


class MigrationCheckpoint(ControlRow):
    table: ClassVar[str] = "migration_checkpoints"

    id: UUID = Field(default_factory=uuid4)
    job_id: UUID | None = None
    operation_type: OperationType
    entity_type: Name
    last_processed_id: str | None = None
    records_processed: Count = 0
    records_total: Count | None = None
    batch_size: Positive4
    status: CheckpointStatus = CheckpointStatus.PENDING
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    error_message: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    updated_at: AwareDatetime = Field(default_factory=_utcnow)

    @model_validator(mode="after")
    def _rules(self) -> MigrationCheckpoint:
        if self.records_total is not None and self.records_processed > self.records_total:
            raise ValueError(
                f"records_processed {self.records_processed} must be <= "
                f"records_total {self.records_total} (checkpoint {self.entity_type})"
            )
        if self.completed_at is not None and (
            self.started_at is None or not self.completed_at > self.started_at
        ):
            started = self.started_at.isoformat() if self.started_at else None
            raise ValueError(
                f"completed_at {self.completed_at.isoformat()} must be later than "
                f"started_at {started}"
            )
        if self.status == CheckpointStatus.FAILED and not (self.error_message or "").strip():
            raise ValueError(
                f"error_message {self.error_message!r} is required when status is failed"
            )
        return self


class DataDifferential(ControlRow):
    table: ClassVar[str] = "data_differentials"

    id: UUID = Field(default_factory=uuid4)
    checkpoint_id: UUID | None = None
    source_table: Name
    target_table: Name
    comparison_type: ComparisonType
    legacy_ids: list[JsonValue]
    record_count: Count4
    comparison_criteria: JsonObject = Field(default_factory=dict)
    resolution_strategy: ResolutionStrategy = ResolutionStrategy.MANUAL_REVIEW
    resolved: bool = False
    resolved_at: AwareDatetime | None = None
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    metadata: JsonObject = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> DataDifferential:
        if self.record_count != len(self.legacy_ids):
            raise ValueError(
                f"record_count {self.record_count} must equal the length of "
                f"legacy_ids ({len(self.legacy_ids)}) ({self.source_table})"
            )
        if self.resolved and self.resolved_at is None:
            raise ValueError("resolved_at None is required when resolved is true")
        context = _context(info)
        rule = context.get("conflict_resolution")
        if rule is not None:
            allowed = (STRATEGY_FOR_CONFLICT_RESOLUTION[str(rule)], "skip")
            if self.resolution_strategy not in allowed:
                job = context.get("job_name")
                raise ValueError(
                    f"resolution_strategy {self.resolution_strategy.value!r} is inconsistent "
                    f"with conflict_resolution {rule!s} of job {job} "
                    f"(allowed: {', '.join(allowed)})"
                )
        return self


class MigrationValidationReport(ControlRow):
    table: ClassVar[str] = "migration_validation_reports"

    id: UUID = Field(default_factory=uuid4)
    job_id: UUID | None = None
    checkpoint_id: UUID | None = None
    validation_type: ValidationType
    source_entity: Name
    target_entity: Name
    records_validated: Count = 0
    validation_passed: bool
    discrepancies_found: Count4 = 0
    discrepancy_details: JsonObject | list[JsonValue] | None = None
    validation_criteria: JsonObject = Field(default_factory=dict)
    execution_time_ms: int
    generated_at: AwareDatetime = Field(default_factory=_utcnow)
    expires_at: AwareDatetime
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("execution_time_ms")
    @classmethod
    def _execution_time_positive(cls, value: int) -> int:
        if not 0 < value <= INT4_MAX:
            raise ValueError(f"execution_time_ms {value} must be positive")
        return value

    @model_validator(mode="after")
    def _rules(self) -> MigrationValidationReport:
        if self.validation_passed and self.discrepancies_found != 0:
            raise ValueError(
                f"discrepancies_found {self.discrepancies_found} must be 0 when "
                f"validation_passed is true ({self.source_entity})"
            )
        if self.discrepancies_found > 0 and _is_empty_json(self.discrepancy_details):
            raise ValueError(
                f"discrepancy_details {self.discrepancy_details!r} is required when "
                f"discrepancies_found is {self.discrepancies_found}"
            )
        if not self.expires_at > self.generated_at:
            raise ValueError(
                f"expires_at {self.expires_at.isoformat()} must be later than "
                f"generated_at {self.generated_at.isoformat()}"
            )
        return self


class LegacyIdMapping(ControlRow):
    table: ClassVar[str] = "legacy_id_mappings"

    id: UUID = Field(default_factory=uuid4)
    entity_type: Name
    legacy_id: Annotated[int, _int_range(-INT8_MAX - 1, INT8_MAX)]
    uuid_id: UUID
    migration_batch: str | None = None
    migration_timestamp: AwareDatetime = Field(default_factory=_utcnow)
    validation_status: MappingValidationStatus = MappingValidationStatus.PENDING
    source_table: str | None = None
    target_table: str | None = None
    checksum: str | None = None
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("migration_timestamp")
    @classmethod
    def _not_in_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        if not _context(info).get("from_db") and value > _utcnow():
            raise ValueError(f"migration_timestamp {value.isoformat()} must not be in the future")
        return value

    @model_validator(mode="after")
    def _rules(self) -> LegacyIdMapping:
        if self.validation_status == MappingValidationStatus.VALIDATED and not self.checksum:
            raise ValueError(
                f"checksum {self.checksum!r} is required when validation_status is validated "
                f"({self.entity_type} legacy_id {self.legacy_id})"
            )
        return self


def check_unique_mappings(mappings: Iterable[LegacyIdMapping]) -> None:
    """The two unique rules of the map, within one batch: raise MappingConflict on a repeat."""
    by_legacy: dict[tuple[str, int], UUID] = {}
    by_uuid: dict[tuple[str, UUID], int] = {}
    for m in mappings:
        legacy_key, uuid_key = (m.entity_type, m.legacy_id), (m.entity_type, m.uuid_id)
        if legacy_key in by_legacy:
            raise MappingConflict(
                f"legacy_id_mappings: {m.entity_type} legacy_id {m.legacy_id} appears twice "
                f"(uuid_id {by_legacy[legacy_key]} and {m.uuid_id})"
            )
        if uuid_key in by_uuid:
            raise MappingConflict(
                f"legacy_id_mappings: {m.entity_type} uuid_id {m.uuid_id} appears twice "
                f"(legacy_id {by_uuid[uuid_key]} and {m.legacy_id})"
            )
        by_legacy[legacy_key] = m.uuid_id
        by_uuid[uuid_key] = m.legacy_id


Model = TypeVar("Model", bound=ControlRow)


def validated(
    model: type[Model], data: Mapping[str, Any], *, context: Mapping[str, Any] | None = None
) -> Model:
    """``model`` built from ``data``; a broken rule raises one RuleViolation line."""
    try:
        return model.model_validate(dict(data), context=dict(context or {}))
    except ValidationError as exc:
        raise RuleViolation(f"{model.table}: {describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``field value: reason; ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        message = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        if loc and not message.startswith(loc.split(".")[0]):
            value = err.get("input")
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            message = f"{loc} {shown}: {message}"
        parts.append(message)
    return "; ".join(parts)


__all__ = [
    "STRATEGY_FOR_CONFLICT_RESOLUTION",
    "CheckpointStatus",
    "ComparisonType",
    "ConflictResolution",
    "ControlRow",
    "DataDifferential",
    "JobStatus",
    "JobType",
    "LegacyIdMapping",
    "MappingValidationStatus",
    "MigrationCheckpoint",
    "MigrationValidationReport",
    "OperationType",
    "ResolutionStrategy",
    "SyncDirection",
    "SynchronizationJob",
    "ValidationType",
    "check_unique_mappings",
    "describe",
    "validated",
]
