"""Bulk resolve / assign / checksums / lookups against a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isthmus import mapping
from isthmus.dialects.pgconn import conninfo
from isthmus.errors import MappingConflict, TerminalDatabaseError
from isthmus.urls import DatabaseURL
from isthmus.uuids import uuid4_many
from test_mapping_support import (
    CountingConnection,
    count_rows,
    counting_connect,
    create_mapping_schema,
    drop_schema,
)

UUID7 = mapping.make_generator("uuid7")
UUID4 = mapping.make_generator("uuid4")
NAMESPACE = uuid.UUID("0b8e2f4e-3f0c-4a43-9c55-0f6f2a8d1e21")


@pytest.fixture(scope="module")
def schema_url(pg_url: DatabaseURL) -> Iterator[tuple[DatabaseURL, str]]:
    schema = create_mapping_schema(pg_url, "mapdb")
    yield pg_url, schema
    drop_schema(pg_url, schema)


@pytest.fixture
def conn(schema_url: tuple[DatabaseURL, str]) -> Iterator[CountingConnection]:
    with counting_connect(schema_url[0]) as connection:
        yield connection


@pytest.fixture
def schema(schema_url: tuple[DatabaseURL, str]) -> str:
    return schema_url[1]


def _entity() -> str:
    """A fresh entity name: tests share the module's table without seeing each other."""
    return f"e_{uuid.uuid4().hex[:8]}"


