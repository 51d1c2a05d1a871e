"""MappingCache: bulk get/put against a dict model, eviction policy, memory, resolve_many."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus import mapping
from isthmus.mapping_cache import DEFAULT_MERGE_EVERY, MappingCache
from isthmus.urls import DatabaseURL
from isthmus.uuids import uuid4_many, uuid_from_int
from test_mapping_support import counting_connect, create_mapping_schema, drop_schema


class Model:
    """The documented policy, written the obvious way."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.data: OrderedDict[str, dict[int, UUID]] = OrderedDict()

    def size(self) -> int:
        return sum(len(d) for d in self.data.values())

    def put(self, entity: str, items: dict[int, UUID]) -> None:
        if not items:
            return
        self.data.setdefault(entity, {}).update(items)
        self.data.move_to_end(entity)
        while self.size() > self.max_entries and len(self.data) > 1:
            self.data.popitem(last=False)
        excess = self.size() - self.max_entries
        if excess > 0:
            for key in sorted(self.data[entity])[:excess]:
                del self.data[entity][key]

    def get(self, entity: str, ids: list[int]) -> tuple[dict[int, UUID], list[int]]:
        if entity in self.data:
            self.data.move_to_end(entity)
        cached = self.data.get(entity, {})
        found = {i: cached[i] for i in ids if i in cached}
        missing = [i for i in dict.fromkeys(ids) if i not in cached]
        return found, missing


entities = st.sampled_from(["offices", "patients", "orders"])
legacy_ids = st.integers(min_value=-5, max_value=60)
uuid_values = st.integers(min_value=0, max_value=2**128 - 1).map(uuid_from_int)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), entities, st.dictionaries(legacy_ids, uuid_values, max_size=25)),
        st.tuples(st.just("get"), entities, st.lists(legacy_ids, max_size=30)),
        st.tuples(st.just("evict"), entities, st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    max_entries=st.integers(min_value=1, max_value=90),
    merge_every=st.integers(min_value=1, max_value=12),
)
def test_cache_behaves_like_the_dict_model(
    ops: list[tuple[str, str, object]], max_entries: int, merge_every: int
) -> None:
    cache = MappingCache(max_entries, merge_every=merge_every)
    model = Model(max_entries)
    for op, entity, arg in ops:
        if op == "put":
            assert isinstance(arg, dict)
            cache.put_many(entity, arg)
            model.put(entity, arg)
        elif op == "get":
            assert isinstance(arg, list)
            assert cache.get_many(entity, arg) == model.get(entity, arg)
        else:
            cache.evict(entity)
            model.data.pop(entity, None)
        assert len(cache) == model.size() <= max_entries
        assert cache.entities() == list(model.data)
    for entity in ["offices", "patients", "orders"]:
        probe = list(range(-5, 61))
        assert cache.get_many(entity, probe) == model.get(entity, probe)


def test_get_many_reports_missing_ids_once_in_input_order() -> None:
    cache = MappingCache()
    a, b = uuid4_many(2)
    cache.put_many("doctors", {10: a, 20: b})
    found, missing = cache.get_many("doctors", [30, 10, 5, 30, 20, 5])
    assert found == {10: a, 20: b}
    assert missing == [30, 5]
    assert cache.get_many("nobody", [3, 3, 1]) == ({}, [3, 1])
    assert cache.get("doctors", 20) == b and cache.get("doctors", 21) is None


def test_appends_pending_merges_and_overwrites() -> None:
    cache = MappingCache(merge_every=4)
    values = uuid4_many(12)
    cache.put_many("orders", {i: values[i] for i in range(0, 12, 2)})  # appended
    cache.put_many("orders", {1: values[1], 3: values[3]})  # pending
    cache.put_many("orders", {5: values[5]})
    replaced = uuid.uuid4()
    cache.put_many("orders", {4: replaced, 7: values[7]})  # overwrite in place + merge
    expected = {i: values[i] for i in (0, 1, 2, 3, 5, 6, 7, 8, 10)} | {4: replaced}
    found, missing = cache.get_many("orders", range(12))
    assert found == expected
    assert missing == [9, 11]
    assert len(cache) == 10


def test_eviction_drops_least_recently_used_entities_first() -> None:
    cache = MappingCache(max_entries=10)
    cache.put_many("offices", zip(range(4), uuid4_many(4), strict=True))
    cache.put_many("profiles", zip(range(4), uuid4_many(4), strict=True))
    cache.get_many("offices", [1])  # offices is now the most recently used
    cache.put_many("doctors", zip(range(4), uuid4_many(4), strict=True))
    assert cache.entities() == ["offices", "doctors"]
    assert len(cache) == 8


