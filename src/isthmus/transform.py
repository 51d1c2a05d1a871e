"""One batch of source rows → target lines, legacy keys, checksums and orphans.

Column at a time, not row at a time: the batch is transposed once (``zip(*rows)``), each
column that needs work is mapped by one function, identity columns are not touched, and
the lines are joined back in C. References are translated through the mapping cache in
bulk (one query per parent for the cache's misses, never one per row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus import canonical
from isthmus.canonical import NULL
from isthmus.loadplan import ColumnLoad, EntityLoad

Fields = Sequence[bytes]
# (parent entity, legacy IDs) → their UUIDs as 32 hex digits; IDs mapped nowhere are absent.
Resolver = Callable[[str, Sequence[int]], dict[int, bytes]]


@dataclass
class Orphan:
    index: int  # row in the batch
    column: str
    parent: str
    value: str


@dataclass
class Batch:
    rows: Sequence[Fields]  # as read (COPY-text fields in the load's read order)
    keys: list[Any]  # legacy key of each row: an int, or a tuple for a kept key
    tails: list[bytes]  # target line of each row without the UUID key (with it otherwise)
    checksums: list[str | None]
    orphans: list[Orphan] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)  # row → why its key is bad

    def __len__(self) -> int:
        return len(self.rows)


def _key_value(fields: Fields, count: int) -> Any:
    from isthmus.copytext import unescape

    values = tuple(unescape(f).decode("utf-8", "surrogateescape") for f in fields[:count])
    return values


def transform(load: EntityLoad, rows: Sequence[Fields], resolve: Resolver) -> Batch:
    """Everything the writer needs about ``rows`` (a non-empty batch in key order)."""
    n = len(rows)
    columns = list(zip(*rows, strict=True))
    unreadable: dict[int, str] = {}
    if load.uuid_keyed:
        keys: list[Any] = []
        for i, raw in enumerate(columns[0]):
            try:
                keys.append(int(load.columns[0].normalizer.canonical(raw)))
            except ValueError:
                keys.append(None)
                unreadable[i] = f"key {load.columns[0].source} = {raw!r} is not an integer"
    else:
        keys = [_key_value(r, load.key_count) for r in rows]

    orphans: list[Orphan] = []
    canon: list[Sequence[bytes]] = []
    target: list[Sequence[bytes]] = []
    for position, col in enumerate(load.columns):
        values = columns[position]
        if col.role == "key" and load.uuid_keyed:
            continue
        if col.role in ("reference", "deferred"):
            legacy = _canonical(col, values)
            canon.append(legacy)
            if col.role == "reference":
                target.append(translate_references(col, legacy, resolve, orphans))
            continue
        canonical_values = _canonical(col, values)
        canon.append(canonical_values)
        norm = col.normalizer
        if norm.to_target is norm.canonical:
            target.append(canonical_values)
        else:
            target.append(
                values if norm.to_target is canonical.identity else _map(norm.to_target, values)
            )

    if load.uuid_keyed:
        lines = list(map(b"\t".join, zip(*canon, strict=True))) if canon else [b""] * n
        sums: list[str | None] = list(canonical.checksums(lines))
    else:
        sums = [None] * n
    tails = list(map(b"\t".join, zip(*target, strict=True))) if target else [b""] * n
    return Batch(rows, keys, tails, sums, orphans, unreadable)


def _map(fn: canonical.FieldFn, values: Sequence[bytes]) -> list[bytes]:
    return list(map(fn, values))


def _canonical(col: ColumnLoad, values: Sequence[bytes]) -> Sequence[bytes]:
    fn = col.normalizer.canonical
    return values if fn is canonical.identity else _map(fn, values)


def translate_references(
    col: ColumnLoad, legacy: Sequence[bytes], resolve: Resolver, orphans: list[Orphan]
) -> list[bytes]:
    """Canonical legacy parent IDs → the parent's UUIDs as hex; unmapped ones are orphans
    (recorded, and NULL in the result)."""
    assert col.parent is not None
    distinct = set(legacy)
    distinct.discard(NULL)
    by_id: dict[int, bytes] = {}
    for value in distinct:
        with contextlib.suppress(ValueError):  # not a number: an orphan, reported below
            by_id[int(value)] = value
    found = resolve(col.parent, sorted(by_id)) if by_id else {}
    # Keyed by the canonical text itself: one dict lookup per row, in C.
    as_text: dict[bytes, bytes] = {by_id[k]: u for k, u in found.items()}
    as_text[NULL] = NULL
    looked_up = list(map(as_text.get, legacy))
    if None not in looked_up:
        return looked_up  # type: ignore[return-value]  # no None: every item is bytes
    out: list[bytes] = []
    for i, found_text in enumerate(looked_up):
        if found_text is None:
            orphans.append(Orphan(i, col.source, col.parent, legacy[i].decode("utf-8", "replace")))
        out.append(NULL if found_text is None else found_text)
    return out
