"""The five control tables of data-model.md: types, tables, rules, indexes, triggers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: every operation is written out here, not derived from tables.py, so that later
revisions start from what databases really hold. The drift test checks that a database
at head matches tables.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ENUMS: dict[str, tuple[str, ...]] = {
    "operation_type": ("differential_migration", "sync_operation", "validation"),
    "checkpoint_status": ("pending", "in_progress", "completed", "failed", "paused"),
    "comparison_type": ("missing_records", "conflicted_records", "deleted_records"),
    "resolution_strategy": ("source_wins", "target_wins", "manual_review", "skip"),
    "job_type": ("scheduled_sync", "manual_sync", "differential_migration"),
    "sync_direction": ("source_to_target", "bidirectional"),
    "conflict_resolution": ("source_wins", "target_wins", "manual"),
    "job_status": ("scheduled", "running", "completed", "failed", "paused", "cancelled"),
    "validation_type": (
        "data_integrity",
        "relationship_integrity",
        "completeness_check",
        "performance_check",
    ),
    "mapping_validation_status": ("pending", "validated", "error"),
}

TABLES = (
    "legacy_id_mappings",
    "migration_validation_reports",
    "data_differentials",
    "migration_checkpoints",
    "synchronization_jobs",
)
FUNCTIONS = (
    "isthmus_set_updated_at",
    "isthmus_checkpoint_transition",
    "isthmus_job_transition",
    "isthmus_differential_strategy",
)


def state_schema() -> str:
    """The schema's name; isthmus.state.schema checked that it is a plain identifier."""
    return str(context.config.attributes["state_schema"])


def _enum(name: str, schema: str) -> pg.ENUM:
    return pg.ENUM(*ENUMS[name], name=name, schema=schema, create_type=False)


def _uuid_pk() -> sa.Column[object]:
    return sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )


