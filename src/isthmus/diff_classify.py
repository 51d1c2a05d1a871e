"""Which legacy IDs differ between source and target, of what kind, and on which side.

Three streams in legacy-ID order meet here: the source's checksums, and for every mapping its
base checksum (what both sides held when isthmus last wrote the row) with the checksum of
the mapped target row (``None`` when that row is gone). The base tells who changed a row:

=================================  ====================  ==========================
source / mapping / target          comparison_type       side
=================================  ====================  ==========================
row / none / -                     missing_records       source (new in the source)
row / base / gone                  missing_records       target (deleted there), or
                                                         both (source changed too)
gone / base / row                  deleted_records       source, or both (target
                                                         changed too)
row / base / row, checksums differ conflicted_records    source (target = base),
                                                         target (source = base), both,
                                                         unknown (no base checksum)
=================================  ====================  ==========================

Equal checksums are no difference whatever the base says; a mapping whose rows are gone on
both sides is no difference either (counted as stale). Target rows no mapping points at
(created in the target) are found apart, by :mod:`isthmus.diff`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

MISSING = "missing_records"
CONFLICTED = "conflicted_records"
DELETED = "deleted_records"
TYPES = (MISSING, CONFLICTED, DELETED)
SIDES = ("source", "target", "both", "unknown")

_T = TypeVar("_T", bound=tuple[Any, ...])

# (legacy ID, checksum as hex bytes)
SourceSums = Iterable[tuple[int, bytes]]
# (legacy ID, base checksum or None, target checksum or None when the target row is gone)
MappedSums = Iterable[tuple[int, bytes | None, bytes | None]]


@dataclass
class Found:
    """Differences by comparison type, then side, as legacy IDs in ascending order."""

    ids: dict[str, dict[str, list[int]]] = field(default_factory=lambda: {t: {} for t in TYPES})
    created_in_target: list[str] = field(default_factory=list)  # target keys, no mapping
    compared: int = 0  # legacy IDs looked at
    equal: int = 0
    stale_mappings: int = 0  # mapped, gone from both sides
    stale_ids: list[int] = field(default_factory=list)  # their legacy IDs
    # equal on both sides, but not to the mapping's base: (legacy ID, the checksum both hold)
    rebase: list[tuple[int, bytes]] = field(default_factory=list)
    keep_rebase: bool = True  # a comparison that only validates does not collect it

    def add(self, kind: str, side: str, legacy_id: int) -> None:
        self.ids[kind].setdefault(side, []).append(legacy_id)

    def of(self, kind: str) -> list[int]:
        """All legacy IDs of ``kind``, ascending."""
        sides = self.ids[kind].values()
        return sorted(i for ids in sides for i in ids)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {t: {s: len(v) for s, v in self.ids[t].items() if v} for t in TYPES}
        if self.created_in_target:
            out[DELETED]["target"] = len(self.created_in_target)
        return out

    @property
    def total(self) -> int:
        return sum(len(v) for t in TYPES for v in self.ids[t].values()) + len(
            self.created_in_target
        )

    def drop(self, ids: set[int]) -> None:
        """Forget what was found about ``ids`` (to look at them again)."""
        for kind in TYPES:
            for side, members in self.ids[kind].items():
                kept = [i for i in members if i not in ids]
                self.compared -= len(members) - len(kept)
                self.ids[kind][side] = kept

    def merge(self, other: Found) -> None:
        for kind in TYPES:
            for side, ids in other.ids[kind].items():
                self.ids[kind].setdefault(side, []).extend(ids)
                self.ids[kind][side].sort()
        self.created_in_target.extend(other.created_in_target)
        self.compared += other.compared
        self.equal += other.equal
        self.stale_mappings += other.stale_mappings
        self.stale_ids.extend(other.stale_ids)
        self.rebase.extend(other.rebase)


def classify(source: SourceSums, mapped: MappedSums, found: Found | None = None) -> Found:
    """Merge the two ordered streams into ``found`` (a new one when None)."""
    out = found if found is not None else Found()
    src = _ordered(iter(source), "source")
    mpd = _ordered(iter(mapped), "mapping")
    s = next(src, None)
    m = next(mpd, None)
    while s is not None or m is not None:
        out.compared += 1
        if m is None or (s is not None and s[0] < m[0]):
            assert s is not None
            out.add(MISSING, "source", s[0])
            s = next(src, None)
            continue
        if s is None or m[0] < s[0]:
            legacy_id, base, target = m
            if target is None:
                out.stale_mappings += 1
                out.stale_ids.append(legacy_id)
            else:
                out.add(DELETED, "source" if _same(target, base) else "both", legacy_id)
            m = next(mpd, None)
            continue
        legacy_id, base, target = m
        source_sum = s[1]
        if target is None:
            changed = base and source_sum != base
            out.add(MISSING, "both" if changed else "target", legacy_id)
        elif source_sum == target:
            out.equal += 1
            if base != source_sum and out.keep_rebase:
                out.rebase.append((legacy_id, source_sum))
        elif not base:
            out.add(CONFLICTED, "unknown", legacy_id)
        elif target == base:
            out.add(CONFLICTED, "source", legacy_id)
        elif source_sum == base:
            out.add(CONFLICTED, "target", legacy_id)
        else:
            out.add(CONFLICTED, "both", legacy_id)
        s = next(src, None)
        m = next(mpd, None)
    return out


def _same(target: bytes, base: bytes | None) -> bool:
    """The target row is as isthmus left it (no base checksum: nothing says otherwise)."""
    return not base or target == base


def _ordered(items: Iterator[_T], what: str) -> Iterator[_T]:
    """``items`` checked to come in strictly ascending legacy-ID order: a merge of unordered
    streams would report false differences, so that is a bug to stop at, loudly."""
    last: int | None = None
    for item in items:
        if last is not None and item[0] <= last:
            raise RuntimeError(f"{what} checksums out of order: legacy id {item[0]} after {last}")
        last = item[0]
        yield item
