"""The enum types of data-model.md, with the same values, in the same order, as tables.py."""

from __future__ import annotations

from enum import StrEnum


class OperationType(StrEnum):
    DIFFERENTIAL_MIGRATION = "differential_migration"
    SYNC_OPERATION = "sync_operation"
    VALIDATION = "validation"


class CheckpointStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"


class ComparisonType(StrEnum):
    MISSING_RECORDS = "missing_records"
    CONFLICTED_RECORDS = "conflicted_records"
    DELETED_RECORDS = "deleted_records"


class ResolutionStrategy(StrEnum):
    SOURCE_WINS = "source_wins"
    TARGET_WINS = "target_wins"
    MANUAL_REVIEW = "manual_review"
    SKIP = "skip"


class JobType(StrEnum):
    SCHEDULED_SYNC = "scheduled_sync"
    MANUAL_SYNC = "manual_sync"
    DIFFERENTIAL_MIGRATION = "differential_migration"


class SyncDirection(StrEnum):
    SOURCE_TO_TARGET = "source_to_target"
    BIDIRECTIONAL = "bidirectional"


class ConflictResolution(StrEnum):
    SOURCE_WINS = "source_wins"
    TARGET_WINS = "target_wins"
    MANUAL = "manual"


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class ValidationType(StrEnum):
    DATA_INTEGRITY = "data_integrity"
    RELATIONSHIP_INTEGRITY = "relationship_integrity"
    COMPLETENESS_CHECK = "completeness_check"
    PERFORMANCE_CHECK = "performance_check"


class MappingValidationStatus(StrEnum):
    PENDING = "pending"
    VALIDATED = "validated"
    ERROR = "error"
