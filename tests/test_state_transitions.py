"""The two state machines: every legal move accepted, every other one refused, in Python and in SQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from isthmus.errors import IllegalTransition
from isthmus.state.models import CheckpointStatus, JobStatus
from isthmus.state.tables import CHECKPOINT_STATUSES, JOB_STATUSES, build_metadata
from isthmus.state.transitions import (
    CHECKPOINT_TRANSITIONS,
    JOB_TRANSITIONS,
    check_checkpoint_transition,
    check_job_transition,
)
from isthmus.urls import DatabaseURL
from test_state_support import migrated_schema, state_engine

# Written out from data-model.md, independently of transitions.py.
SPEC_CHECKPOINT_EDGES = {
    ("pending", "in_progress"),
    ("in_progress", "completed"),
    ("in_progress", "failed"),
    ("in_progress", "paused"),
    ("paused", "in_progress"),
    ("failed", "in_progress"),
}
SPEC_JOB_EDGES = {
    ("scheduled", "running"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "paused"),
    ("running", "cancelled"),
    ("paused", "running"),
    ("completed", "scheduled"),
}
CHECKPOINT_PAIRS = [(a, b) for a in CHECKPOINT_STATUSES for b in CHECKPOINT_STATUSES if a != b]
JOB_PAIRS = [(a, b) for a in JOB_STATUSES for b in JOB_STATUSES if a != b]


def test_machines_cover_the_enums() -> None:
    assert tuple(CHECKPOINT_TRANSITIONS) == CHECKPOINT_STATUSES == tuple(CheckpointStatus)
    assert set(JOB_TRANSITIONS) == set(JOB_STATUSES) and tuple(JobStatus) == JOB_STATUSES
    assert {(a, b) for a, bs in CHECKPOINT_TRANSITIONS.items() for b in bs} == SPEC_CHECKPOINT_EDGES
    assert {(a, b) for a, bs in JOB_TRANSITIONS.items() for b in bs} == SPEC_JOB_EDGES


@given(st.sampled_from(CHECKPOINT_STATUSES), st.sampled_from(CHECKPOINT_STATUSES))
def test_python_checkpoint_transitions(old: str, new: str) -> None:
    if old == new or (old, new) in SPEC_CHECKPOINT_EDGES:
        check_checkpoint_transition(old, new, "c1")
    else:
        with pytest.raises(IllegalTransition) as info:
            check_checkpoint_transition(old, new, "c1")
        assert str(info.value).startswith(f"checkpoint c1: cannot go from {old} to {new} (")


@given(st.sampled_from(JOB_STATUSES), st.sampled_from(JOB_STATUSES))
def test_python_job_transitions(old: str, new: str) -> None:
    if old == new or (old, new) in SPEC_JOB_EDGES:
        check_job_transition(old, new, "nightly")
    else:
        with pytest.raises(IllegalTransition, match=f"^job nightly: cannot go from {old} to {new}"):
            check_job_transition(old, new, "nightly")


def test_python_message_lists_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_checkpoint_transition("pending", "completed", "c1")
    assert str(info.value) == (
        "checkpoint c1: cannot go from pending to completed (allowed from pending: in_progress)"
    )
    with pytest.raises(IllegalTransition) as info:
        check_job_transition(JobStatus.CANCELLED, JobStatus.RUNNING, "nightly")
    assert str(info.value) == (
        "job nightly: cannot go from cancelled to running (allowed from cancelled: none)"
    )
    with pytest.raises(IllegalTransition, match="unknown status 'done'"):
        check_job_transition("running", "done")


@pytest.fixture(scope="module")
def engine(pg_url: DatabaseURL) -> Iterator[sa.Engine]:
    engine = state_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def tables(engine: sa.Engine) -> dict[str, sa.Table]:
    return {t.name: t for t in build_metadata(migrated_schema(engine)).tables.values()}


@pytest.fixture(scope="module")
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as conn:
        transaction = conn.begin()
        yield conn
        transaction.rollback()


def _checkpoint_fields(status: str) -> dict[str, Any]:
    """Whatever a checkpoint in ``status`` must also hold to satisfy the other rules."""
    t = datetime.now(UTC)
    fields: dict[str, Any] = {"status": status}
    if status == "failed":
        fields["error_message"] = "boom"
    if status == "completed":
        fields |= {"started_at": t - timedelta(seconds=1), "completed_at": t}
    return fields


def _moved(
    conn: sa.Connection, table: sa.Table, row: dict[str, Any], change: dict[str, Any]
) -> bool:
    ident = uuid4()
    with conn.begin_nested():
        conn.execute(table.insert().values({**row, "id": ident}))
    try:
        with conn.begin_nested():
            conn.execute(table.update().where(table.c.id == ident).values(change))
    except sa.exc.IntegrityError as exc:
        assert "cannot go from" in str(exc.orig)
        return False
    return True


@pytest.mark.parametrize(("old", "new"), CHECKPOINT_PAIRS)
def test_database_checkpoint_transitions(
    old: str, new: str, conn: sa.Connection, tables: dict[str, sa.Table]
) -> None:
    row = {"operation_type": "validation", "entity_type": "offices", "batch_size": 10}
    change = _checkpoint_fields(new)
    if old == "completed":
        change.pop("started_at", None)
    moved = _moved(
        conn, tables["migration_checkpoints"], {**row, **_checkpoint_fields(old)}, change
    )
    assert moved == ((old, new) in SPEC_CHECKPOINT_EDGES)


@pytest.mark.parametrize(("old", "new"), JOB_PAIRS)
def test_database_job_transitions(
    old: str, new: str, conn: sa.Connection, tables: dict[str, sa.Table]
) -> None:
    row = {
        "job_name": f"job-{uuid4()}",
        "job_type": "manual_sync",
        "entities_to_sync": ["offices"],
        "sync_direction": "bidirectional",
        "conflict_resolution": "manual",
        "max_records_per_batch": 10,
        "status": old,
    }
    moved = _moved(conn, tables["synchronization_jobs"], row, {"status": new})
    assert moved == ((old, new) in SPEC_JOB_EDGES)


def test_database_message_matches_python(conn: sa.Connection, tables: dict[str, sa.Table]) -> None:
    table = tables["migration_checkpoints"]
    ident = uuid4()
    conn.execute(
        table.insert().values(
            id=ident, operation_type="validation", entity_type="offices", batch_size=10
        )
    )
    with pytest.raises(sa.exc.IntegrityError) as info, conn.begin_nested():
        conn.execute(table.update().where(table.c.id == ident).values(status="completed"))
    with pytest.raises(IllegalTransition) as python:
        check_checkpoint_transition("pending", "completed", ident)
    assert str(info.value.orig).splitlines()[0] == str(python.value)


def test_same_status_again_is_not_a_transition(
    conn: sa.Connection, tables: dict[str, sa.Table]
) -> None:
    table = tables["synchronization_jobs"]
    ident = uuid4()
    conn.execute(
        table.insert().values(
            id=ident,
            job_name="same",
            job_type="manual_sync",
            entities_to_sync=["offices"],
            sync_direction="bidirectional",
            conflict_resolution="manual",
            max_records_per_batch=10,
            status="cancelled",
        )
    )
    with conn.begin_nested():
        conn.execute(
            table.update().where(table.c.id == ident).values(status="cancelled", metadata={"a": 1})
        )
    for status in JOB_STATUSES:
        check_job_transition(status, status)
