"""StateStore round trips on a real PostgreSQL, and its refusals (Python first, then the database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
import sqlalchemy as sa

from isthmus.errors import IllegalTransition, RuleViolation, UsageError
from isthmus.state.db_errors import NotFound, refused_as_isthmus_error
from isthmus.state.models import (
    CheckpointStatus,
    JobStatus,
    ResolutionStrategy,
    SynchronizationJob,
)
from isthmus.state.store import DEFAULT_REPORT_TTL, StateStore
from isthmus.urls import DatabaseURL
from test_state_support import migrated_schema, state_engine

ENTITIES = {"offices", "doctors", "patients"}


@pytest.fixture(scope="module")
def engine(pg_url: DatabaseURL) -> Iterator[sa.Engine]:
    engine = state_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def store(engine: sa.Engine) -> StateStore:
    return StateStore(migrated_schema(engine))


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as conn:
        transaction = conn.begin()
        yield conn
        transaction.rollback()


def make_job(
    store: StateStore, conn: sa.Connection, name: str = "nightly", **kw: object
) -> SynchronizationJob:
    args: dict[str, object] = {
        "job_name": name,
        "job_type": "manual_sync",
        "entities": ["offices", "doctors"],
        "sync_direction": "source_to_target",
        "conflict_resolution": "source_wins",
        "max_records_per_batch": 500,
        **kw,
    }
    return store.create_job(conn, **args)  # type: ignore[arg-type]


# ---- jobs


def test_job_round_trip(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(
        store,
        conn,
        job_type="scheduled_sync",
        schedule_config={"cron": "0 * * * *"},
        metadata={"owner": "ops"},
        known_entities=ENTITIES,
    )
    assert job.status == JobStatus.SCHEDULED
    assert job.entities_to_sync == ["offices", "doctors"]
    assert job.total_records_synced == 0 and job.success_rate is None
    assert job.created_at == job.updated_at
    assert store.get_job(conn, "nightly") == job
    assert store.get_job(conn, job.id) == job
    assert store.get_job(conn, str(job.id)) == job
    make_job(store, conn, "another")
    assert [j.job_name for j in store.list_jobs(conn)] == ["another", "nightly"]
    assert store.list_jobs(conn, status="running") == []


def test_duplicate_job_name_is_refused_and_the_transaction_lives_on(
    store: StateStore, conn: sa.Connection
) -> None:
    make_job(store, conn)
    with pytest.raises(RuleViolation) as info:
        make_job(store, conn)
    assert str(info.value) == "synchronization_jobs: a job named 'nightly' already exists"
    assert len(store.list_jobs(conn)) == 1


def test_job_rules_are_checked_before_the_database(store: StateStore, conn: sa.Connection) -> None:
    with pytest.raises(RuleViolation, match="'dentists' is not a known entity"):
        make_job(store, conn, entities=["dentists"], known_entities=ENTITIES)
    with pytest.raises(RuleViolation, match="schedule_config None is required"):
        make_job(store, conn, job_type="scheduled_sync")
    with pytest.raises(NotFound) as info:
        store.get_job(conn, "nope")
    assert str(info.value) == f"no job named 'nope' in state schema {store.schema}"
    assert isinstance(info.value, UsageError)


def test_job_lifecycle(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    later = datetime.now(UTC) + timedelta(hours=1)
    for status in ("running", "paused", "running", "completed"):
        job = store.set_job_status(conn, job.id, status)
        assert job.status == status
    job = store.set_job_status(conn, "nightly", JobStatus.SCHEDULED, next_run_at=later)
    assert job.next_run_at == later
    assert job.updated_at > job.created_at

    with pytest.raises(IllegalTransition) as info:
        store.set_job_status(conn, job.id, "completed")
    assert str(info.value) == (
        "job nightly: cannot go from scheduled to completed (allowed from scheduled: running)"
    )
    assert store.get_job(conn, job.id).status == JobStatus.SCHEDULED
    with pytest.raises(TypeError, match="cannot set job_name"):
        store.set_job_status(conn, job.id, "running", job_name="x")


def test_record_job_run_keeps_running_statistics(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    t1 = datetime(2024, 1, 1, tzinfo=UTC)
    job = store.record_job_run(
        conn,
        job.id,
        records_synced=90,
        records_failed=10,
        duration_ms=100,
        next_run_at=t1 + timedelta(hours=1),
        ran_at=t1,
    )
    assert (job.total_records_synced, job.success_rate, job.average_duration_ms) == (
        90,
        Decimal("90.00"),
        100,
    )
    job = store.record_job_run(
        conn, job.id, records_synced=110, records_failed=0, duration_ms=301, ran_at=t1
    )
    assert job.total_records_synced == 200
    assert job.success_rate == Decimal("95.24")  # 200 of 210
    assert job.average_duration_ms == 201  # (100 + 301) / 2, rounded
    assert job.last_run_at == t1 and job.next_run_at is None
    assert job.metadata["run_count"] == 2 and job.metadata["records_failed_total"] == 10

    empty = make_job(store, conn, "empty")
    assert store.record_job_run(
        conn, empty.id, records_synced=0, records_failed=0, duration_ms=5
    ).success_rate == Decimal("100.00")

    with pytest.raises(RuleViolation, match=r"next_run_at .* must be later than last_run_at"):
        store.record_job_run(
            conn,
            job.id,
            records_synced=1,
            records_failed=0,
            duration_ms=1,
            next_run_at=t1,
            ran_at=t1,
        )
    with pytest.raises(RuleViolation, match="records_failed -1 must not be negative"):
        store.record_job_run(conn, job.id, records_synced=1, records_failed=-1, duration_ms=1)


# ---- checkpoints


def test_checkpoint_lifecycle_in_one_transaction(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    cp = store.create_checkpoint(
        conn,
        operation_type="differential_migration",
        entity_type="offices",
        batch_size=100,
        records_total=1000,
        job_id=job.id,
        metadata={"chunk": [1, 500]},
    )
    assert cp.status == CheckpointStatus.PENDING and cp.started_at is None
    assert store.get_checkpoint(conn, cp.id) == cp

    cp = store.set_checkpoint_status(conn, cp.id, "in_progress")
    assert cp.started_at is not None
    store.record_progress(conn, cp.id, last_processed_id=100, records_processed=100)
    store.record_progress(
        conn, cp.id, last_processed_id="250", records_processed=250, records_total=1200
    )
    cp = store.get_checkpoint(conn, cp.id)
    assert (cp.last_processed_id, cp.records_processed, cp.records_total) == ("250", 250, 1200)

    started = cp.started_at
    cp = store.set_checkpoint_status(conn, cp.id, "completed")
    assert cp.started_at == started
    assert cp.completed_at is not None and started is not None and cp.completed_at > started

    with pytest.raises(IllegalTransition, match=r"cannot go from completed to in_progress"):
        store.set_checkpoint_status(conn, cp.id, "in_progress")


def test_pending_straight_to_completed_is_refused(store: StateStore, conn: sa.Connection) -> None:
    cp = store.create_checkpoint(
        conn, operation_type="validation", entity_type="offices", batch_size=10
    )
    with pytest.raises(IllegalTransition) as info:
        store.set_checkpoint_status(conn, cp.id, "completed")
    assert str(info.value) == (
        f"checkpoint {cp.id}: cannot go from pending to completed "
        "(allowed from pending: in_progress)"
    )


def test_failure_needs_a_message_and_a_retry_clears_it(
    store: StateStore, conn: sa.Connection
) -> None:
    cp = store.create_checkpoint(
        conn, operation_type="sync_operation", entity_type="d", batch_size=5
    )
    cp = store.set_checkpoint_status(conn, cp.id, "in_progress")
    with pytest.raises(RuleViolation, match="error_message None is required when status is failed"):
        store.set_checkpoint_status(conn, cp.id, "failed")
    cp = store.set_checkpoint_status(conn, cp.id, "failed", error_message="target refused a row")
    assert cp.error_message == "target refused a row"
    cp = store.set_checkpoint_status(conn, cp.id, "in_progress")
    assert cp.error_message is None and cp.status == "in_progress"
    cp = store.set_checkpoint_status(conn, cp.id, "paused")
    cp = store.set_checkpoint_status(conn, cp.id, "in_progress")
    assert cp.status == CheckpointStatus.IN_PROGRESS


def test_progress_rules(store: StateStore, conn: sa.Connection) -> None:
    cp = store.create_checkpoint(
        conn, operation_type="validation", entity_type="o", batch_size=5, records_total=10
    )
    with pytest.raises(RuleViolation, match="records_processed 11 must be <= records_total 10"):
        store.record_progress(
            conn, cp.id, last_processed_id=11, records_processed=11, records_total=10
        )
    # Python does not know the stored total: the database refuses, in the same words
    with pytest.raises(RuleViolation) as info, conn.begin_nested():
        store.record_progress(conn, cp.id, last_processed_id=11, records_processed=11)
    assert str(info.value) == (
        "migration_checkpoints: records_processed must be <= records_total "
        "(constraint ck_checkpoint_processed_le_total)"
    )
    with pytest.raises(NotFound, match="no checkpoint with id"):
        store.record_progress(conn, uuid4(), last_processed_id=1, records_processed=1)


def test_latest_and_list_checkpoints(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    first = store.create_checkpoint(
        conn, operation_type="differential_migration", entity_type="offices", batch_size=5
    )
    second = store.create_checkpoint(
        conn, operation_type="differential_migration", entity_type="offices", batch_size=5
    )
    of_job = store.create_checkpoint(
        conn,
        operation_type="differential_migration",
        entity_type="offices",
        batch_size=5,
        job_id=job.id,
    )
    store.create_checkpoint(conn, operation_type="validation", entity_type="offices", batch_size=5)
    latest = store.latest_checkpoint(conn, "differential_migration", "offices")
    assert latest == second
    assert store.latest_checkpoint(conn, "differential_migration", "offices", job.id) == of_job
    assert store.latest_checkpoint(conn, "sync_operation", "offices") is None
    listed = store.list_checkpoints(
        conn, entity_type="offices", operation_type="differential_migration"
    )
    assert [c.id for c in listed] == [of_job.id, second.id, first.id]
    assert store.list_checkpoints(conn, job_id=job.id) == [of_job]
    assert store.list_checkpoints(conn, status="completed") == []
    assert len(store.list_checkpoints(conn, limit=2)) == 2


# ---- differentials


def test_differential_round_trip_and_strategy_rules(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)  # conflict_resolution source_wins
    cp = store.create_checkpoint(
        conn, operation_type="sync_operation", entity_type="offices", batch_size=5, job_id=job.id
    )
    d = store.add_differential(
        conn,
        source_table="offices",
        target_table="offices",
        comparison_type="conflicted_records",
        legacy_ids=[3, 1, 2],
        checkpoint_id=cp.id,
        comparison_criteria={"by": "checksum"},
    )
    assert d.resolution_strategy == ResolutionStrategy.SOURCE_WINS  # the job's rule
    assert (d.record_count, d.legacy_ids, d.resolved) == (3, [3, 1, 2], False)
    skip = store.add_differential(
        conn,
        source_table="offices",
        target_table="offices",
        comparison_type="missing_records",
        legacy_ids=[9],
        checkpoint_id=cp.id,
        resolution_strategy="skip",
    )
    with pytest.raises(RuleViolation) as info:
        store.add_differential(
            conn,
            source_table="offices",
            target_table="offices",
            comparison_type="missing_records",
            legacy_ids=[9],
            checkpoint_id=cp.id,
            resolution_strategy="target_wins",
        )
    assert str(info.value) == (
        "data_differentials: resolution_strategy 'target_wins' is inconsistent with "
        "conflict_resolution source_wins of job nightly (allowed: source_wins, skip)"
    )
    alone = store.add_differential(
        conn,
        source_table="doctors",
        target_table="doctors",
        comparison_type="deleted_records",
        legacy_ids=[],
    )
    assert alone.resolution_strategy == "manual_review" and alone.record_count == 0
    with pytest.raises(RuleViolation, match="record_count 2 must equal the length of legacy_ids"):
        store.add_differential(
            conn,
            source_table="doctors",
            target_table="doctors",
            comparison_type="deleted_records",
            legacy_ids=[1],
            record_count=2,
        )

    assert store.list_differentials(conn, checkpoint_id=cp.id) == [d, skip]
    assert store.list_differentials(conn, job_id=job.id, comparison_type="missing_records") == [
        skip
    ]
    assert store.list_differentials(conn, source_table="doctors") == [alone]
    assert store.list_differentials(conn, resolution_strategy="skip") == [skip]

    resolved = store.mark_differential_resolved(conn, d.id, metadata={"winner": "source"})
    assert resolved.resolved and resolved.resolved_at is not None
    assert resolved.metadata == {"winner": "source"}
    again = store.mark_differential_resolved(conn, d.id)
    assert again.resolved_at == resolved.resolved_at
    assert store.list_differentials(conn, resolved=False) == [skip, alone]
    assert store.get_differential(conn, d.id) == again
    with pytest.raises(NotFound):
        store.mark_differential_resolved(conn, uuid4())
    with pytest.raises(NotFound, match="no checkpoint with id"):
        store.add_differential(
            conn,
            source_table="a",
            target_table="a",
            comparison_type="missing_records",
            legacy_ids=[],
            checkpoint_id=uuid4(),
        )


# ---- reports


def test_report_round_trip(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    ok = store.add_report(
        conn,
        validation_type="completeness_check",
        source_entity="offices",
        target_entity="offices",
        records_validated=100,
        validation_passed=True,
        execution_time_ms=42,
        job_id=job.id,
        validation_criteria={"counts": True},
    )
    assert ok.expires_at - ok.generated_at == DEFAULT_REPORT_TTL
    assert store.get_report(conn, ok.id) == ok
    bad = store.add_report(
        conn,
        validation_type="data_integrity",
        source_entity="doctors",
        target_entity="doctors",
        records_validated=100,
        validation_passed=False,
        discrepancies_found=2,
        discrepancy_details={"mismatched": [4, 5]},
        execution_time_ms=7,
        generated_at=datetime.now(UTC) - timedelta(days=30),
    )
    assert store.list_reports(conn) == [ok, bad]
    assert store.list_reports(conn, passed=False) == [bad]
    assert store.list_reports(conn, include_expired=False) == [ok]
    assert store.list_reports(conn, job_id=job.id, validation_type="completeness_check") == [ok]
    assert store.list_reports(conn, source_entity="doctors") == [bad]

    with pytest.raises(
        RuleViolation, match="discrepancies_found 1 must be 0 when validation_passed"
    ):
        store.add_report(
            conn,
            validation_type="data_integrity",
            source_entity="x",
            target_entity="x",
            records_validated=1,
            validation_passed=True,
            discrepancies_found=1,
            discrepancy_details={"a": 1},
            execution_time_ms=1,
        )
    with pytest.raises(RuleViolation, match="execution_time_ms 0 must be positive"):
        store.add_report(
            conn,
            validation_type="performance_check",
            source_entity="x",
            target_entity="x",
            records_validated=1,
            validation_passed=True,
            execution_time_ms=0,
        )
    with pytest.raises(NotFound):
        store.get_report(conn, uuid4())


# ---- what the database says, translated


def test_database_refusals_become_clear_errors(store: StateStore, conn: sa.Connection) -> None:
    job = make_job(store, conn)
    with (
        pytest.raises(IllegalTransition) as info,
        conn.begin_nested(),
        refused_as_isthmus_error("synchronization_jobs"),
    ):
        conn.execute(
            store.jobs.update().where(store.jobs.c.id == job.id).values(status="completed")
        )

    assert str(info.value) == (
        "job nightly: cannot go from scheduled to completed (allowed from scheduled: running)"
    )
    with (
        pytest.raises(RuleViolation) as rule,
        conn.begin_nested(),
        refused_as_isthmus_error("synchronization_jobs"),
    ):
        conn.execute(store.jobs.update().where(store.jobs.c.id == job.id).values(success_rate=101))

    assert str(rule.value) == (
        "synchronization_jobs: success_rate must be between 0.00 and 100.00 "
        "(constraint ck_sync_job_success_rate)"
    )
    with pytest.raises(RuleViolation) as fk, conn.begin_nested():
        store.create_checkpoint(
            conn, operation_type="validation", entity_type="o", batch_size=1, job_id=uuid4()
        )
    assert 'is not present in table "synchronization_jobs"' in str(fk.value)
    assert "(constraint migration_checkpoints_job_id_fkey)" in str(fk.value)
    with (
        pytest.raises(RuleViolation) as dup,
        conn.begin_nested(),
        refused_as_isthmus_error("legacy_id_mappings"),
    ):
        for _ in range(2):
            conn.execute(
                store.mappings.insert().values(entity_type="d", legacy_id=1, uuid_id=job.id)
            )

    assert str(dup.value).startswith(
        "legacy_id_mappings: (entity_type, legacy_id) must be unique: Key (entity_type, legacy_id)"
    )


def test_updated_at_follows_every_update(store: StateStore, conn: sa.Connection) -> None:
    cp = store.create_checkpoint(conn, operation_type="validation", entity_type="o", batch_size=1)
    assert cp.updated_at == cp.created_at
    store.record_progress(conn, cp.id, last_processed_id=None, records_processed=0)
    assert store.get_checkpoint(conn, cp.id).updated_at > cp.updated_at


def test_one_transaction_holds_everything(engine: sa.Engine, store: StateStore) -> None:
    """What a batch writes with its checkpoint is committed or rolled back together."""
    name = f"atomic-{uuid4()}"
    with pytest.raises(RuntimeError), engine.begin() as conn:
        job = make_job(store, conn, name)
        cp = store.create_checkpoint(
            conn, operation_type="validation", entity_type="o", batch_size=1, job_id=job.id
        )
        store.record_progress(conn, cp.id, last_processed_id=1, records_processed=1)
        raise RuntimeError("crash before commit")
    with engine.connect() as conn, pytest.raises(NotFound):
        store.get_job(conn, name)
