"""A bounded in-memory cache of legacy-ID → UUID mappings, compact and queried in bulk.

Per entity, a segment holds three parallel arrays sorted by legacy ID: the IDs
(``array('q')``) and the two 64-bit halves of the UUIDs (``array('Q')`` each):
24 bytes per mapping, about 29 MB for 1.2 million, where a dict of Python ints
to UUID objects takes some 180 bytes per entry. Lookups are binary searches.
Additions past the largest cached ID (a migration walking up its keys) are
appended in place; others wait in a small dict and are merged in chunks of
``merge_every``, so that scattered puts do not copy a whole segment each time.

Bound and eviction: at most ``max_entries`` mappings in all. When a put goes
over, whole entities are dropped, least recently used first (a get or a put
uses an entity); when the entity just written is the only one left and still
too big, its lowest legacy IDs are dropped (a migration has moved past them).

Entries written inside a transaction that later rolls back stay cached:
callers that roll back a batch call :meth:`MappingCache.evict` for its entities.
"""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any
from uuid import UUID

import psycopg

from isthmus import mapping
from isthmus.uuids import uuid_from_int, uuids_from_ints

DEFAULT_MAX_ENTRIES = 2_000_000
DEFAULT_MERGE_EVERY = 16_384
_LOW64 = (1 << 64) - 1
_get_int = operator.attrgetter("int")
_HEX = b"%032x"


class _Segment:
    """One entity's mappings: sorted parallel arrays plus a dict of recent additions."""

    __slots__ = ("hi", "keys", "lo", "pending")

    def __init__(self) -> None:
        self.keys = array("q")
        self.hi = array("Q")
        self.lo = array("Q")
        self.pending: dict[int, UUID] = {}  # keys never also in self.keys

    def __len__(self) -> int:
        return len(self.keys) + len(self.pending)

    def lookup(self, ids: Iterable[int]) -> tuple[list[int], list[int], list[int]]:
        """(IDs found in the arrays, their UUIDs as ints, IDs not found there)."""
        keys, hi, lo, n = self.keys, self.hi, self.lo, len(self.keys)
        found: list[int] = []
        ints: list[int] = []
        missing: list[int] = []
        add_found, add_int, add_missing = found.append, ints.append, missing.append
        # A plain loop measured faster than chains of map(): each map() layer
        # costs about as much as a bisect probe.
        for x in ids:
            at = bisect_left(keys, x)
            if at < n and keys[at] == x:
                add_found(x)
                add_int((hi[at] << 64) | lo[at])
            else:
                add_missing(x)
        return found, ints, missing

    def position(self, legacy_id: int) -> int:
        at = bisect_left(self.keys, legacy_id)
        return at if at < len(self.keys) and self.keys[at] == legacy_id else -1

    def append_sorted(self, ids: list[int], ints: list[int]) -> None:
        self.keys.extend(ids)
        self.hi.extend(map(operator.rshift, ints, repeat(64)))
        self.lo.extend(map(operator.and_, ints, repeat(_LOW64)))

    def overwrite(self, at: int, value: int) -> None:
        self.hi[at] = value >> 64
        self.lo[at] = value & _LOW64

    def merge_pending(self) -> None:
        """Fold the pending dict into the arrays: one pass of slice copies."""
        if not self.pending:
            return
        items = sorted(self.pending.items())
        self.pending = {}
        keys, hi, lo = self.keys, self.hi, self.lo
        new_keys, new_hi, new_lo = array("q"), array("Q"), array("Q")
        prev = 0
        for k, u in items:
            at = bisect_left(keys, k, prev)
            if at > prev:
                new_keys += keys[prev:at]
                new_hi += hi[prev:at]
                new_lo += lo[prev:at]
                prev = at
            value = u.int
            new_keys.append(k)
            new_hi.append(value >> 64)
            new_lo.append(value & _LOW64)
        new_keys += keys[prev:]
        new_hi += hi[prev:]
        new_lo += lo[prev:]
        self.keys, self.hi, self.lo = new_keys, new_hi, new_lo

    def drop_lowest(self, count: int) -> None:
        self.merge_pending()
        self.keys = self.keys[count:]
        self.hi = self.hi[count:]
        self.lo = self.lo[count:]

    def nbytes(self) -> int:
        arrays = sum(a.buffer_info()[1] * a.itemsize for a in (self.keys, self.hi, self.lo))
        return arrays + 200 * len(self.pending)  # a dict slot, an int and a UUID each


