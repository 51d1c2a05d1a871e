"""The source's side of a differential: (legacy ID, checksum) of its rows in key order.

The checksums are the ones the migration stores in the mappings (same columns, same
canonical form, computed a column at a time), so a source row equals its base exactly when
it has not changed since isthmus last wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from isthmus import canonical
from isthmus.canonical import FieldFn
from isthmus.copytext import to_copy_text
from isthmus.dialects.base import SourceDialect
from isthmus.dialects.keyset import chunked
from isthmus.loadplan import EntityLoad

Fields = Sequence[bytes]


def _positions(load: EntityLoad) -> list[int]:
    checksummed = set(map(id, load.checksummed))
    return [i for i, c in enumerate(load.columns) if id(c) in checksummed]


def batch_sums(
    load: EntityLoad, columns: Sequence[Fields], normalizers: Sequence[FieldFn] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(legacy ID, checksum) of a batch read as columns; rows whose key is not an integer
    are left out (the migration quarantines them)."""
    positions = _positions(load)
    fns = normalizers or [c.normalizer.canonical for c in load.columns]
    key_fn = fns[0]
    keys = list(map(key_fn, columns[0]))
    canon: list[Fields] = []
    for p in positions:
        fn = fns[p]
        canon.append(columns[p] if fn is canonical.identity else list(map(fn, columns[p])))
    n = len(keys)
    lines = map(b"\t".join, zip(*canon, strict=True)) if canon else iter([b""] * n)
    for key, checksum in zip(keys, canonical.checksums(lines), strict=True):
        try:
            yield int(key), checksum
        except ValueError:
            continue


def source_sums(
    source: SourceDialect,
    load: EntityLoad,
    *,
    after: int | None = None,
    upto: int | None = None,
    since: tuple[str, Any] | None = None,
    batch_size: int = 10_000,
) -> Iterator[tuple[int, bytes]]:
    """(legacy ID, checksum) of the source rows with ``after`` < key <= ``upto`` (and, with
    ``since``, changed since then), in key order."""
    for columns in source.stream_columns(
        load.source_table,
        load.read_columns,
        load.key_columns,
        after=None if after is None else (after,),
        upto=None if upto is None else (upto,),
        batch_size=batch_size,
        since=since,
    ):
        yield from batch_sums(load, columns)


def full_normalizers(load: EntityLoad) -> list[FieldFn]:
    """Each column's normalizer for fields in any text form (not only its reader's)."""
    return [c.any_text for c in load.columns]


def fetch_fields(source: SourceDialect, load: EntityLoad, ids: Sequence[int]) -> list[list[bytes]]:
    """The source rows with these legacy IDs as COPY fields of the read columns, as the
    driver gives them (``loose`` normalizers put them in canonical form)."""
    out: list[list[bytes]] = []
    for part in chunked(sorted(set(ids)), 5_000):
        rows = source.fetch_keys(load.source_table, load.read_columns, load.key_columns[0], part)
        out.extend(list(map(to_copy_text, row)) for row in rows)
    return out


def rows_by_ids(
    source: SourceDialect, load: EntityLoad, ids: Sequence[int]
) -> dict[int, list[bytes]]:
    """Canonical fields (all read columns) of the source rows with these legacy IDs."""
    fns = full_normalizers(load)
    out: dict[int, list[bytes]] = {}
    for row in fetch_fields(source, load, ids):
        fields = [fn(v) for fn, v in zip(fns, row, strict=True)]
        try:
            out[int(fields[0])] = fields
        except ValueError:
            continue
    return out


def sums_by_ids(
    source: SourceDialect, load: EntityLoad, ids: Sequence[int]
) -> Iterator[tuple[int, bytes]]:
    """(legacy ID, checksum) of the source rows with these legacy IDs, in key order."""
    rows = rows_by_ids(source, load, ids)
    positions = _positions(load)
    for legacy_id in sorted(rows):
        fields = rows[legacy_id]
        line = canonical.checksum_line([fields[p] for p in positions])
        yield legacy_id, canonical.checksum(line).encode()
