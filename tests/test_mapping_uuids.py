"""UUID strategies: RFC 9562 layout of uuid7, ordering, uuid5 determinism, configuration errors."""

from __future__ import annotations

import pickle
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus import uuids
from isthmus.errors import ConfigError
from isthmus.uuids import (
    make_generator,
    uuid4_many,
    uuid5_many,
    uuid5_name,
    uuid7,
    uuid7_batch_prefix,
    uuid7_many,
    uuid_from_int,
    uuids_from_ints,
)

NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def _timestamp_ms(u: uuid.UUID) -> int:
    return u.int >> 80


@pytest.fixture
def own_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private uuid7 clock, so that a faked time does not leak into later tests."""
    monkeypatch.setattr(uuids, "_UUID7_CLOCK", uuids._Uuid7Clock())


def test_uuid7_layout_matches_rfc_9562() -> None:
    before = time.time_ns() // 1_000_000
    batch = uuid7_many(1000)
    after = time.time_ns() // 1_000_000
    for u in batch:
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert before <= _timestamp_ms(u) <= after + 1
    assert len(set(batch)) == 1000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=8))
def test_uuid7_strictly_increasing_across_calls(sizes: list[int]) -> None:
    made: list[uuid.UUID] = []
    for n in sizes:
        made.extend(uuid7_many(n))
        made.append(uuid7())
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)


def test_uuid7_keeps_counting_when_the_clock_stalls_or_steps_back(
    monkeypatch: pytest.MonkeyPatch, own_clock: None
) -> None:
    now = [time.time_ns() // 1_000_000 + 10**6]  # ahead of anything made so far
    monkeypatch.setattr(uuids, "_now_ms", lambda: now[0])
    first = uuid7_many(5)
    second = uuid7_many(5)  # same millisecond
    now[0] -= 5_000  # the clock steps back five seconds
    third = uuid7_many(5)
    made = first + second + third
    assert made == sorted(made) and len(set(made)) == 15
    assert _timestamp_ms(third[0]) == _timestamp_ms(first[0])


def test_uuid7_counter_overflow_moves_to_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch, own_clock: None
) -> None:
    now = time.time_ns() // 1_000_000 + 2 * 10**6
    monkeypatch.setattr(uuids, "_now_ms", lambda: now)
    monkeypatch.setattr(uuids, "_counter_seed", lambda: (1 << 42) - 3)
    made = uuid7_many(2) + uuid7_many(2)
    assert made == sorted(made)
    assert _timestamp_ms(made[2]) == _timestamp_ms(made[0]) + 1


def test_uuid7_run_crossing_the_low_counter_bits(
    monkeypatch: pytest.MonkeyPatch, own_clock: None
) -> None:
    now = time.time_ns() // 1_000_000 + 3 * 10**6
    monkeypatch.setattr(uuids, "_now_ms", lambda: now)
    monkeypatch.setattr(uuids, "_counter_seed", lambda: (5 << 30) - 2)
    made = uuid7_many(5)
    assert made == sorted(made) and len(set(made)) == 5
    assert [(u.int >> 64) & 0xFFF for u in made] == [4, 4, 5, 5, 5]  # rand_a carries


def test_uuid7_batch_prefix_sorts_after_earlier_uuid7s() -> None:
    earlier = uuid7()
    prefix = uuid7_batch_prefix()
    assert len(prefix) == 28
    assert uuid.UUID(prefix + "00000001") > earlier
    assert uuid.UUID(prefix + "ffffffff") < uuid7()


def test_uuid4_layout() -> None:
    batch = uuid4_many(2000)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in batch)
    assert len(set(batch)) == 2000
    assert uuid4_many(0) == []


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=30),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20),
)
def test_uuid5_is_the_standard_uuid5_of_entity_colon_id(entity: str, ids: list[int]) -> None:
    made = uuid5_many(NAMESPACE, entity, ids)
    assert made == [uuid.uuid5(NAMESPACE, f"{entity}:{i}") for i in ids]
    assert made == make_generator("uuid5", str(NAMESPACE))(entity, ids)
    assert [uuid5_name(entity, i) for i in ids] == [f"{entity}:{i}" for i in ids]


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_fast_uuid_construction_is_a_real_uuid(value: int) -> None:
    u = uuid_from_int(value)
    assert u == uuid.UUID(int=value)
    assert hash(u) == hash(uuid.UUID(int=value))
    assert str(u) == str(uuid.UUID(int=value))
    assert pickle.loads(pickle.dumps(u)) == u
    assert u.is_safe is uuid.SafeUUID.unknown
    assert uuids_from_ints([value, value]) == [u, u]


def test_make_generator_strategies() -> None:
    assert make_generator().strategy == "uuid7"
    assert make_generator("uuid4").strategy == "uuid4"
    gen = make_generator("uuid5", NAMESPACE)
    assert gen.strategy == "uuid5"
    assert gen("patients", [42]) == [uuid.uuid5(NAMESPACE, "patients:42")]
    assert [u.version for u in make_generator("uuid7")("x", [1, 2, 3])] == [7, 7, 7]
    assert [u.version for u in make_generator("uuid4")("x", [1, 2])] == [4, 4]


@pytest.mark.parametrize(
    ("strategy", "namespace", "message"),
    [
        ("uuid5", None, "needs migration.uuid_namespace"),
        ("uuid5", "", "needs migration.uuid_namespace"),
        ("uuid5", "not-a-uuid", "'not-a-uuid' is not a UUID"),
        ("uuid6", None, "unknown strategy 'uuid6'"),
    ],
)
def test_make_generator_config_errors(strategy: str, namespace: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make_generator(strategy, namespace)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_gc_is_restored_after_bulk_generation() -> None:
    import gc

    assert gc.isenabled()
    uuid7_many(10)
    assert gc.isenabled()
    gc.disable()
    try:
        uuid7_many(10)
        assert not gc.isenabled()
    finally:
        gc.enable()
