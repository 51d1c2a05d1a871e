"""Target rows back into the legacy source: COPY-text fields in, values the source's driver takes out.

The target holds rows as PostgreSQL prints them (COPY TEXT, ``TimeZone = UTC``, ``DateStyle
ISO``): booleans ``t``/``f``, timestamps ``2024-01-02 03:04:05.1234`` (``+00`` on a
timestamptz), bytea ``\\\\x0a0b`` (the backslash COPY-escaped), numerics, JSON text, UUIDs.
Writing a target row into the source (``target_wins``, bidirectional sync) needs each field as
the Python value the source's driver accepts for the *source* column, decided by the source
column's kind and the source's ``Capabilities``, never by which database it is:

- ``native_booleans``: booleans are True/False, else 1/0 (MySQL ``tinyint(1)``, SQLite);
- ``aware_datetimes``: a timestamptz is an aware datetime in UTC, else a naive one in UTC
  (MySQL sessions run with ``time_zone = '+00:00'``);
- ``typed_values`` False (SQLite: a column stores what it is given): dates, times and
  timestamps are written as ISO text, ``YYYY-MM-DD``, ``HH:MM:SS[.ffffff]`` and
  ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC, no offset), the form such tables use, and decimals
  as their text (the column's affinity stores them as SQLite would store the legacy app's).

A typed source gets ``int``, ``Decimal``, ``float``, ``str``, ``bytes``, ``date``, ``time``
and ``datetime`` values; JSON, UUIDs, enums, sets and anything else go as text. A temporal
value Python cannot hold (``infinity``, a BC date, year 10000, ``24:00:00``) goes as its text:
PostgreSQL parses it, other databases refuse it with an error that names the table.

The round trip holds: written with ``SourceDialect.upsert_rows`` and read back with
``stream_text``, a value's canonical form (``isthmus.canonical``) is the original field's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from isthmus.canonical import norm_boolean
from isthmus.copytext import NULL, unescape
from isthmus.dialects.base import Capabilities, Column
from isthmus.errors import IsthmusError

Convert = Callable[[bytes], Any]


class WritebackValueError(IsthmusError, ValueError):
    """A target field cannot become a value of its source column (names the column)."""

    exit_code = 3


def source_value(column: Column, field: bytes, capabilities: Capabilities) -> Any:
    """The value to write into source ``column`` for the target's COPY-text ``field``
    (``\\N`` is None)."""
    return converter(column, capabilities)(field)


def source_rows(
    columns: Sequence[Column], rows: Iterable[Sequence[bytes]], capabilities: Capabilities
) -> list[tuple[Any, ...]]:
    """``rows`` of target COPY-text fields (one per column of ``columns``) as source values."""
    converters = [converter(c, capabilities) for c in columns]
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if len(row) != len(converters):
            raise WritebackValueError(
                f"a row of {len(row)} field(s) for {len(converters)} column(s) "
                f"({', '.join(c.name for c in columns)})"
            )
        out.append(tuple(convert(f) for convert, f in zip(converters, row, strict=True)))
    return out


def converter(column: Column, capabilities: Capabilities) -> Callable[[bytes], Any]:
    """The function from one target field to the source value of ``column``, made once per
    column (``source_rows`` applies it to every row)."""
    convert = _convert_of(column, capabilities)

    def run(field: bytes) -> Any:
        if field == NULL:
            return None
        try:
            return convert(unescape(field))
        except (ValueError, InvalidOperation, UnicodeDecodeError) as exc:
            shown = field if len(field) <= 60 else field[:57] + b"..."
            raise WritebackValueError(
                f"column {column.name!r} ({column.type_name or column.kind}): "
                f"{shown!r} is not a {column.kind} value ({exc})"
            ) from exc

    return run


def _convert_of(column: Column, caps: Capabilities) -> Convert:
    kind = column.kind
    typed = caps.typed_values
    if kind == "integer":
        return _integer
    if kind == "decimal":
        return _decimal if typed else _number_text
    if kind == "float":
        return _float
    if kind == "boolean":
        return _boolean if caps.native_booleans else _boolean_int
    if kind == "bytes":
        return _bytea
    if kind == "date":
        return _date if typed else _date_text
    if kind == "time":
        return _time if typed else _time_text
    if kind == "timestamp":
        return _timestamp if typed else _timestamp_text
    if kind == "timestamptz":
        if not typed:
            return _timestamp_text
        # not aware: a naive datetime in UTC (the source session's zone)
        return _timestamptz if caps.aware_datetimes else _timestamp
    # text, json, uuid, enum, set, interval, array, other: the text itself
    return _text


# -- one converter per kind: unescaped field bytes in ------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")


def _integer(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        value = Decimal(raw.decode("ascii").strip())  # 12.0, 1e3: whole numbers all the same
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError("not a whole number") from None
        return int(value)


def _decimal(raw: bytes) -> Decimal:
    return Decimal(raw.decode("ascii").strip())


def _number_text(raw: bytes) -> str:
    text = raw.decode("ascii").strip()
    Decimal(text)  # refuses what is not a number
    return text


def _float(raw: bytes) -> float:
    return float(raw)


def _bool_of(raw: bytes) -> bool:
    canon = norm_boolean(raw)
    if canon == b"t":
        return True
    if canon == b"f":
        return False
    raise ValueError("not a boolean")


def _boolean(raw: bytes) -> bool:
    return _bool_of(raw)


def _boolean_int(raw: bytes) -> int:
    return 1 if _bool_of(raw) else 0


def _bytea(raw: bytes) -> bytes:
    if raw[:2] == b"\\x":
        return bytes.fromhex(raw[2:].decode("ascii"))
    return _bytea_escape(raw)


def _bytea_escape(raw: bytes) -> bytes:
    """bytea's escape output format: ``\\\\`` and ``\\ooo`` octal, the rest as it is."""
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != 0x5C:
            out.append(c)
            i += 1
        elif raw[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif len(raw) >= i + 4 and all(0x30 <= d <= 0x37 for d in raw[i + 1 : i + 4]):
            out.append(int(raw[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            raise ValueError("invalid bytea escape")
    return bytes(out)


def _parse_datetime(raw: bytes) -> dt.datetime | None:
    """The datetime PostgreSQL printed, or None when Python cannot hold it (infinity, BC)."""
    try:
        return dt.datetime.fromisoformat(raw.decode("ascii").strip())
    except ValueError:
        return None


def _timestamp(raw: bytes) -> dt.datetime | str:
    value = _parse_datetime(raw)
    if value is None:
        return _fallback(raw)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _timestamptz(raw: bytes) -> dt.datetime | str:
    value = _parse_datetime(raw)
    if value is None:
        return _fallback(raw)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _timestamp_text(raw: bytes) -> str:
    value = _parse_datetime(raw)
    if value is None:
        return _fallback(raw)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.year < 1000:  # strftime does not pad the year everywhere
        text = f"{value.year:04d}{text[text.index('-') :]}"
    return text + (f".{value.microsecond:06d}" if value.microsecond else "")


def _date(raw: bytes) -> dt.date | str:
    try:
        return dt.date.fromisoformat(raw.decode("ascii").strip())
    except ValueError:
        return _fallback(raw)


def _date_text(raw: bytes) -> str:
    value = _date(raw)
    return value if isinstance(value, str) else value.isoformat()


def _parse_time(raw: bytes) -> dt.time | None:
    text = raw.decode("ascii").strip()
    if "." in text:  # PostgreSQL drops trailing zeros of the fraction; Python wants 3 or 6 digits
        head, _, fraction = text.partition(".")
        digits = len(fraction) - len(fraction.lstrip("0123456789"))
        if 0 < digits <= 6:
            text = f"{head}.{fraction[:digits].ljust(6, '0')}{fraction[digits:]}"
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        return None


def _time(raw: bytes) -> dt.time | str:
    value = _parse_time(raw)
    return _fallback(raw) if value is None else value


def _time_text(raw: bytes) -> str:
    value = _parse_time(raw)
    if value is None or value.tzinfo is not None:
        return _fallback(raw)
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return text + (f".{value.microsecond:06d}" if value.microsecond else "")


def _fallback(raw: bytes) -> str:
    return raw.decode("utf-8").strip()
