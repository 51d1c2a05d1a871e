"""One batch of source rows → target fields, legacy keys, checksums and orphans.

Column at a time, not row at a time: the batch arrives as columns (``stream_columns``),
each column that needs work is mapped by one function, identity columns are not touched,
and lines are joined back in C. References are translated through the mapping cache in
bulk (one query per parent for the cache's misses, never one per row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from isthmus import canonical
from isthmus.canonical import NULL
from isthmus.copytext import unescape
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


class Rows:
    """The batch's rows as read, built from its columns only when a row is asked for."""

    def __init__(self, columns: Sequence[Fields]) -> None:
        self.columns = columns

    def __getitem__(self, i: int) -> list[bytes]:
        return [c[i] for c in self.columns]

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0


@dataclass
class Batch:
    columns: Sequence[Fields]  # as read: COPY-text fields per read column
    keys: list[Any]  # legacy key of each row: an int, or a tuple of texts for a kept key
    target: list[Fields]  # target fields per written column (without a UUID key)
    checksums: list[bytes] | None  # md5 hex of the canonical row (UUID-keyed entities)
    orphans: list[Orphan] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)  # row → why its key is bad
    key_text: Sequence[bytes] = ()  # the integer key of each row as canonical decimal text

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def rows(self) -> Rows:
        return Rows(self.columns)

    def lines(self, part: Sequence[int] | None, lead: Sequence[bytes] | None = None) -> bytes:
        """COPY text of the rows ``part`` (all when None): ``lead`` fields, then the target's."""
        columns = [take(c, part) for c in self.target]
        if lead is not None:
            columns.insert(0, lead)
        if not columns:
            return b""
        body = b"\n".join(map(b"\t".join, zip(*columns, strict=True)))
        return body + b"\n" if body or len(columns[0]) else b""


def take(values: Sequence[Any], part: Sequence[int] | None) -> Sequence[Any]:
    """``values`` at the positions ``part`` (all of them when None), picked in C."""
    if part is None:
        return values
    if len(part) == 1:
        return [values[part[0]]]
    if not part:
        return []
    return itemgetter(*part)(values)  # type: ignore[no-any-return]


def transform(load: EntityLoad, columns: Sequence[Fields], resolve: Resolver) -> Batch:
    """Everything the writer needs about a non-empty batch read in key order."""
    n = len(columns[0])
    unreadable: dict[int, str] = {}
    key_text: Sequence[bytes] = ()
    if load.uuid_keyed:
        key_col = load.columns[0]
        key_text = _canonical(key_col, columns[0])
        keys: list[Any] = _integer_keys(key_col, key_text, unreadable)
    else:
        keys = [
            tuple(unescape(f).decode("utf-8", "surrogateescape") for f in row)
            for row in zip(*columns[: load.key_count], strict=True)
        ]

    orphans: list[Orphan] = []
    canon: list[Fields] = []
    target: list[Fields] = []
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
        elif norm.to_target is canonical.identity:
            target.append(values)
        else:
            target.append(list(map(norm.to_target, values)))

    sums: list[bytes] | None = None
    if load.uuid_keyed:
        lines = map(b"\t".join, zip(*canon, strict=True)) if canon else [b""] * n
        sums = canonical.checksums(lines)
    return Batch(columns, keys, target, sums, orphans, unreadable, key_text)


def _integer_keys(col: ColumnLoad, canon: Fields, unreadable: dict[int, str]) -> list[Any]:
    try:
        return list(map(int, canon))
    except ValueError:
        keys: list[Any] = []
        for i, raw in enumerate(canon):
            try:
                keys.append(int(raw))
            except ValueError:
                keys.append(None)
                unreadable[i] = f"key {col.source} = {raw!r} is not an integer"
        return keys


def _canonical(col: ColumnLoad, values: Fields) -> Fields:
    fn = col.normalizer.canonical
    return values if fn is canonical.identity else list(map(fn, values))


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
