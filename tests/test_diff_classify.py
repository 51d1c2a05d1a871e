"""Property tests of ``isthmus.diff_classify.classify`` against a reference model written
from the rules table of its docstring.

Inputs are three dicts: the source's legacy id → checksum, each mapping's legacy id →
base checksum (None: none stored), and the mapped target row's checksum (absent: the target
row is gone). Checksums come from a tiny alphabet so that equal and different values, and
a base equal to either side, all turn up often.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus import diff
from isthmus.diff_classify import CONFLICTED, DELETED, MISSING, SIDES, TYPES, Found, classify
from isthmus.diff_target import Scope

SUMS = st.sampled_from([b"aa", b"bb", b"cc"])
IDS = st.integers(min_value=-5, max_value=60)


@dataclass
class World:
    source: dict[int, bytes]
    base: dict[int, bytes | None]  # one entry per mapping
    target: dict[int, bytes]  # mapped target rows present (keys ⊆ base)

    def source_stream(self) -> list[tuple[int, bytes]]:
        return sorted(self.source.items())

    def mapped_stream(self) -> list[tuple[int, bytes | None, bytes | None]]:
        return [(i, b, self.target.get(i)) for i, b in sorted(self.base.items())]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    source = draw(st.dictionaries(IDS, SUMS, max_size=25))
    base = draw(st.dictionaries(IDS, st.none() | SUMS, max_size=25))
    present = draw(st.sets(st.sampled_from(sorted(base)))) if base else set()
    target = {i: draw(SUMS) for i in sorted(present)}
    return World(source, base, target)


@st.composite
def in_step(draw: st.DrawFn) -> World:
    """Every row in both sides, equal, mapped: what a clean migration leaves."""
    source = draw(st.dictionaries(IDS, SUMS, max_size=25))
    return World(source, dict(source), dict(source))


def reference(world: World) -> tuple[dict[int, tuple[str, str]], set[int], set[int]]:
    """legacy id → (comparison type, side) for the differences; the equal ids; the stale ones."""
    verdict: dict[int, tuple[str, str]] = {}
    equal: set[int] = set()
    stale: set[int] = set()
    for i in set(world.source) | set(world.base):
        s = world.source.get(i)
        mapped = i in world.base
        base = world.base.get(i)
        t = world.target.get(i)
        if not mapped:  # row / none / -
            assert s is not None
            verdict[i] = (MISSING, "source")
        elif s is not None and t is None:  # row / base / gone
            source_changed = base is not None and s != base
            verdict[i] = (MISSING, "both" if source_changed else "target")
        elif s is None and t is not None:  # gone / base / row
            target_changed = base is not None and t != base
            verdict[i] = (DELETED, "both" if target_changed else "source")
        elif s is None and t is None:  # gone from both sides
            stale.add(i)
        elif s == t:  # equal checksums: no difference, whatever the base says
            equal.add(i)
        elif base is None:
            verdict[i] = (CONFLICTED, "unknown")
        elif t == base:
            verdict[i] = (CONFLICTED, "source")
        elif s == base:
            verdict[i] = (CONFLICTED, "target")
        else:
            verdict[i] = (CONFLICTED, "both")
    return verdict, equal, stale


def flattened(found: Found) -> list[tuple[int, str, str]]:
    return [(i, kind, side) for kind in TYPES for side, ids in found.ids[kind].items() for i in ids]


@settings(max_examples=400)
@given(worlds())
def test_classify_agrees_with_the_rules_table(world: World) -> None:
    found = classify(world.source_stream(), world.mapped_stream())
    verdict, equal, stale = reference(world)
    got = flattened(found)
    # every id with a difference is classified exactly once, as the table says
    assert sorted(got) == sorted((i, k, s) for i, (k, s) in verdict.items())
    assert len({i for i, _, _ in got}) == len(got)
    assert found.equal == len(equal)
    assert found.stale_mappings == len(stale)
    union = set(world.source) | set(world.base)
    assert found.compared == len(union) == len(got) + found.equal + found.stale_mappings
    assert found.total == len(verdict)
    assert found.created_in_target == []
    assert set(found.ids) == set(TYPES)
    assert all(side in SIDES for kind in TYPES for side in found.ids[kind])


@settings(max_examples=300)
@given(worlds())
def test_output_ids_are_ascending(world: World) -> None:
    found = classify(world.source_stream(), world.mapped_stream())
    for kind in TYPES:
        for ids in found.ids[kind].values():
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            assert ids, "an empty side list"
        assert found.of(kind) == sorted(i for ids in found.ids[kind].values() for i in ids)
    counts = found.counts()
    assert counts == {k: {s: len(v) for s, v in found.ids[k].items()} for k in TYPES}


@given(in_step())
def test_identical_sides_differ_in_nothing(world: World) -> None:
    found = classify(world.source_stream(), world.mapped_stream())
    assert found.total == 0 and flattened(found) == []
    assert found.equal == found.compared == len(world.source)
    assert found.counts() == {k: {} for k in TYPES}


@given(st.dictionaries(IDS, SUMS, max_size=25), st.dictionaries(IDS, st.none() | SUMS))
def test_equal_checksums_are_no_difference_whatever_the_base(
    rows: dict[int, bytes], bases: dict[int, bytes | None]
) -> None:
    world = World(rows, {i: bases.get(i) for i in rows}, dict(rows))
    found = classify(world.source_stream(), world.mapped_stream())
    assert found.total == 0 and found.equal == len(rows)


@given(worlds(), st.integers(min_value=-6, max_value=61))
def test_classifying_in_two_ranges_and_merging_is_classifying_once(world: World, cut: int) -> None:
    """What ``Found.merge`` is for: key ranges classified apart and put together."""
    whole = classify(world.source_stream(), world.mapped_stream())
    low = classify(
        [x for x in world.source_stream() if x[0] <= cut],
        [x for x in world.mapped_stream() if x[0] <= cut],
    )
    high = classify(
        [x for x in world.source_stream() if x[0] > cut],
        [x for x in world.mapped_stream() if x[0] > cut],
    )
    merged = Found()
    merged.merge(high)  # in either order
    merged.merge(low)
    assert {k: v for k, v in merged.ids.items()} == whole.ids
    assert (merged.compared, merged.equal, merged.stale_mappings) == (
        whole.compared,
        whole.equal,
        whole.stale_mappings,
    )


def test_classify_adds_to_a_given_found() -> None:
    found = Found()
    out = classify([(1, b"aa")], [], found)
    assert out is found and found.ids[MISSING] == {"source": [1]}
    classify([], [(2, b"aa", b"aa")], found)
    assert found.ids[DELETED] == {"source": [2]} and found.compared == 2


@pytest.mark.parametrize(
    ("source", "mapped", "what"),
    [
        ([(2, b"aa"), (1, b"aa")], [], "source"),
        ([(1, b"aa"), (1, b"bb")], [], "source"),
        ([], [(3, b"aa", b"aa"), (2, b"aa", b"aa")], "mapping"),
        ([], [(3, b"aa", b"aa"), (3, b"aa", None)], "mapping"),
    ],
)
def test_unordered_streams_stop_loudly(
    source: list[tuple[int, bytes]],
    mapped: list[tuple[int, bytes | None, bytes | None]],
    what: str,
) -> None:
    with pytest.raises(RuntimeError, match=f"{what} checksums out of order"):
        classify(source, mapped)


@pytest.mark.parametrize(
    ("source", "base", "target", "expected"),
    [
        # the rows of the table, one by one
        (b"aa", "none", None, (MISSING, "source")),
        (b"aa", b"aa", None, (MISSING, "target")),
        (b"bb", b"aa", None, (MISSING, "both")),
        (None, b"aa", b"aa", (DELETED, "source")),
        (None, b"aa", b"bb", (DELETED, "both")),
        (b"bb", b"aa", b"aa", (CONFLICTED, "source")),
        (b"aa", b"aa", b"bb", (CONFLICTED, "target")),
        (b"bb", b"aa", b"cc", (CONFLICTED, "both")),
        (b"aa", None, b"bb", (CONFLICTED, "unknown")),
        (b"aa", b"bb", b"aa", None),  # equal: whatever the base says
        (None, b"aa", None, None),  # stale
    ],
)
def test_each_row_of_the_table(
    source: bytes | None,
    base: bytes | str | None,
    target: bytes | None,
    expected: tuple[str, str] | None,
) -> None:
    src = [] if source is None else [(7, source)]
    mapped = [] if base == "none" else [(7, base if isinstance(base, bytes) else None, target)]
    found = classify(src, mapped)
    got = flattened(found)
    assert got == ([] if expected is None else [(7, *expected)])


# -- the Python recheck after an approximate SQL form ------------------------------------------


class _Side:
    """A TargetSide whose exact checksums are the world's."""

    in_database = True  # its checksums came from SQL forms: the recheck applies

    def __init__(self, world: World) -> None:
        self.world = world

    def mapped(
        self, conn: object, scope: Scope, *, exact: bool = False
    ) -> list[tuple[int, bytes | None, bytes | None]]:
        assert exact and scope.ids is not None
        wanted = set(scope.ids)
        return [m for m in self.world.mapped_stream() if m[0] in wanted]