class MappingCache:
    """Bounded legacy-ID → UUID cache, per entity (see the module docstring for the policy)."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        merge_every: int = DEFAULT_MERGE_EVERY,
    ) -> None:
        if max_entries < 1:
            raise ValueError("MappingCache: max_entries must be at least 1")
        self.max_entries = max_entries
        self.merge_every = max(1, merge_every)
        self._segments: OrderedDict[str, _Segment] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def entities(self) -> list[str]:
        """Cached entities, least recently used first."""
        return list(self._segments)

    def entity_size(self, entity: str) -> int:
        seg = self._segments.get(entity)
        return 0 if seg is None else len(seg)

    def nbytes(self) -> int:
        """Approximate bytes held by the cached mappings."""
        return sum(seg.nbytes() for seg in self._segments.values())

    def get_many(self, entity: str, legacy_ids: Iterable[int]) -> tuple[dict[int, UUID], list[int]]:
        """(mapped UUID of each cached ID, the IDs not cached: unique, in input order)."""
        ids = dict.fromkeys(legacy_ids)
        seg = self._segments.get(entity)
        if seg is None:
            return {}, list(ids)
        self._segments.move_to_end(entity)
        hit_ids, ints, missing = seg.lookup(ids)
        found = dict(zip(hit_ids, uuids_from_ints(ints), strict=True))
        if missing and seg.pending:
            pending, still = seg.pending, []
            for i in missing:
                u = pending.get(i)
                if u is None:
                    still.append(i)
                else:
                    found[i] = u
            missing = still
        return found, missing

    def get(self, entity: str, legacy_id: int) -> UUID | None:
        return self.get_many(entity, [legacy_id])[0].get(legacy_id)

    def put_many(
        self, entity: str, mappings: Mapping[int, UUID] | Iterable[tuple[int, UUID]]
    ) -> None:
        """Cache mappings (a later put of the same legacy ID replaces its UUID)."""
        items = dict(mappings)
        if not items:
            return
        seg = self._segments.get(entity)
        if seg is None:
            seg = self._segments[entity] = _Segment()
        else:
            self._segments.move_to_end(entity)
        before = len(seg)
        ids = sorted(items)
        if not seg.pending and (not seg.keys or ids[0] > seg.keys[-1]):
            seg.append_sorted(ids, list(map(_get_int, map(items.__getitem__, ids))))
        else:
            pending = seg.pending
            for i in ids:
                at = seg.position(i)
                if at >= 0:
                    seg.overwrite(at, items[i].int)
                else:
                    pending[i] = items[i]
            if len(pending) >= self.merge_every:
                seg.merge_pending()
        self._size += len(seg) - before
        self._enforce_bound(entity)

    def resolve_many(
        self, conn: psycopg.Connection[Any], schema: str, entity: str, legacy_ids: Iterable[int]
    ) -> dict[int, UUID]:
        """Mapped UUIDs of ``legacy_ids``: cache hits, plus the misses fetched in bulk and cached.

        IDs mapped nowhere are absent from the result.
        """
        found, missing = self.get_many(entity, legacy_ids)
        if missing:
            fetched = mapping.resolve(conn, schema, entity, missing)
            if fetched:
                self.put_many(entity, fetched)
                found.update(fetched)
        return found

    def resolve_hex(
        self, conn: psycopg.Connection[Any], schema: str, entity: str, legacy_ids: Iterable[int]
    ) -> dict[int, bytes]:
        """Like :meth:`resolve_many`, with each UUID as 32 lower-case hex digits (bytes):
        what a COPY line needs, without making a UUID object per ID on the hot path."""
        ids = dict.fromkeys(legacy_ids)
        seg = self._segments.get(entity)
        found: dict[int, bytes] = {}
        missing: list[int] = list(ids)
        if seg is not None:
            self._segments.move_to_end(entity)
            hit_ids, ints, missing = seg.lookup(ids)
            found = dict(zip(hit_ids, map(_HEX.__mod__, ints), strict=True))
            if missing and seg.pending:
                still = []
                for i in missing:
                    u = seg.pending.get(i)
                    if u is None:
                        still.append(i)
                    else:
                        found[i] = _HEX % u.int
                missing = still
        if missing:
            fetched = mapping.resolve(conn, schema, entity, missing)
            if fetched:
                self.put_many(entity, fetched)
                found.update((k, _HEX % u.int) for k, u in fetched.items())
        return found

    def put_ints(self, entity: str, mappings: Mapping[int, int]) -> None:
        """Cache mappings given as 128-bit integers (see :meth:`put_many`)."""
        if not mappings:
            return
        seg = self._segments.get(entity)
        ids = sorted(mappings)
        if seg is not None and (seg.pending or (seg.keys and ids[0] <= seg.keys[-1])):
            # Not past the largest cached ID: put_many's merging path, as UUIDs.
            self.put_many(entity, {i: uuid_from_int(mappings[i]) for i in ids})
            return
        if seg is None:
            seg = self._segments[entity] = _Segment()
        else:
            self._segments.move_to_end(entity)
        seg.append_sorted(ids, [mappings[i] for i in ids])
        self._size += len(ids)
        self._enforce_bound(entity)

    def evict(self, entity: str) -> None:
        """Forget one entity's mappings (after a rollback, or to free memory)."""
        seg = self._segments.pop(entity, None)
        if seg is not None:
            self._size -= len(seg)

    def clear(self) -> None:
        self._segments.clear()
        self._size = 0

    def _enforce_bound(self, current: str) -> None:
        while self._size > self.max_entries and len(self._segments) > 1:
            self.evict(next(iter(self._segments)))  # least recently used; never `current`
        if self._size > self.max_entries:
            excess = self._size - self.max_entries
            self._segments[current].drop_lowest(excess)
            self._size -= excess