def test_one_entity_over_the_bound_keeps_its_highest_ids() -> None:
    cache = MappingCache(max_entries=5)
    cache.put_many("orders", zip(range(100, 103), uuid4_many(3), strict=True))
    cache.put_many("orders", zip(range(103, 108), uuid4_many(5), strict=True))
    found, missing = cache.get_many("orders", range(100, 108))
    assert sorted(found) == [103, 104, 105, 106, 107]
    assert missing == [100, 101, 102]


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MappingCache(0)


def _traced_bytes_of_a_full_cache(rows: int, shuffled: bool) -> tuple[int, MappingCache]:
    sizes = {"offices": 0.02, "profiles": 0.03, "doctors": 0.05, "patients": 0.25}
    sizes |= {"orders": 0.30, "products": 0.35}
    plan = [(entity, int(rows * share)) for entity, share in sizes.items()]
    values = {entity: uuid4_many(n) for entity, n in plan}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        cache = MappingCache()
        for entity, n in plan:
            ids = list(range(1, n + 1))
            if shuffled:
                random.Random(7).shuffle(ids)
            for start in range(0, n, 10_000):
                chunk = ids[start : start + 10_000]
                cache.put_many(entity, {i: values[entity][i - 1] for i in chunk})
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used, cache


@pytest.mark.slow
def test_one_point_two_million_mappings_fit_in_60_mb() -> None:
    used, cache = _traced_bytes_of_a_full_cache(1_200_000, shuffled=False)
    assert len(cache) == 1_200_000
    assert used <= 60_000_000, f"{used / 1e6:.1f} MB"
    found, missing = cache.get_many("patients", range(1, 10_001))
    assert len(found) == 10_000 and not missing


def test_scattered_puts_stay_compact() -> None:
    used, cache = _traced_bytes_of_a_full_cache(100_000, shuffled=True)
    assert len(cache) == 100_000
    # 24 bytes a mapping in the arrays, plus at most one pending chunk per entity
    assert used <= 100_000 * 24 * 1.2 + 6 * DEFAULT_MERGE_EVERY * 250, f"{used / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def schema_url(pg_url: DatabaseURL) -> Iterator[tuple[DatabaseURL, str]]:
    schema = create_mapping_schema(pg_url, "mapcache")
    yield pg_url, schema
    drop_schema(pg_url, schema)


def test_resolve_many_serves_hits_from_cache_and_fetches_misses_in_one_query(
    schema_url: tuple[DatabaseURL, str],
) -> None:
    url, schema = schema_url
    with counting_connect(url) as conn:
        made = mapping.assign(
            conn,
            schema,
            "patients",
            list(range(1, 5001)),
            generator=mapping.make_generator(),
            batch_id="b1",
        )
        conn.commit()
        truth = dict(zip(range(1, 5001), made, strict=True))
        cache = MappingCache()
        cache.put_many("patients", {i: truth[i] for i in range(1, 2001)})
        conn.statements.clear()
        wanted = list(range(1000, 6001))  # 1001 cached, 3000 in the table only, 1000 nowhere
        got = cache.resolve_many(conn, schema, "patients", wanted)
        assert got == {i: truth[i] for i in range(1000, 5001)}
        assert len(conn.statements) == 1
        assert "ANY" in conn.statements[0]
        conn.statements.clear()
        assert cache.resolve_many(conn, schema, "patients", range(1, 5001)) == truth
        assert conn.statements == []  # all cached now
        assert len(cache) == 5000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.dictionaries(st.integers(0, 300), st.integers(0, 2**128 - 1), max_size=20),
        ),
        max_size=12,
    )
)
def test_put_ints_is_put_many_with_uuids(
    puts: list[tuple[str, dict[int, int]]],
) -> None:
    """Appending past the largest cached ID or merging below it, both answer alike."""
    by_ints, by_uuids = MappingCache(max_entries=50), MappingCache(max_entries=50)
    for entity, items in puts:
        by_ints.put_ints(entity, items)
        by_uuids.put_many(entity, {k: uuid_from_int(v) for k, v in items.items()})
        assert len(by_ints) == len(by_uuids)
    for entity in ("a", "b"):
        assert by_ints.get_many(entity, range(301)) == by_uuids.get_many(entity, range(301))