@st.composite
def approximations(draw: st.DrawFn) -> tuple[World, dict[int, bytes]]:
    """A world, and the target checksums an approximate SQL form gives: some present rows
    get a value that equals nothing (a last-digit tie printed the other way)."""
    world = draw(worlds())
    wrong = draw(st.sets(st.sampled_from(sorted(world.target)))) if world.target else set()
    approx = {i: (b"zz%d" % i if i in wrong else t) for i, t in world.target.items()}
    return world, approx


@settings(max_examples=300)
@given(approximations())
def test_the_recheck_gives_what_exact_checksums_give(
    case: tuple[World, dict[int, bytes]],
) -> None:
    """``diff.EntityRun._recheck``: classified with approximate target checksums, then the
    suspects rechecked exactly, the result is the exact classification, ids still ascending."""
    world, approx = case
    approximate = World(world.source, world.base, approx)
    found = classify(approximate.source_stream(), approximate.mapped_stream())
    run = SimpleNamespace(side=_Side(world), ws=SimpleNamespace(source=None), load=None, conn=None)

    def sums_by_ids(source: object, load: object, ids: list[int]) -> list[tuple[int, bytes]]:
        return [(i, world.source[i]) for i in sorted(ids) if i in world.source]

    with patch.object(diff, "sums_by_ids", sums_by_ids):
        diff.EntityRun._recheck(run, found)  # type: ignore[arg-type]
    exact = classify(world.source_stream(), world.mapped_stream())
    nonempty = {k: {s: v for s, v in sides.items() if v} for k, sides in found.ids.items()}
    assert {k: {s: sorted(v) for s, v in sides.items()} for k, sides in nonempty.items()} == (
        exact.ids
    )
    assert (found.compared, found.equal, found.stale_mappings) == (
        exact.compared,
        exact.equal,
        exact.stale_mappings,
    )
    for kind in TYPES:
        for side, ids in found.ids[kind].items():
            assert ids == sorted(ids), (kind, side, ids)
