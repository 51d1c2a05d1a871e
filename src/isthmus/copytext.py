"""PostgreSQL COPY text format: field escaping and the text form of Python values.

A COPY TEXT line is fields separated by tabs; in a field, backslash, tab, newline and carriage
return are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``, and NULL is the two bytes ``\\N``.
``to_copy_text`` gives the field PostgreSQL's COPY FROM accepts for the value's natural
target type. Timestamps are written in UTC without an offset (aware ones are converted first),
so a timestamptz column must be loaded on a session with ``TimeZone = 'UTC'``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

NULL = b"\\N"

_UNESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.)|$)", re.DOTALL)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def escape(b: bytes) -> bytes:
    """Escape one field's bytes as COPY TO writes them, so that a field reads the same from
    every source and back from the target (C-level passes; no match costs little)."""
    return (
        b.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b"\b", b"\\b")
        .replace(b"\f", b"\\f")
        .replace(b"\v", b"\\v")
    )


_SPECIAL = (b"\\", b"\t", b"\n", b"\r", b"\b", b"\f", b"\v")


def escape_column(values: Sequence[bytes | None]) -> list[bytes]:
    """COPY fields of a column of values (None → ``\\N``), escaped in a few C-level passes
    over the joined column rather than a call per value; per value only when a value holds
    the separator itself."""
    present: list[bytes] = [b"" if v is None else v for v in values]
    joined = b"\x00".join(present)
    if any(s in joined for s in _SPECIAL):
        if joined.count(b"\x00") == len(present) - 1:
            present = escape(joined).split(b"\x00")
        else:
            present = [escape(v) for v in present]
    if None in values:
        present = [NULL if v is None else p for v, p in zip(values, present, strict=True)]
    return present


def _unescape_one(m: re.Match[bytes]) -> bytes:
    octal, hexa, char = m.groups()
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexa is not None:
        return bytes([int(hexa, 16)])
    if char is None:  # a lone backslash at the end: COPY drops it
        return b""
    return _SIMPLE.get(char, char)


def unescape(b: bytes) -> bytes:
    """The bytes a COPY TEXT field stands for (check for ``NULL`` first: it is not a value).

    Knows every escape COPY FROM does: ``\\b \\f \\n \\r \\t \\v``, octal ``\\NNN``, hex
    ``\\xHH``, and a backslash before any other character meaning that character.
    """
    if b"\\" not in b:
        return b
    return _UNESCAPE.sub(_unescape_one, b)


def hex_bytea(b: bytes | bytearray | memoryview) -> bytes:
    """bytea hex input (``\\x0aff``) with its backslash already escaped for COPY."""
    return b"\\\\x" + bytes(b).hex().encode("ascii")


def float_text(value: float) -> bytes:
    if math.isfinite(value):
        return repr(value).encode("ascii")
    if math.isnan(value):
        return b"NaN"
    return b"Infinity" if value > 0 else b"-Infinity"


def timedelta_text(value: dt.timedelta) -> str:
    """``[D days ]HH:MM:SS[.ffffff]``: interval input, and time input for 0 <= value < 24h."""
    seconds = value.seconds
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if value.microseconds:
        clock += f".{value.microseconds:06d}"
    return f"{value.days} days {clock}" if value.days else clock


def _text(value: object) -> str:
    """The value's text form before COPY escaping (bytes are the caller's business)."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value).decode("ascii")
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return timedelta_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return _array(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _array(items: list[object] | tuple[object, ...]) -> str:
    """A PostgreSQL array literal: ``{"a","b \\"q\\"",NULL}``, nested lists as sub-arrays."""
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list | tuple):
            parts.append(_array(item))
        else:
            if isinstance(item, bytes | bytearray | memoryview):
                text = "\\x" + bytes(item).hex()
            else:
                text = _text(item)
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def to_copy_text(value: object) -> bytes:
    """The COPY TEXT field for a Python value (see the module's docstring)."""
    if value is None:
        return NULL
    if isinstance(value, bytes | bytearray | memoryview):
        return hex_bytea(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    if isinstance(value, float):
        return float_text(value)
    # (surrogateescape: a text read with its bytes kept, as SQLite's non-UTF-8 text is)
    return escape(_text(value).encode("utf-8", "surrogateescape"))


def copy_lines(copy: Iterable[Any]) -> Iterator[bytes]:
    """The lines of a ``COPY … TO STDOUT`` (psycopg's chunks), without their newlines."""
    rest = b""
    for chunk in copy:
        data = rest + bytes(chunk)
        *lines, rest = data.split(b"\n")
        yield from lines
    if rest:
        yield rest
