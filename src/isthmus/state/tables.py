"""The five control tables of data-model.md, as SQLAlchemy Core metadata.

Every attribute, enum, validation rule (as a CHECK constraint; the same rules are
checked in Python by ``models.py``), unique constraint and index of the
specification, plus the relationship foreign keys (``job_id``, ``checkpoint_id``)
and GIN indexes on the jsonb columns isthmus queries.

Beyond the specification: ``quarantined_rows`` (bad rows that migrate isolated, with their
key and reason), ``pending_ddl`` (indexes and constraints deferred until after a bulk load) and
``target_deletions`` (deletes in the target captured for the cursor diff).

The two mapping indexes the specification lists are the indexes of its two
unique constraints (same names, same columns): one index each, not two, on the
table that takes the most writes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

DEFAULT_SCHEMA = "isthmus"

OPERATION_TYPES = ("differential_migration", "sync_operation", "validation")
CHECKPOINT_STATUSES = ("pending", "in_progress", "completed", "failed", "paused")
COMPARISON_TYPES = ("missing_records", "conflicted_records", "deleted_records")
RESOLUTION_STRATEGIES = ("source_wins", "target_wins", "manual_review", "skip")
JOB_TYPES = ("scheduled_sync", "manual_sync", "differential_migration")
SYNC_DIRECTIONS = ("source_to_target", "bidirectional")
CONFLICT_RESOLUTIONS = ("source_wins", "target_wins", "manual")
JOB_STATUSES = ("scheduled", "running", "completed", "failed", "paused", "cancelled")
VALIDATION_TYPES = (
    "data_integrity",
    "relationship_integrity",
    "completeness_check",
    "performance_check",
)
MAPPING_VALIDATION_STATUSES = ("pending", "validated", "error")

NOW = text("now()")
EMPTY_OBJECT = text("'{}'::jsonb")


def _ts(name: str, *, nullable: bool = True, default_now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=NOW if default_now else None,
    )


def _uuid_pk() -> Column[object]:
    return Column(
        "id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


def _metadata_col() -> Column[object]:
    return Column("metadata", JSONB, nullable=False, server_default=EMPTY_OBJECT)


def _enum(name: str, values: tuple[str, ...], schema: str) -> Enum:
    return Enum(*values, name=name, schema=schema, create_type=True)


def build_metadata(schema: str = DEFAULT_SCHEMA) -> MetaData:
    """The control tables in ``schema`` (the config's ``target.state_schema``)."""
    md = MetaData(schema=schema)

    Table(
        "synchronization_jobs",
        md,
        _uuid_pk(),
        Column("job_name", Text, nullable=False),
        Column("job_type", _enum("job_type", JOB_TYPES, schema), nullable=False),
        Column("schedule_config", JSONB, nullable=True),
        Column("entities_to_sync", JSONB, nullable=False),
        Column("sync_direction", _enum("sync_direction", SYNC_DIRECTIONS, schema), nullable=False),
        Column(
            "conflict_resolution",
            _enum("conflict_resolution", CONFLICT_RESOLUTIONS, schema),
            nullable=False,
        ),
        Column("max_records_per_batch", Integer, nullable=False),
        Column(
            "status",
            _enum("job_status", JOB_STATUSES, schema),
            nullable=False,
            server_default="scheduled",
        ),
        _ts("last_run_at"),
        _ts("next_run_at"),
        Column("total_records_synced", BigInteger, nullable=False, server_default="0"),
        Column("success_rate", Numeric(5, 2), nullable=True),
        Column("average_duration_ms", Integer, nullable=True),
        _ts("created_at", nullable=False, default_now=True),
        _ts("updated_at", nullable=False, default_now=True),
        _metadata_col(),
        UniqueConstraint("job_name", name="uq_sync_job_name"),
        CheckConstraint(
            "next_run_at IS NULL OR last_run_at IS NULL OR next_run_at > last_run_at",
            name="ck_sync_job_next_after_last",
        ),
        CheckConstraint(
            "success_rate IS NULL OR success_rate BETWEEN 0.00 AND 100.00",
            name="ck_sync_job_success_rate",
        ),
        CheckConstraint(
            "job_type <> 'scheduled_sync' OR (schedule_config IS NOT NULL"
            " AND jsonb_typeof(schedule_config) = 'object' AND schedule_config <> '{}'::jsonb)",
            name="ck_sync_job_schedule_required",
        ),
        CheckConstraint(
            "CASE WHEN jsonb_typeof(entities_to_sync) = 'array'"
            " THEN jsonb_array_length(entities_to_sync) > 0 AND NOT jsonb_path_exists("
            """entities_to_sync, '$[*] ? (@.type() != "string" || @ like_regex "^[[:space:]]*$")')"""
            " ELSE false END",
            name="ck_sync_job_entities_array",
        ),
        CheckConstraint("max_records_per_batch > 0", name="ck_sync_job_batch_positive"),
        CheckConstraint("total_records_synced >= 0", name="ck_sync_job_total_nonnegative"),
        CheckConstraint(
            "average_duration_ms IS NULL OR average_duration_ms >= 0", name="ck_sync_job_duration"
        ),
        Index("idx_sync_job_status", "status", "next_run_at"),
        Index("idx_sync_job_type_schedule", "job_type", "schedule_config"),
        Index("idx_sync_job_entities_gin", "entities_to_sync", postgresql_using="gin"),
    )

    Table(
        "migration_checkpoints",
        md,
        _uuid_pk(),
        Column(
            "job_id",
            UUID(as_uuid=True),
            ForeignKey("synchronization_jobs.id", ondelete="CASCADE"),
            nullable=True,
        ),
        Column("operation_type", _enum("operation_type", OPERATION_TYPES, schema), nullable=False),
        Column("entity_type", Text, nullable=False),
        Column("last_processed_id", Text, nullable=True),
        Column("records_processed", BigInteger, nullable=False, server_default="0"),
        Column("records_total", BigInteger, nullable=True),
        Column("batch_size", Integer, nullable=False),
        Column(
            "status",
            _enum("checkpoint_status", CHECKPOINT_STATUSES, schema),
            nullable=False,
            server_default="pending",
        ),
        _ts("started_at"),
        _ts("completed_at"),
        Column("error_message", Text, nullable=True),
        _metadata_col(),
        _ts("created_at", nullable=False, default_now=True),
        _ts("updated_at", nullable=False, default_now=True),
        CheckConstraint(
            "records_total IS NULL OR records_processed <= records_total",
            name="ck_checkpoint_processed_le_total",
        ),
        CheckConstraint(
            "completed_at IS NULL OR (started_at IS NOT NULL AND completed_at > started_at)",
            name="ck_checkpoint_completed_after_started",
        ),
        CheckConstraint(
            "status <> 'failed' OR (error_message IS NOT NULL AND btrim(error_message) <> '')",
            name="ck_checkpoint_failed_has_error",
        ),
        CheckConstraint("records_processed >= 0", name="ck_checkpoint_processed_nonnegative"),
        CheckConstraint("batch_size > 0", name="ck_checkpoint_batch_positive"),
        Index("idx_checkpoint_status_entity", "status", "entity_type"),
        Index("idx_checkpoint_operation_type", "operation_type", "created_at"),
        Index("idx_checkpoint_job", "job_id", "entity_type"),
        Index("idx_checkpoint_metadata_gin", "metadata", postgresql_using="gin"),
    )

    Table(
        "data_differentials",
        md,
        _uuid_pk(),
        Column(
            "checkpoint_id",
            UUID(as_uuid=True),
            ForeignKey("migration_checkpoints.id", ondelete="CASCADE"),
            nullable=True,
        ),
        Column("source_table", Text, nullable=False),
        Column("target_table", Text, nullable=False),
        Column(
            "comparison_type", _enum("comparison_type", COMPARISON_TYPES, schema), nullable=False
        ),
        Column("legacy_ids", JSONB, nullable=False),
        Column("record_count", Integer, nullable=False),
        Column("comparison_criteria", JSONB, nullable=False, server_default=EMPTY_OBJECT),
        Column(
            "resolution_strategy",
            _enum("resolution_strategy", RESOLUTION_STRATEGIES, schema),
            nullable=False,
            server_default="manual_review",
        ),
        Column("resolved", Boolean, nullable=False, server_default="false"),
        _ts("resolved_at"),
        _ts("created_at", nullable=False, default_now=True),
        _metadata_col(),
        CheckConstraint(
            "CASE WHEN jsonb_typeof(legacy_ids) = 'array'"
            " THEN record_count = jsonb_array_length(legacy_ids) ELSE false END",
            name="ck_differential_count_matches_ids",
        ),
        CheckConstraint(
            "NOT resolved OR resolved_at IS NOT NULL", name="ck_differential_resolved_at"
        ),
        Index("idx_differential_table_type", "source_table", "comparison_type"),
        Index("idx_differential_resolved", "resolved", "created_at"),
        Index("idx_differential_checkpoint", "checkpoint_id"),
        Index("idx_differential_legacy_ids_gin", "legacy_ids", postgresql_using="gin"),
    )

    Table(
        "migration_validation_reports",
        md,
        _uuid_pk(),
        Column(
            "job_id",
            UUID(as_uuid=True),
            ForeignKey("synchronization_jobs.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column(
            "checkpoint_id",
            UUID(as_uuid=True),
            ForeignKey("migration_checkpoints.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column(
            "validation_type", _enum("validation_type", VALIDATION_TYPES, schema), nullable=False
        ),
        Column("source_entity", Text, nullable=False),
        Column("target_entity", Text, nullable=False),
        Column("records_validated", BigInteger, nullable=False, server_default="0"),
        Column("validation_passed", Boolean, nullable=False),
        Column("discrepancies_found", Integer, nullable=False, server_default="0"),
        Column("discrepancy_details", JSONB, nullable=True),
        Column("validation_criteria", JSONB, nullable=False, server_default=EMPTY_OBJECT),
        Column("execution_time_ms", Integer, nullable=False),
        _ts("generated_at", nullable=False, default_now=True),
        _ts("expires_at", nullable=False),
        _metadata_col(),
        CheckConstraint(
            "NOT validation_passed OR discrepancies_found = 0",
            name="ck_report_passed_no_discrepancies",
        ),
        CheckConstraint(
            "discrepancies_found = 0 OR (discrepancy_details IS NOT NULL"
            " AND discrepancy_details NOT IN ('null'::jsonb, '{}'::jsonb, '[]'::jsonb))",
            name="ck_report_details_required",
        ),
        CheckConstraint("expires_at > generated_at", name="ck_report_expires_after_generated"),
        CheckConstraint("execution_time_ms > 0", name="ck_report_execution_time_positive"),
        CheckConstraint("discrepancies_found >= 0", name="ck_report_discrepancies_nonnegative"),
        CheckConstraint("records_validated >= 0", name="ck_report_records_nonnegative"),
        Index("idx_report_entity_type", "source_entity", "validation_type", "generated_at"),
        Index("idx_report_job", "job_id"),
    )

    Table(
        "legacy_id_mappings",
        md,
        _uuid_pk(),
        Column("entity_type", Text, nullable=False),
        Column("legacy_id", BigInteger, nullable=False),
        Column("uuid_id", UUID(as_uuid=True), nullable=False),
        Column("migration_batch", Text, nullable=True),
        _ts("migration_timestamp", nullable=False, default_now=True),
        Column(
            "validation_status",
            _enum("mapping_validation_status", MAPPING_VALIDATION_STATUSES, schema),
            nullable=False,
            server_default="pending",
        ),
        Column("source_table", Text, nullable=True),
        Column("target_table", Text, nullable=True),
        Column("checksum", Text, nullable=True),
        _metadata_col(),
        UniqueConstraint("entity_type", "legacy_id", name="idx_legacy_mapping_entity_legacy"),
        UniqueConstraint("entity_type", "uuid_id", name="idx_legacy_mapping_entity_uuid"),
        CheckConstraint(
            # clock_timestamp, not now(): now() is the start of the transaction, and a batch
            # stamps its mappings later in the same transaction.
            "migration_timestamp <= clock_timestamp()",
            name="ck_mapping_timestamp_not_future",
        ),
        CheckConstraint(
            "validation_status <> 'validated' OR (checksum IS NOT NULL AND checksum <> '')",
            name="ck_mapping_checksum_for_validation",
        ),
    )

    Table(
        "quarantined_rows",
        md,
        _uuid_pk(),
        Column("entity_type", Text, nullable=False),
        Column("source_table", Text, nullable=False),
        Column("legacy_key", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("column_name", Text, nullable=True),
        Column("reason", Text, nullable=False),
        Column("row_data", JSONB, nullable=True),
        Column(
            "checkpoint_id",
            UUID(as_uuid=True),
            ForeignKey(f"{schema}.migration_checkpoints.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column("attempts", Integer, nullable=False, server_default="1"),
        Column("resolved", Boolean, nullable=False, server_default=text("false")),
        _ts("resolved_at"),
        _ts("created_at", nullable=False, default_now=True),
        _ts("updated_at", nullable=False, default_now=True),
        UniqueConstraint("entity_type", "legacy_key", name="uq_quarantine_entity_key"),
        CheckConstraint("kind IN ('orphan', 'rejected', 'unreadable')", name="ck_quarantine_kind"),
        CheckConstraint("reason <> ''", name="ck_quarantine_reason_required"),
        CheckConstraint(
            "NOT resolved OR resolved_at IS NOT NULL", name="ck_quarantine_resolved_at"
        ),
        Index("idx_quarantine_open", "resolved", "entity_type"),
    )

    Table(
        "pending_ddl",
        md,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("target_table", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("statement", Text, nullable=False),
        Column("depends_on", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        _ts("created_at", nullable=False, default_now=True),
        _ts("applied_at"),
        Column("error", Text, nullable=True),
        UniqueConstraint("name", name="uq_pending_ddl_name"),
        CheckConstraint(
            "kind IN ('primary_key', 'unique', 'index', 'foreign_key')", name="ck_pending_ddl_kind"
        ),
    )
    Table(
        "target_deletions",
        md,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("entity_type", Text, nullable=False),
        Column("target_key", UUID(as_uuid=True), nullable=False),
        _ts("deleted_at", nullable=False, default_now=True),
        Index("idx_target_deletions_entity", "entity_type", "deleted_at"),
    )
    return md
