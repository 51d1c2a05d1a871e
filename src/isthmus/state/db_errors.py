"""What the database says when it refuses a control-table write, as one clear isthmus error.

A broken rule (CHECK constraint, unique key, foreign key, the transition and strategy
triggers) becomes a RuleViolation or IllegalTransition naming the table, the rule and the
constraint; anything else goes through ``pgconn.translate`` (transient or terminal).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg
from sqlalchemy import exc as sa_exc

from isthmus.dialects.pgconn import translate
from isthmus.errors import (
    IllegalTransition,
    IsthmusError,
    RuleViolation,
    TerminalDatabaseError,
    UsageError,
)
from isthmus.urls import mask_secrets


class NotFound(UsageError):
    """No control row with the name or id a caller gave."""


TRANSITION_CONSTRAINTS = ("ck_checkpoint_status_transition", "ck_sync_job_status_transition")
STRATEGY_CONSTRAINT = "ck_differential_strategy_matches_job"

RULES: Mapping[str, str] = {
    "uq_sync_job_name": "job_name must be unique",
    "ck_sync_job_next_after_last": "next_run_at must be later than last_run_at",
    "ck_sync_job_success_rate": "success_rate must be between 0.00 and 100.00",
    "ck_sync_job_schedule_required": (
        "schedule_config (a non-empty object) is required for job_type scheduled_sync"
    ),
    "ck_sync_job_entities_array": (
        "entities_to_sync must be a non-empty array of non-empty entity names"
    ),
    "ck_sync_job_batch_positive": "max_records_per_batch must be positive",
    "ck_sync_job_total_nonnegative": "total_records_synced must not be negative",
    "ck_sync_job_duration": "average_duration_ms must not be negative",
    "ck_checkpoint_processed_le_total": "records_processed must be <= records_total",
    "ck_checkpoint_completed_after_started": "completed_at must be later than started_at",
    "ck_checkpoint_failed_has_error": "error_message is required when status is failed",
    "ck_checkpoint_processed_nonnegative": "records_processed must not be negative",
    "ck_checkpoint_batch_positive": "batch_size must be positive",
    "ck_differential_count_matches_ids": "record_count must equal the length of legacy_ids",
    "ck_differential_resolved_at": "resolved_at is required when resolved is true",
    "ck_report_passed_no_discrepancies": (
        "discrepancies_found must be 0 when validation_passed is true"
    ),
    "ck_report_details_required": "discrepancy_details is required when discrepancies_found > 0",
    "ck_report_expires_after_generated": "expires_at must be later than generated_at",
    "ck_report_execution_time_positive": "execution_time_ms must be positive",
    "ck_report_discrepancies_nonnegative": "discrepancies_found must not be negative",
    "ck_report_records_nonnegative": "records_validated must not be negative",
    "idx_legacy_mapping_entity_legacy": "(entity_type, legacy_id) must be unique",
    "idx_legacy_mapping_entity_uuid": "(entity_type, uuid_id) must be unique",
    "ck_mapping_timestamp_not_future": "migration_timestamp must not be in the future",
    "ck_mapping_checksum_for_validation": "checksum is required when validation_status is validated",
}


def refusal(exc: BaseException, table: str) -> IsthmusError:
    """The isthmus error for a failed statement on ``table``."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(orig, psycopg.errors.IntegrityError):
        diag = orig.diag
        constraint = diag.constraint_name or ""
        primary = mask_secrets(diag.message_primary or str(orig).splitlines()[0])
        if constraint in TRANSITION_CONSTRAINTS:
            return IllegalTransition(primary)
        if constraint == STRATEGY_CONSTRAINT:
            return RuleViolation(primary)
        where = diag.table_name or table
        detail = diag.message_detail or ""
        if constraint in RULES:
            rule = RULES[constraint]
            if detail.startswith("Key ("):  # names the duplicate key, never row contents
                rule = f"{rule}: {mask_secrets(detail)}"
            return RuleViolation(f"{where}: {rule} (constraint {constraint})")
        if detail.startswith("Key ("):
            primary = mask_secrets(detail)
        return RuleViolation(f"{where}: {primary} (constraint {constraint or 'unnamed'})")
    if isinstance(orig, psycopg.Error):
        return translate(orig)
    return TerminalDatabaseError(f"PostgreSQL: {mask_secrets(str(orig).splitlines()[0])}")


@contextmanager
def refused_as_isthmus_error(table: str) -> Iterator[None]:
    """Re-raise a database refusal on ``table`` as a clear isthmus error."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        error = refusal(exc, table)
        raise error from exc