def test_resolve_returns_only_mapped_ids_in_one_query(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    made = mapping.assign(conn, schema, entity, [1, 2, 3], generator=UUID7, batch_id="b")
    conn.statements.clear()
    assert mapping.resolve(conn, schema, entity, [3, 4, 1, 3]) == {1: made[0], 3: made[2]}
    assert len(conn.statements) == 1
    conn.statements.clear()
    assert mapping.resolve(conn, schema, entity, []) == {}
    assert conn.statements == []
    assert mapping.resolve(conn, schema, "other", [1, 2]) == {}


def test_resolve_sends_one_query_per_chunk_not_per_row(
    conn: CountingConnection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = _entity()
    ids = list(range(25_000))
    mapping.assign(conn, schema, entity, ids, generator=UUID7, batch_id="b")
    conn.statements.clear()
    assert len(mapping.resolve(conn, schema, entity, ids)) == 25_000
    assert len(conn.statements) == 1
    monkeypatch.setattr(mapping, "RESOLVE_CHUNK", 10_000)
    conn.statements.clear()
    assert len(mapping.resolve(conn, schema, entity, ids)) == 25_000
    assert len(conn.statements) == 3


def test_assign_creates_mappings_with_their_batch_tables_and_checksums(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    made = mapping.assign(
        conn,
        schema,
        entity,
        [10, 11],
        generator=UUID7,
        checksums=["c10", None],
        batch_id="batch-1",
        source_table="legacy_doctors",
        target_table="doctors",
    )
    conn.commit()
    assert [u.version for u in made] == [7, 7] and made[0] < made[1]
    record = mapping.lookup_record(conn, schema, entity, 10)
    assert record is not None
    assert (record.uuid_id, record.migration_batch, record.validation_status) == (
        made[0],
        "batch-1",
        "pending",
    )
    assert (record.source_table, record.target_table, record.checksum) == (
        "legacy_doctors",
        "doctors",
        "c10",
    )
    assert record.metadata == {"source": "assign", "strategy": "uuid7"}
    other = mapping.lookup_record(conn, schema, entity, 11)
    assert other is not None and other.checksum is None
    assert mapping.lookup_record(conn, schema, entity, 12) is None


def test_assign_returns_existing_mappings_and_generates_only_new_ones(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    first = mapping.assign(conn, schema, entity, [1, 2, 3], generator=UUID4, batch_id="b1")
    again = mapping.assign(conn, schema, entity, [3, 4, 1, 4], generator=UUID7, batch_id="b2")
    assert again[0] == first[2] and again[2] == first[0]
    assert again[1] == again[3] and again[1].version == 7
    assert first[0].version == 4
    assert count_rows(conn, schema, entity) == 4


def test_assign_statement_count_does_not_grow_with_the_batch(
    conn: CountingConnection, schema: str
) -> None:
    counts = []
    for size in (10, 10_000):
        conn.statements.clear()
        mapping.assign(conn, schema, _entity(), list(range(size)), generator=UUID7, batch_id="b")
        counts.append(len(conn.statements))
    assert counts[0] == counts[1] <= 6, conn.statements
    conn.statements.clear()
    entity = _entity()
    mapping.assign(conn, schema, entity, list(range(100)), generator=UUID7, batch_id="b")
    conn.statements.clear()
    mapping.assign(conn, schema, entity, list(range(100)), generator=UUID7, batch_id="b")
    assert len(conn.statements) == 1  # all mapped already: one resolve, nothing else


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.integers(min_value=-50, max_value=50), max_size=40), min_size=1, max_size=4
    )
)
def test_assign_is_idempotent_and_one_to_one(
    conn: CountingConnection, schema: str, calls: list[list[int]]
) -> None:
    entity = _entity()
    seen: dict[int, UUID] = {}
    for ids in calls:
        got = mapping.assign(conn, schema, entity, ids, generator=UUID7, batch_id="b")
        assert len(got) == len(ids)
        for legacy_id, u in zip(ids, got, strict=True):
            assert seen.setdefault(legacy_id, u) == u
    assert len(set(seen.values())) == len(seen)
    assert mapping.resolve(conn, schema, entity, list(seen)) == seen
    conn.rollback()


def test_assign_rolls_back_with_the_callers_transaction(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    mapping.assign(conn, schema, entity, [1, 2], generator=UUID7, batch_id="b")
    conn.rollback()
    assert mapping.resolve(conn, schema, entity, [1, 2]) == {}
    conn.rollback()


def test_assign_on_an_autocommit_connection(schema_url: tuple[DatabaseURL, str]) -> None:
    url, schema = schema_url
    entity = _entity()
    with psycopg.connect(conninfo(url), autocommit=True) as auto:
        made = mapping.assign(auto, schema, entity, [7, 8], generator=UUID7, batch_id="b")
    with psycopg.connect(conninfo(url)) as other:
        assert mapping.resolve(other, schema, entity, [7, 8]) == {7: made[0], 8: made[1]}


def test_uuid5_is_deterministic_across_entities_and_runs(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    gen = mapping.make_generator("uuid5", NAMESPACE)
    made = mapping.assign(conn, schema, entity, [1, 2], generator=gen, batch_id="b")
    assert made == [uuid.uuid5(NAMESPACE, f"{entity}:{i}") for i in (1, 2)]
    conn.rollback()
    assert mapping.assign(conn, schema, entity, [2, 1], generator=gen, batch_id="b") == made[::-1]


class _Fixed:
    strategy = "fixed"

    def __init__(self, values: Sequence[UUID]) -> None:
        self.values = list(values)

    def __call__(self, entity: str, legacy_ids: Sequence[int]) -> list[UUID]:
        return self.values[: len(legacy_ids)]

    def ints(self, entity: str, legacy_ids: Sequence[int]) -> list[int]:
        return [u.int for u in self(entity, legacy_ids)]


def test_assign_refuses_a_uuid_already_used_by_another_legacy_id(
    conn: CountingConnection, schema: str
) -> None:
    entity = _entity()
    taken = uuid.uuid5(NAMESPACE, f"{entity}:5")
    mapping.assign(conn, schema, entity, [999], generator=_Fixed([taken]), batch_id="import")
    gen = mapping.make_generator("uuid5", NAMESPACE)
    with pytest.raises(MappingConflict, match=r"legacy_id 5 → ") as info:
        mapping.assign(conn, schema, entity, [4, 5], generator=gen, batch_id="b")
    assert entity in str(info.value) and "\n" not in str(info.value)
    conn.rollback()


def test_assign_checksums_must_match_the_ids(conn: CountingConnection, schema: str) -> None:
    with pytest.raises(ValueError, match="2 checksums for 1 legacy ids"):
        mapping.assign(conn, schema, "x", [1], generator=UUID7, checksums=["a", "b"], batch_id="b")


def _assign_in_thread(
    url: DatabaseURL,
    schema: str,
    entity: str,
    ids: list[int],
    *,
    out: dict[str, Any],
    key: str,
    assigned: threading.Event | None = None,
    release: threading.Event | None = None,
    commit: bool = True,
) -> None:
    try:
        with counting_connect(url) as conn:
            out[key] = mapping.assign(conn, schema, entity, ids, generator=UUID7, batch_id=key)
            out[key + "_statements"] = conn.statements
            if assigned is not None:
                assigned.set()
            if release is not None:
                release.wait(10)
            if commit:
                conn.commit()
            else:
                conn.rollback()
    except Exception as exc:  # surfaced by the test
        out[key + "_error"] = exc
        if assigned is not None:
            assigned.set()


@pytest.mark.parametrize("first_commits", [True, False])
def test_two_processes_assigning_overlapping_ids_agree(
    schema_url: tuple[DatabaseURL, str], first_commits: bool
) -> None:
    url, schema = schema_url
    entity = _entity()
    out: dict[str, Any] = {}
    assigned, release = threading.Event(), threading.Event()
    a_ids, b_ids = list(range(0, 6000)), list(range(3000, 9000))
    first = threading.Thread(
        target=_assign_in_thread,
        args=(url, schema, entity, a_ids),
        kwargs={
            "out": out,
            "key": "a",
            "assigned": assigned,
            "release": release,
            "commit": first_commits,
        },
    )
    first.start()
    assert assigned.wait(30)
    # The second one cannot see the first one's uncommitted mappings: it generates
    # its own for 3000..5999 and blocks on the unique index until the first ends.
    second = threading.Thread(
        target=_assign_in_thread, args=(url, schema, entity, b_ids), kwargs={"out": out, "key": "b"}
    )
    second.start()
    second.join(0.5)
    assert second.is_alive()
    release.set()
    first.join(30)
    second.join(30)
    assert "a_error" not in out and "b_error" not in out, out
    with psycopg.connect(conninfo(url)) as conn:
        stored = mapping.resolve(conn, schema, entity, range(0, 9000))
    a_map = dict(zip(a_ids, out["a"], strict=True))
    b_map = dict(zip(b_ids, out["b"], strict=True))
    assert b_map == {i: stored[i] for i in b_ids}
    retried = any("ON CONFLICT DO NOTHING" in q for q in out["b_statements"])
    assert retried == first_commits  # the plain insert hit the first one's rows
    if first_commits:
        assert stored == a_map | b_map
        assert all(a_map[i] == b_map[i] for i in range(3000, 6000))
        assert len(stored) == 9000
    else:
        assert set(stored) == set(b_ids)
    assert len(set(stored.values())) == len(stored)


def test_update_checksums_in_one_statement(conn: CountingConnection, schema: str) -> None:
    entity = _entity()
    ids = list(range(1000))
    mapping.assign(conn, schema, entity, ids, generator=UUID7, batch_id="b")
    conn.statements.clear()
    changed = mapping.update_checksums(
        conn, schema, entity, [(i, f"sum{i}") for i in ids] + [(5000, "unmapped")]
    )
    assert changed == 1000
    assert len(conn.statements) == 1
    assert mapping.update_checksums(conn, schema, entity, [(1, "sum1"), (2, "new")]) == 1
    assert mapping.update_checksums(conn, schema, entity, []) == 0
    assert mapping.update_checksums(conn, schema, entity, [(3, None), (4, None)]) == 2
    record = mapping.lookup_record(conn, schema, entity, 2)
    assert record is not None and record.checksum == "new"
    conn.rollback()


def test_lookup_and_reverse_lookup(conn: CountingConnection, schema: str) -> None:
    entity = _entity()
    [made] = mapping.assign(conn, schema, entity, [42], generator=UUID7, batch_id="b")
    assert mapping.lookup(conn, schema, entity, 42) == made
    assert mapping.lookup(conn, schema, entity, 43) is None
    assert mapping.reverse_lookup(conn, schema, entity, made) == 42
    assert mapping.reverse_lookup(conn, schema, entity, uuid4_many(1)[0]) is None
    assert mapping.reverse_lookup(conn, schema, "other", made) is None
    conn.rollback()


def test_a_missing_schema_is_a_terminal_error_naming_it(conn: CountingConnection) -> None:
    with pytest.raises(TerminalDatabaseError, match="no_such_schema"):
        mapping.resolve(conn, "no_such_schema", "x", [1])


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_int8_array_parameter_round_trips(conn: CountingConnection, values: list[int]) -> None:
    with mapping.cursor(conn) as cur:
        row = cur.execute("SELECT %s::int8[]", (mapping.Int8Array.of(values),)).fetchone()
    assert row is not None and row[0] == values
    conn.rollback()


def test_int8_array_refuses_ids_outside_bigint() -> None:
    with pytest.raises(ValueError, match=f"legacy id {2**63} is not a bigint"):
        mapping.Int8Array.of([1, 2**63])
    with pytest.raises(ValueError, match="legacy id '7' is not a bigint"):
        mapping.Int8Array.of([1, "7"])  # type: ignore[list-item]
