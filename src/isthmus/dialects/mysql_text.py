"""MySQL/MariaDB rows as the server's text bytes -> PostgreSQL COPY text fields.

Both drivers can hand back each value exactly as the server sent it in the text protocol
(connector: ``raw=True``; PyMySQL: no decoders and ``use_unicode=False``), which is already
the text PostgreSQL accepts for numbers and dates. Per column, decided once from its
DATA_TYPE: text-ish values are COPY-escaped, binary values become bytea hex, the rest pass
as they are; None becomes ``\\N`` everywhere.

The per-row work is the hot path of a migration, so the row function is generated once per
query as a single list display (one comprehension over the batch, no inner loop, no call
for a column that needs none). The generated source holds only column positions, never
data or names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

from isthmus.copytext import NULL, escape, escape_column, hex_bytea

Transform = Literal["plain", "escape", "hex"]
TextBatch = Callable[[Sequence[Sequence[bytes | None]]], list[list[bytes]]]

_BINARY = frozenset(
    {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point",
     "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
     "geometrycollection", "vector"}
)  # fmt: skip
# Text that cannot contain a backslash, tab, newline or carriage return.
_PLAIN = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
     "float", "double", "real", "bit", "year", "date", "datetime", "timestamp", "time",
     "uuid", "inet4", "inet6"}
)  # fmt: skip


def transform_of(data_type: str) -> Transform:
    """What a column of this DATA_TYPE needs (unknown types are escaped, to be safe)."""
    if data_type in _PLAIN:
        return "plain"
    if data_type in _BINARY:
        return "hex"
    return "escape"


def text_batch(
    transforms: Sequence[Transform],
    masks: Sequence[Sequence[int]],
    names: Sequence[tuple[str, str]],
    counter: Counter[tuple[str, str]],
) -> TextBatch:
    """A function from fetched raw rows to COPY fields.

    Rows carry ``len(transforms)`` values and then one mask column per group in ``masks``
    (bit i set: the value at ``group[i]`` is a zero or impossible date); flagged values
    become NULL and are counted in ``counter`` under ``names[i]``, and masks are dropped.
    """
    width = len(transforms)
    values = [f"v{i}" for i in range(width)]
    mask_names = [f"m{j}" for j in range(len(masks))]
    fields = []
    for v, how in zip(values, transforms, strict=True):
        if how == "plain":
            fields.append(f"N if {v} is None else {v}")
        elif how == "escape":
            fields.append(f"N if {v} is None else esc({v})")
        else:
            fields.append(f"N if {v} is None else hexa({v})")
    unpack = ", ".join([*values, *mask_names]) + ","
    row = "[" + ", ".join(fields) + "]"
    if mask_names:
        clean = " and ".join(f"{m} == ZERO" for m in mask_names)
        body = f"[{row} if {clean} else fix(row) for row in batch for ({unpack}) in (row,)]"
    else:
        body = f"[{row} for ({unpack}) in batch]"
    source = f"def encode(batch):\n    return {body}\n"
    namespace: dict[str, Any] = {"N": NULL, "esc": escape, "hexa": hex_bytea, "ZERO": b"0"}

    def fix(row: Sequence[bytes | None]) -> list[bytes]:
        fixed = list(row)
        for j, group in enumerate(masks):
            mask = int(fixed[width + j] or b"0")
            for bit, i in enumerate(group):
                if mask >> bit & 1:
                    fixed[i] = None
                    counter[names[i]] += 1
            fixed[width + j] = b"0"
        encoded: list[list[bytes]] = namespace["encode"]([fixed])
        return encoded[0]

    namespace["fix"] = fix
    exec(compile(source, "<isthmus.dialects.mysql_text>", "exec"), namespace)
    encode: TextBatch = namespace["encode"]
    return encode


TextColumns = Callable[[Sequence[Sequence[bytes | None]]], list[Sequence[bytes]]]


def column_batch(
    transforms: Sequence[Transform],
    masks: Sequence[Sequence[int]],
    names: Sequence[tuple[str, str]],
    counter: Counter[tuple[str, str]],
) -> TextColumns:
    """Like :func:`text_batch`, but the batch comes out as columns: one transposition in C,
    then per column only what it needs (a NULL pass when it holds one, escaping of the whole
    column at once); a plain column without NULLs is not touched at all."""
    width = len(transforms)

    def encode(batch: Sequence[Sequence[bytes | None]]) -> list[Sequence[bytes]]:
        columns: list[Sequence[bytes | None]] = list(zip(*batch, strict=True))
        for j, group in enumerate(masks):
            flags = columns[width + j]
            if any(f != b"0" for f in flags):
                _null_zero_dates(columns, flags, group, names, counter)
        out: list[Sequence[bytes]] = []
        for i, how in enumerate(transforms):
            col = columns[i]
            if how == "escape":
                out.append(escape_column(col))
            elif how == "hex":
                out.append([NULL if v is None else hex_bytea(v) for v in col])
            elif None in col:
                out.append([NULL if v is None else v for v in col])
            else:
                out.append(col)  # type: ignore[arg-type]  # no None in it
        return out

    return encode


def _null_zero_dates(
    columns: list[Sequence[bytes | None]],
    flags: Sequence[bytes | None],
    group: Sequence[int],
    names: Sequence[tuple[str, str]],
    counter: Counter[tuple[str, str]],
) -> None:
    for row, flag in enumerate(flags):
        mask = int(flag or b"0")
        for bit, i in enumerate(group):
            if mask >> bit & 1:
                col = columns[i]
                if not isinstance(col, list):
                    col = columns[i] = list(col)
                col[row] = None
                counter[names[i]] += 1
