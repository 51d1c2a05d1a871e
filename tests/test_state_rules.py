"""Every validation rule of data-model.md is refused twice: by the models and by the database.

Each case is a valid row and a change that breaks one rule. The database is written with
plain INSERTs (no isthmus code in between) and must raise IntegrityError naming the
constraint; the model built from the same values must raise a ValidationError that names
the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from isthmus.errors import MappingConflict, RuleViolation
from isthmus.state.models import (
    ControlRow,
    DataDifferential,
    LegacyIdMapping,
    MigrationCheckpoint,
    MigrationValidationReport,
    SynchronizationJob,
    check_unique_mappings,
    validated,
)
from isthmus.state.tables import build_metadata
from isthmus.urls import DatabaseURL
from test_state_support import migrated_schema, state_engine

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

JOB = {
    "job_name": "nightly",
    "job_type": "manual_sync",
    "entities_to_sync": ["offices", "doctors"],
    "sync_direction": "source_to_target",
    "conflict_resolution": "source_wins",
    "max_records_per_batch": 500,
}
CHECKPOINT = {
    "operation_type": "differential_migration",
    "entity_type": "offices",
    "batch_size": 100,
}
DIFFERENTIAL = {
    "source_table": "offices",
    "target_table": "offices",
    "comparison_type": "missing_records",
    "legacy_ids": [1, 2, 3],
    "record_count": 3,
}
REPORT = {
    "validation_type": "data_integrity",
    "source_entity": "offices",
    "target_entity": "offices",
    "records_validated": 10,
    "validation_passed": True,
    "discrepancies_found": 0,
    "execution_time_ms": 12,
    "generated_at": T0,
    "expires_at": T0 + timedelta(days=1),
}
MAPPING = {"entity_type": "doctors", "legacy_id": 7, "uuid_id": UUID(int=7)}


@dataclass(frozen=True)
class Case:
    model: type[ControlRow]
    base: dict[str, Any]
    change: dict[str, Any]
    constraint: str
    field: str  # what the Python error must name

    @property
    def row(self) -> dict[str, Any]:
        return {**self.base, **self.change}


CASES: dict[str, Case] = {
    # synchronization_jobs
    "next_run_equal_last_run": Case(
        SynchronizationJob,
        JOB,
        {"last_run_at": T0, "next_run_at": T0},
        "ck_sync_job_next_after_last",
        "next_run_at",
    ),
    "next_run_before_last_run": Case(
        SynchronizationJob,
        JOB,
        {"last_run_at": T0, "next_run_at": T0 - timedelta(seconds=1)},
        "ck_sync_job_next_after_last",
        "next_run_at",
    ),
    "success_rate_above_100": Case(
        SynchronizationJob,
        JOB,
        {"success_rate": 100.01},
        "ck_sync_job_success_rate",
        "success_rate",
    ),
    "success_rate_below_0": Case(
        SynchronizationJob, JOB, {"success_rate": -0.01}, "ck_sync_job_success_rate", "success_rate"
    ),
    "scheduled_without_schedule": Case(
        SynchronizationJob,
        JOB,
        {"job_type": "scheduled_sync"},
        "ck_sync_job_schedule_required",
        "schedule_config",
    ),
    "scheduled_with_empty_schedule": Case(
        SynchronizationJob,
        JOB,
        {"job_type": "scheduled_sync", "schedule_config": {}},
        "ck_sync_job_schedule_required",
        "schedule_config",
    ),
    "no_entities": Case(
        SynchronizationJob, JOB, {"entities_to_sync": []}, "ck_sync_job_entities_array", "entities"
    ),
    "empty_entity_name": Case(
        SynchronizationJob,
        JOB,
        {"entities_to_sync": ["offices", " "]},
        "ck_sync_job_entities_array",
        "entities_to_sync",
    ),
    "entity_not_a_string": Case(
        SynchronizationJob,
        JOB,
        {"entities_to_sync": ["offices", 5]},
        "ck_sync_job_entities_array",
        "entities_to_sync",
    ),
    "entities_not_an_array": Case(
        SynchronizationJob,
        JOB,
        {"entities_to_sync": {"offices": True}},
        "ck_sync_job_entities_array",
        "entities_to_sync",
    ),
    "job_batch_zero": Case(
        SynchronizationJob,
        JOB,
        {"max_records_per_batch": 0},
        "ck_sync_job_batch_positive",
        "max_records_per_batch",
    ),
    # migration_checkpoints
    "processed_above_total": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"records_processed": 11, "records_total": 10},
        "ck_checkpoint_processed_le_total",
        "records_processed",
    ),
    "completed_at_equal_started_at": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"status": "completed", "started_at": T0, "completed_at": T0},
        "ck_checkpoint_completed_after_started",
        "completed_at",
    ),
    "completed_without_start": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"status": "completed", "completed_at": T0},
        "ck_checkpoint_completed_after_started",
        "completed_at",
    ),
    "failed_without_error": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"status": "failed"},
        "ck_checkpoint_failed_has_error",
        "error_message",
    ),
    "failed_with_blank_error": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"status": "failed", "error_message": "  "},
        "ck_checkpoint_failed_has_error",
        "error_message",
    ),
    "processed_negative": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"records_processed": -1},
        "ck_checkpoint_processed_nonnegative",
        "records_processed",
    ),
    "checkpoint_batch_zero": Case(
        MigrationCheckpoint,
        CHECKPOINT,
        {"batch_size": 0},
        "ck_checkpoint_batch_positive",
        "batch_size",
    ),
    # data_differentials
    "count_differs_from_ids": Case(
        DataDifferential,
        DIFFERENTIAL,
        {"record_count": 2},
        "ck_differential_count_matches_ids",
        "record_count",
    ),
    "ids_not_an_array": Case(
        DataDifferential,
        DIFFERENTIAL,
        {"legacy_ids": {"1": 1}, "record_count": 1},
        "ck_differential_count_matches_ids",
        "legacy_ids",
    ),
    "resolved_without_time": Case(
        DataDifferential,
        DIFFERENTIAL,
        {"resolved": True},
        "ck_differential_resolved_at",
        "resolved_at",
    ),
    # migration_validation_reports
    "passed_with_discrepancies": Case(
        MigrationValidationReport,
        REPORT,
        {"discrepancies_found": 1, "discrepancy_details": {"missing": [1]}},
        "ck_report_passed_no_discrepancies",
        "discrepancies_found",
    ),
    "discrepancies_without_details": Case(
        MigrationValidationReport,
        REPORT,
        {"validation_passed": False, "discrepancies_found": 2},
        "ck_report_details_required",
        "discrepancy_details",
    ),
    "discrepancies_with_empty_details": Case(
        MigrationValidationReport,
        REPORT,
        {"validation_passed": False, "discrepancies_found": 2, "discrepancy_details": {}},
        "ck_report_details_required",
        "discrepancy_details",
    ),
    "expires_at_equal_generated_at": Case(
        MigrationValidationReport,
        REPORT,
        {"expires_at": T0},
        "ck_report_expires_after_generated",
        "expires_at",
    ),
    "expires_before_generated": Case(
        MigrationValidationReport,
        REPORT,
        {"expires_at": T0 - timedelta(hours=1)},
        "ck_report_expires_after_generated",
        "expires_at",
    ),
    "execution_time_zero": Case(
        MigrationValidationReport,
        REPORT,
        {"execution_time_ms": 0},
        "ck_report_execution_time_positive",
        "execution_time_ms",
    ),
    "execution_time_negative": Case(
        MigrationValidationReport,
        REPORT,
        {"execution_time_ms": -5},
        "ck_report_execution_time_positive",
        "execution_time_ms",
    ),
    # legacy_id_mappings
    "mapping_in_the_future": Case(
        LegacyIdMapping,
        MAPPING,
        {"migration_timestamp": datetime.now(UTC) + timedelta(hours=1)},
        "ck_mapping_timestamp_not_future",
        "migration_timestamp",
    ),
    "validated_without_checksum": Case(
        LegacyIdMapping,
        MAPPING,
        {"validation_status": "validated"},
        "ck_mapping_checksum_for_validation",
        "checksum",
    ),
    "validated_with_empty_checksum": Case(
        LegacyIdMapping,
        MAPPING,
        {"validation_status": "validated", "checksum": ""},
        "ck_mapping_checksum_for_validation",
        "checksum",
    ),
}


@pytest.fixture(scope="module")
def engine(pg_url: DatabaseURL) -> Iterator[sa.Engine]:
    engine = state_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def tables(engine: sa.Engine) -> dict[str, sa.Table]:
    schema = migrated_schema(engine)
    return {t.name: t for t in build_metadata(schema).tables.values()}


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as conn:
        transaction = conn.begin()
        yield conn
        transaction.rollback()


def raw_insert(conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> None:
    with conn.begin_nested():
        conn.execute(table.insert().values(row))


def constraint_of(exc: sa.exc.IntegrityError) -> str | None:
    assert isinstance(exc.orig, psycopg.errors.IntegrityError)
    return exc.orig.diag.constraint_name


@pytest.mark.parametrize("name", list(CASES))
def test_the_database_refuses(name: str, conn: sa.Connection, tables: dict[str, sa.Table]) -> None:
    case = CASES[name]
    table = tables[case.model.table]
    raw_insert(conn, table, case.base)  # the valid row goes in
    conn.execute(table.delete())
    with pytest.raises(sa.exc.IntegrityError) as info:
        raw_insert(conn, table, case.row)
    assert constraint_of(info.value) == case.constraint


@pytest.mark.parametrize("name", list(CASES))
def test_the_model_refuses(name: str) -> None:
    case = CASES[name]
    case.model.model_validate(case.base)
    with pytest.raises(ValidationError) as info:
        case.model.model_validate(case.row)
    assert case.field in str(info.value)
    with pytest.raises(RuleViolation) as one_line:
        validated(case.model, case.row)
    message = str(one_line.value)
    assert message.startswith(f"{case.model.table}: ")
    assert case.field in message
    assert "\n" not in message


def test_model_messages_name_field_and_value() -> None:
    with pytest.raises(RuleViolation) as info:
        validated(MigrationCheckpoint, {**CHECKPOINT, "records_processed": 11, "records_total": 10})
    assert str(info.value) == (
        "migration_checkpoints: records_processed 11 must be <= records_total 10 "
        "(checkpoint offices)"
    )
    with pytest.raises(RuleViolation) as info:
        validated(SynchronizationJob, {**JOB, "success_rate": 150})
    assert str(info.value) == (
        "synchronization_jobs: success_rate 150 must be between 0.00 and 100.00"
    )
    with pytest.raises(RuleViolation) as info:
        validated(SynchronizationJob, {**JOB, "job_type": "weekly"})
    assert "job_type 'weekly'" in str(info.value)


def test_entities_must_be_known_entity_names() -> None:
    known = {"offices", "doctors", "patients"}
    validated(SynchronizationJob, JOB, context={"known_entities": known})
    with pytest.raises(RuleViolation) as info:
        validated(
            SynchronizationJob,
            {**JOB, "entities_to_sync": ["offices", "dentists"]},
            context={"known_entities": known},
        )
    assert str(info.value) == (
        "synchronization_jobs: entities_to_sync: 'dentists' is not a known entity "
        "(known: doctors, offices, patients)"
    )


def test_strategy_must_match_the_jobs_conflict_rule() -> None:
    context = {"conflict_resolution": "manual", "job_name": "nightly"}
    for ok in ("manual_review", "skip"):
        validated(DataDifferential, {**DIFFERENTIAL, "resolution_strategy": ok}, context=context)
    with pytest.raises(RuleViolation) as info:
        validated(
            DataDifferential,
            {**DIFFERENTIAL, "resolution_strategy": "source_wins"},
            context=context,
        )
    assert str(info.value) == (
        "data_differentials: resolution_strategy 'source_wins' is inconsistent with "
        "conflict_resolution manual of job nightly (allowed: manual_review, skip)"
    )


def test_the_database_refuses_an_inconsistent_strategy(
    conn: sa.Connection, tables: dict[str, sa.Table]
) -> None:
    job_id, checkpoint_id = uuid4(), uuid4()
    raw_insert(conn, tables["synchronization_jobs"], {**JOB, "id": job_id})
    raw_insert(
        conn, tables["migration_checkpoints"], {**CHECKPOINT, "id": checkpoint_id, "job_id": job_id}
    )
    differentials = tables["data_differentials"]
    for ok in ("source_wins", "skip"):
        raw_insert(
            conn,
            differentials,
            {**DIFFERENTIAL, "checkpoint_id": checkpoint_id, "resolution_strategy": ok},
        )
    for bad in ("target_wins", "manual_review"):
        with pytest.raises(sa.exc.IntegrityError) as info:
            raw_insert(
                conn,
                differentials,
                {**DIFFERENTIAL, "checkpoint_id": checkpoint_id, "resolution_strategy": bad},
            )
        assert constraint_of(info.value) == "ck_differential_strategy_matches_job"
        assert (
            f"resolution_strategy '{bad}' is inconsistent with conflict_resolution "
            "source_wins of job nightly (allowed: source_wins, skip)"
        ) in str(info.value)
    # without a job, any strategy goes
    raw_insert(conn, differentials, {**DIFFERENTIAL, "resolution_strategy": "target_wins"})
    # and an update cannot sneak one in
    with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
        conn.execute(
            differentials.update()
            .where(differentials.c.checkpoint_id == checkpoint_id)
            .values(resolution_strategy="target_wins")
        )


@pytest.mark.parametrize(
    ("second", "constraint"),
    [
        ({"uuid_id": UUID(int=8)}, "idx_legacy_mapping_entity_legacy"),
        ({"legacy_id": 8}, "idx_legacy_mapping_entity_uuid"),
    ],
)
def test_mappings_are_unique_both_ways(
    second: dict[str, Any], constraint: str, conn: sa.Connection, tables: dict[str, sa.Table]
) -> None:
    table = tables["legacy_id_mappings"]
    raw_insert(conn, table, MAPPING)
    raw_insert(conn, table, {**MAPPING, "entity_type": "patients"})  # another entity: fine
    with pytest.raises(sa.exc.IntegrityError) as info:
        raw_insert(conn, table, {**MAPPING, **second})
    assert constraint_of(info.value) == constraint

    first = LegacyIdMapping.model_validate(MAPPING)
    check_unique_mappings([first, LegacyIdMapping.model_validate({**MAPPING, "entity_type": "x"})])
    with pytest.raises(MappingConflict, match=r"legacy_id_mappings: doctors (legacy_id 7|uuid_id)"):
        check_unique_mappings([first, LegacyIdMapping.model_validate({**MAPPING, **second})])


def test_mapping_timestamp_in_the_future_is_only_judged_on_writing() -> None:
    future = {**MAPPING, "migration_timestamp": datetime.now(UTC) + timedelta(minutes=5)}
    with pytest.raises(ValidationError, match="must not be in the future"):
        LegacyIdMapping.model_validate(future)
    LegacyIdMapping.model_validate(future, context={"from_db": True})


def test_imported_mappings_have_no_checksum_until_validated() -> None:
    LegacyIdMapping.model_validate({**MAPPING, "validation_status": "pending"})
    LegacyIdMapping.model_validate({**MAPPING, "validation_status": "error"})
    LegacyIdMapping.model_validate({**MAPPING, "validation_status": "validated", "checksum": "ab"})


def test_enums_match_the_tables() -> None:
    from isthmus.state import enums, tables

    pairs = {
        enums.OperationType: tables.OPERATION_TYPES,
        enums.CheckpointStatus: tables.CHECKPOINT_STATUSES,
        enums.ComparisonType: tables.COMPARISON_TYPES,
        enums.ResolutionStrategy: tables.RESOLUTION_STRATEGIES,
        enums.JobType: tables.JOB_TYPES,
        enums.SyncDirection: tables.SYNC_DIRECTIONS,
        enums.ConflictResolution: tables.CONFLICT_RESOLUTIONS,
        enums.JobStatus: tables.JOB_STATUSES,
        enums.ValidationType: tables.VALIDATION_TYPES,
        enums.MappingValidationStatus: tables.MAPPING_VALIDATION_STATUSES,
    }
    for enum, values in pairs.items():
        assert tuple(member.value for member in enum) == values, enum.__name__