def _ts(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if default_now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _metadata() -> sa.Column[object]:
    return sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"))


def upgrade() -> None:
    s = state_schema()
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
    bind = op.get_bind()
    for name, values in ENUMS.items():
        pg.ENUM(*values, name=name, schema=s).create(bind, checkfirst=False)
    _create_tables(s)
    _create_indexes(s)
    _create_triggers(s)


def _create_tables(s: str) -> None:
    op.create_table(
        "synchronization_jobs",
        _uuid_pk(),
        sa.Column("job_name", sa.Text, nullable=False),
        sa.Column("job_type", _enum("job_type", s), nullable=False),
        sa.Column("schedule_config", pg.JSONB, nullable=True),
        sa.Column("entities_to_sync", pg.JSONB, nullable=False),
        sa.Column("sync_direction", _enum("sync_direction", s), nullable=False),
        sa.Column("conflict_resolution", _enum("conflict_resolution", s), nullable=False),
        sa.Column("max_records_per_batch", sa.Integer, nullable=False),
        sa.Column("status", _enum("job_status", s), nullable=False, server_default="scheduled"),
        _ts("last_run_at"),
        _ts("next_run_at"),
        sa.Column("total_records_synced", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("success_rate", sa.Numeric(5, 2), nullable=True),
        sa.Column("average_duration_ms", sa.Integer, nullable=True),
        _ts("created_at", nullable=False, default_now=True),
        _ts("updated_at", nullable=False, default_now=True),
        _metadata(),
        sa.UniqueConstraint("job_name", name="uq_sync_job_name"),
        sa.CheckConstraint(
            "next_run_at IS NULL OR last_run_at IS NULL OR next_run_at > last_run_at",
            name="ck_sync_job_next_after_last",
        ),
        sa.CheckConstraint(
            "success_rate IS NULL OR success_rate BETWEEN 0.00 AND 100.00",
            name="ck_sync_job_success_rate",
        ),
        sa.CheckConstraint(
            "job_type <> 'scheduled_sync' OR (schedule_config IS NOT NULL"
            " AND jsonb_typeof(schedule_config) = 'object' AND schedule_config <> '{}'::jsonb)",
            name="ck_sync_job_schedule_required",
        ),
        sa.CheckConstraint(
            "CASE WHEN jsonb_typeof(entities_to_sync) = 'array'"
            " THEN jsonb_array_length(entities_to_sync) > 0 AND NOT jsonb_path_exists("
            """entities_to_sync, '$[*] ? (@.type() != "string" || @ like_regex "^[[:space:]]*$")')"""
            " ELSE false END",
            name="ck_sync_job_entities_array",
        ),
        sa.CheckConstraint("max_records_per_batch > 0", name="ck_sync_job_batch_positive"),
        sa.CheckConstraint("total_records_synced >= 0", name="ck_sync_job_total_nonnegative"),
        sa.CheckConstraint(
            "average_duration_ms IS NULL OR average_duration_ms >= 0", name="ck_sync_job_duration"
        ),
        schema=s,
    )
    op.create_table(
        "migration_checkpoints",
        _uuid_pk(),
        sa.Column(
            "job_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{s}.synchronization_jobs.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("operation_type", _enum("operation_type", s), nullable=False),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("last_processed_id", sa.Text, nullable=True),
        sa.Column("records_processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("records_total", sa.BigInteger, nullable=True),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column(
            "status", _enum("checkpoint_status", s), nullable=False, server_default="pending"
        ),
        _ts("started_at"),
        _ts("completed_at"),
        sa.Column("error_message", sa.Text, nullable=True),
        _metadata(),
        _ts("created_at", nullable=False, default_now=True),
        _ts("updated_at", nullable=False, default_now=True),
        sa.CheckConstraint(
            "records_total IS NULL OR records_processed <= records_total",
            name="ck_checkpoint_processed_le_total",
        ),
        sa.CheckConstraint(
            "completed_at IS NULL OR (started_at IS NOT NULL AND completed_at > started_at)",
            name="ck_checkpoint_completed_after_started",
        ),
        sa.CheckConstraint(
            "status <> 'failed' OR (error_message IS NOT NULL AND btrim(error_message) <> '')",
            name="ck_checkpoint_failed_has_error",
        ),
        sa.CheckConstraint("records_processed >= 0", name="ck_checkpoint_processed_nonnegative"),
        sa.CheckConstraint("batch_size > 0", name="ck_checkpoint_batch_positive"),
        schema=s,
    )
    op.create_table(
        "data_differentials",
        _uuid_pk(),
        sa.Column(
            "checkpoint_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{s}.migration_checkpoints.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("source_table", sa.Text, nullable=False),
        sa.Column("target_table", sa.Text, nullable=False),
        sa.Column("comparison_type", _enum("comparison_type", s), nullable=False),
        sa.Column("legacy_ids", pg.JSONB, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column(
            "comparison_criteria",
            pg.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column(
            "resolution_strategy",
            _enum("resolution_strategy", s),
            nullable=False,
            server_default="manual_review",
        ),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default="false"),
        _ts("resolved_at"),
        _ts("created_at", nullable=False, default_now=True),
        _metadata(),
        sa.CheckConstraint(
            "CASE WHEN jsonb_typeof(legacy_ids) = 'array'"
            " THEN record_count = jsonb_array_length(legacy_ids) ELSE false END",
            name="ck_differential_count_matches_ids",
        ),
        sa.CheckConstraint(
            "NOT resolved OR resolved_at IS NOT NULL", name="ck_differential_resolved_at"
        ),
        schema=s,
    )
    op.create_table(
        "migration_validation_reports",
        _uuid_pk(),
        sa.Column(
            "job_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{s}.synchronization_jobs.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "checkpoint_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(f"{s}.migration_checkpoints.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("validation_type", _enum("validation_type", s), nullable=False),
        sa.Column("source_entity", sa.Text, nullable=False),
        sa.Column("target_entity", sa.Text, nullable=False),
        sa.Column("records_validated", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("validation_passed", sa.Boolean, nullable=False),
        sa.Column("discrepancies_found", sa.Integer, nullable=False, server_default="0"),
        sa.Column("discrepancy_details", pg.JSONB, nullable=True),
        sa.Column(
            "validation_criteria",
            pg.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("execution_time_ms", sa.Integer, nullable=False),
        _ts("generated_at", nullable=False, default_now=True),
        _ts("expires_at", nullable=False),
        _metadata(),
        sa.CheckConstraint(
            "NOT validation_passed OR discrepancies_found = 0",
            name="ck_report_passed_no_discrepancies",
        ),
        sa.CheckConstraint(
            "discrepancies_found = 0 OR (discrepancy_details IS NOT NULL"
            " AND discrepancy_details NOT IN ('null'::jsonb, '{}'::jsonb, '[]'::jsonb))",
            name="ck_report_details_required",
        ),
        sa.CheckConstraint("expires_at > generated_at", name="ck_report_expires_after_generated"),
        sa.CheckConstraint("execution_time_ms > 0", name="ck_report_execution_time_positive"),
        sa.CheckConstraint("discrepancies_found >= 0", name="ck_report_discrepancies_nonnegative"),
        sa.CheckConstraint("records_validated >= 0", name="ck_report_records_nonnegative"),
        schema=s,
    )
    op.create_table(
        "legacy_id_mappings",
        _uuid_pk(),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("legacy_id", sa.BigInteger, nullable=False),
        sa.Column("uuid_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("migration_batch", sa.Text, nullable=True),
        _ts("migration_timestamp", nullable=False, default_now=True),
        sa.Column(
            "validation_status",
            _enum("mapping_validation_status", s),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("source_table", sa.Text, nullable=True),
        sa.Column("target_table", sa.Text, nullable=True),
        sa.Column("checksum", sa.Text, nullable=True),
        _metadata(),
        # The specification lists both as indexes; a unique constraint is one.
        sa.UniqueConstraint("entity_type", "legacy_id", name="idx_legacy_mapping_entity_legacy"),
        sa.UniqueConstraint("entity_type", "uuid_id", name="idx_legacy_mapping_entity_uuid"),
        sa.CheckConstraint(
            "migration_timestamp <= clock_timestamp()", name="ck_mapping_timestamp_not_future"
        ),
        sa.CheckConstraint(
            "validation_status <> 'validated' OR (checksum IS NOT NULL AND checksum <> '')",
            name="ck_mapping_checksum_for_validation",
        ),
        schema=s,
    )


def _create_indexes(s: str) -> None:
    index = op.create_index
    index("idx_sync_job_status", "synchronization_jobs", ["status", "next_run_at"], schema=s)
    index(
        "idx_sync_job_type_schedule",
        "synchronization_jobs",
        ["job_type", "schedule_config"],
        schema=s,
    )
    index(
        "idx_sync_job_entities_gin",
        "synchronization_jobs",
        ["entities_to_sync"],
        schema=s,
        postgresql_using="gin",
    )
    index(
        "idx_checkpoint_status_entity", "migration_checkpoints", ["status", "entity_type"], schema=s
    )
    index(
        "idx_checkpoint_operation_type",
        "migration_checkpoints",
        ["operation_type", "created_at"],
        schema=s,
    )
    index("idx_checkpoint_job", "migration_checkpoints", ["job_id", "entity_type"], schema=s)
    index(
        "idx_checkpoint_metadata_gin",
        "migration_checkpoints",
        ["metadata"],
        schema=s,
        postgresql_using="gin",
    )
    index(
        "idx_differential_table_type",
        "data_differentials",
        ["source_table", "comparison_type"],
        schema=s,
    )
    index("idx_differential_resolved", "data_differentials", ["resolved", "created_at"], schema=s)
    index("idx_differential_checkpoint", "data_differentials", ["checkpoint_id"], schema=s)
    index(
        "idx_differential_legacy_ids_gin",
        "data_differentials",
        ["legacy_ids"],
        schema=s,
        postgresql_using="gin",
    )
    index(
        "idx_report_entity_type",
        "migration_validation_reports",
        ["source_entity", "validation_type", "generated_at"],
        schema=s,
    )
    index("idx_report_job", "migration_validation_reports", ["job_id"], schema=s)


_TRANSITION_FUNCTION = """
CREATE FUNCTION "{s}".{function}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    allowed text[] := CASE OLD.status::text {cases} ELSE ARRAY[]::text[] END;
BEGIN
    IF NOT (NEW.status::text = ANY (allowed)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = '{constraint}',
            SCHEMA = TG_TABLE_SCHEMA,
            TABLE = TG_TABLE_NAME,
            COLUMN = 'status',
            MESSAGE = format('{kind} %s: cannot go from %s to %s (allowed from %s: %s)',
                             OLD.{who}, OLD.status, NEW.status, OLD.status,
                             coalesce(nullif(array_to_string(allowed, ', '), ''), 'none'));
    END IF;
    RETURN NEW;
END
$body$;
CREATE TRIGGER {trigger} BEFORE UPDATE OF status ON "{s}".{table}
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION "{s}".{function}();
"""


_STRATEGY_FUNCTION = """
CREATE FUNCTION "{s}".isthmus_differential_strategy() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    rule text;
    job text;
    expected text;
BEGIN
    IF NEW.checkpoint_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT j.conflict_resolution::text, j.job_name INTO rule, job
      FROM "{s}".migration_checkpoints c
      JOIN "{s}".synchronization_jobs j ON j.id = c.job_id
     WHERE c.id = NEW.checkpoint_id;
    IF rule IS NULL THEN
        RETURN NEW;
    END IF;
    expected := CASE rule WHEN 'manual' THEN 'manual_review' ELSE rule END;
    IF NEW.resolution_strategy::text NOT IN (expected, 'skip') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = 'ck_differential_strategy_matches_job',
            SCHEMA = TG_TABLE_SCHEMA,
            TABLE = TG_TABLE_NAME,
            COLUMN = 'resolution_strategy',
            MESSAGE = format('data_differentials: resolution_strategy %L is inconsistent with '
                             'conflict_resolution %s of job %s (allowed: %s, skip)',
                             NEW.resolution_strategy, rule, job, expected);
    END IF;
    RETURN NEW;
END
$body$;
CREATE TRIGGER trg_differential_strategy
    BEFORE INSERT OR UPDATE OF resolution_strategy, checkpoint_id ON "{s}".data_differentials
    FOR EACH ROW EXECUTE FUNCTION "{s}".isthmus_differential_strategy();
"""


def _cases(machine: dict[str, tuple[str, ...]]) -> str:
    return " ".join(
        f"WHEN '{old}' THEN ARRAY[{', '.join(repr(n) for n in new)}]::text[]"
        for old, new in machine.items()
        if new
    )


def _create_triggers(s: str) -> None:
    op.execute(
        f"""
CREATE FUNCTION "{s}".isthmus_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- a row is last modified when it is created; later, by each update's own instant
    IF TG_OP = 'INSERT' THEN
        NEW.updated_at := NEW.created_at;
    ELSE
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$body$;
CREATE TRIGGER trg_checkpoint_updated_at BEFORE INSERT OR UPDATE ON "{s}".migration_checkpoints
    FOR EACH ROW EXECUTE FUNCTION "{s}".isthmus_set_updated_at();
CREATE TRIGGER trg_sync_job_updated_at BEFORE INSERT OR UPDATE ON "{s}".synchronization_jobs
    FOR EACH ROW EXECUTE FUNCTION "{s}".isthmus_set_updated_at();
"""
    )
    op.execute(
        _TRANSITION_FUNCTION.format(
            s=s,
            function="isthmus_checkpoint_transition",
            cases=_cases(
                {
                    "pending": ("in_progress",),
                    "in_progress": ("completed", "failed", "paused"),
                    "failed": ("in_progress",),
                    "paused": ("in_progress",),
                }
            ),
            constraint="ck_checkpoint_status_transition",
            kind="checkpoint",
            who="id",
            trigger="trg_checkpoint_status_transition",
            table="migration_checkpoints",
        )
    )
    op.execute(
        _TRANSITION_FUNCTION.format(
            s=s,
            function="isthmus_job_transition",
            cases=_cases(
                {
                    "scheduled": ("running",),
                    "running": ("completed", "failed", "paused", "cancelled"),
                    "completed": ("scheduled",),
                    "paused": ("running",),
                }
            ),
            constraint="ck_sync_job_status_transition",
            kind="job",
            who="job_name",
            trigger="trg_sync_job_status_transition",
            table="synchronization_jobs",
        )
    )
    op.execute(_STRATEGY_FUNCTION.replace("{s}", s))


def downgrade() -> None:
    s = state_schema()
    for table in TABLES:
        op.drop_table(table, schema=s)
    for function in FUNCTIONS:
        op.execute(f'DROP FUNCTION "{s}".{function}()')
    for name in ENUMS:
        op.execute(f'DROP TYPE "{s}".{name}')
