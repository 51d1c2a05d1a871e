"""Canonical rows and their checksums: what "the same row" means, whatever the database.

A row travels as PostgreSQL COPY text fields (bytes, escaped as COPY TEXT escapes them,
NULL as ``\\N``; see :mod:`isthmus.copytext`), whichever database it was read from. Each
field is put in canonical form by the *kind* of the target column it lands in:

- integers in plain decimal, decimals by value (``12.30`` and ``12.3`` are one value,
  never an exponent), floats at a declared precision (15 significant digits for
  ``double precision``; ``real`` rounded to single precision), booleans as ``t``/``f`` (``1``/``0`` too);
- timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (a timestamp without a zone is
  taken as UTC), dates as ``YYYY-MM-DD``, times as ``HH:MM:SS.ffffff``;
- text as UTF-8 exactly (trailing spaces count), UUIDs in lower case, bytes as lower-case
  hex, JSON as PostgreSQL's jsonb prints it (keys ordered, one space after ``:`` and ``,``);
- NULL distinct from the empty string; anything else as its text.

The canonical row is its canonical fields joined by tabs (an escaped field holds no
tab, so the join cannot be ambiguous), and its checksum the MD5 of that line in hex.
Migration, differentials, sync and validation all use this module.

Typed sources (PostgreSQL, MySQL) already print most kinds canonically: those fields pass
through untouched (``Normalizer.identity``), which keeps the hot path cheap. SQLite stores
whatever it was given, so its fields always go through the full normalizers.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from operator import methodcaller
from typing import Any, Literal

CHECKSUM_ALGORITHM = "md5-canonical-v1"
_hexdigest = methodcaller("hexdigest")
NULL = b"\\N"

CanonKind = Literal[
    "integer",
    "decimal",
    "float8",
    "float4",
    "boolean",
    "text",
    "bytes",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "uuid",
    "json",
    "other",
]

Field = bytes
FieldFn = Callable[[Field], Field]

_PG_KINDS: dict[str, CanonKind] = {
    "smallint": "integer",
    "integer": "integer",
    "bigint": "integer",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "numeric": "decimal",
    "decimal": "decimal",
    "double precision": "float8",
    "float8": "float8",
    "real": "float4",
    "float4": "float4",
    "boolean": "boolean",
    "bool": "boolean",
    "text": "text",
    "character varying": "text",
    "varchar": "text",
    "character": "text",
    "bpchar": "text",
    "char": "text",
    "name": "text",
    "citext": "text",
    "bytea": "bytes",
    "date": "date",
    "time without time zone": "time",
    "time": "time",
    "timestamp without time zone": "timestamp",
    "timestamp": "timestamp",
    "timestamp with time zone": "timestamptz",
    "timestamptz": "timestamptz",
    "uuid": "uuid",
    "json": "json",
    "jsonb": "json",
}


def kind_of_pg_type(type_name: str, *, is_enum: bool = False) -> CanonKind:
    """The canonical kind of a PostgreSQL column type as ``format_type`` prints it."""
    if is_enum:
        return "text"
    name = type_name.strip().lower()
    if name.endswith("[]"):
        return "other"
    base = re.sub(r"\(.*?\)", "", name).strip()
    return _PG_KINDS.get(base, "other")


# --- the normalizers, one per kind: COPY-text field in, canonical field out ---------------

_DIGITS = frozenset(b"0123456789")
_INTEGER = re.compile(rb"0|-?[1-9][0-9]*")
_PLAIN_DECIMAL = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_TS_FULL = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?")
_DATE = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(rb"[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?")
_BOOLS = {
    b"t": b"t",
    b"true": b"t",
    b"1": b"t",
    b"y": b"t",
    b"yes": b"t",
    b"on": b"t",
    b"f": b"f",
    b"false": b"f",
    b"0": b"f",
    b"n": b"f",
    b"no": b"f",
    b"off": b"f",
}
_SPECIAL_FLOATS = {
    b"inf": b"Infinity",
    b"-inf": b"-Infinity",
    b"nan": b"NaN",
    b"-nan": b"NaN",
    b"-0": b"0",
}


def _text(field: Field) -> str:
    from isthmus.copytext import unescape

    return unescape(field).decode("utf-8", "surrogateescape")


def _escaped(text: str) -> Field:
    from isthmus.copytext import escape

    return escape(text.encode("utf-8"))  # a lone surrogate raises (UnicodeEncodeError)


def norm_integer(field: Field) -> Field:
    if field == NULL or _INTEGER.fullmatch(field):
        return field
    try:
        value = Decimal(_text(field).strip())
    except InvalidOperation:
        return field  # not a number: the target will refuse it, and say so
    # (not int() of 1e999999999: no integer column holds it, and it would take forever)
    if value.is_finite() and value.adjusted() < 4_000 and value == value.to_integral_value():
        return b"%d" % int(value)
    return field


# PostgreSQL's numeric holds up to 131072 digits before the point and 16383 after it.
_NUMERIC_BEFORE, _NUMERIC_AFTER = 131_072, 16_383


def _beyond_numeric(value: Decimal) -> bool:
    """Past what numeric holds: no target column can take it, and its plain form could be
    huge (``1e999999999`` is a billion digits), so it keeps an exponent."""
    return value.adjusted() >= _NUMERIC_BEFORE or int(value.as_tuple().exponent) < -_NUMERIC_AFTER


def _decimal_text(value: Decimal) -> Field:
    if value.is_nan():
        return b"NaN"
    if value.is_infinite():
        return b"-Infinity" if value < 0 else b"Infinity"
    if value.is_zero():
        return b"0"
    if _beyond_numeric(value):  # digits without trailing zeros, and the exponent: one spelling
        sign, digits, exponent = value.as_tuple()
        text = "".join(map(str, digits))
        kept = text.rstrip("0")
        return f"{'-' if sign else ''}{kept}E{int(exponent) + len(text) - len(kept)}".encode()
    return _strip_zeros(format(value, "f").encode())


def _strip_zeros(text: Field) -> Field:
    """A plain decimal (``-?(0|[1-9][0-9]*)(\\.[0-9]+)?``) without trailing fraction zeros."""
    if b"." in text:
        text = text.rstrip(b"0").rstrip(b".")
    return b"0" if text == b"-0" else text


def norm_decimal(field: Field) -> Field:
    if field == NULL:
        return field
    if _PLAIN_DECIMAL.fullmatch(field):
        return _strip_zeros(field)
    try:
        return _decimal_text(Decimal(_text(field).strip()))
    except InvalidOperation:
        return field


def _float_normalizer(digits: int) -> FieldFn:
    pattern = b"%%.%dg" % digits

    def norm_float(field: Field) -> Field:
        if field == NULL:
            return field
        try:
            text = pattern % float(field)
        except ValueError:
            return field
        return _SPECIAL_FLOATS.get(text, text)

    return norm_float


norm_float8 = _float_normalizer(15)
_norm_float4_digits = _float_normalizer(9)  # 9 significant digits tell every float32 apart


def norm_float4(field: Field) -> Field:
    """A ``real``: the value rounded to single precision first (as PostgreSQL stores it), so
    that ``0.10000000149011612`` and ``0.1`` agree, and so do subnormals of few digits."""
    if field == NULL:
        return field
    try:
        single = struct.unpack("f", struct.pack("f", float(field)))[0]
    except (ValueError, OverflowError):
        return field
    return _norm_float4_digits(repr(single).encode())


def norm_boolean(field: Field) -> Field:
    if field == NULL:
        return field
    found = _BOOLS.get(field)
    if found is not None:
        return found
    lowered = field.strip().lower()
    found = _BOOLS.get(lowered)
    if found is not None:
        return found
    try:
        return b"t" if float(lowered) != 0 else b"f"
    except ValueError:
        return field


def _format_datetime(value: datetime) -> Field:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return b"%04d-%02d-%02d %02d:%02d:%02d.%06d" % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _pad_fraction(text: Field, at: int) -> Field:
    """``text`` with its fraction (after position ``at``) padded to six digits."""
    if len(text) == at:
        return text + b".000000"
    return text + b"0" * (at + 7 - len(text))


def norm_timestamp(field: Field) -> Field:
    if field == NULL:
        return field
    if field.endswith(b"+00"):  # timestamptz printed by a UTC session
        field = field[:-3]
    size = len(field)
    # (the fraction all digits: `…:07.123+02` is 26 bytes too; `…14:00+02` is 19)
    if size == 26 and field[10:11] == b" " and field[19:20] == b"." and field[20:].isdigit():
        return field
    if size == 19 and field[10:11] == b" " and field[16:17] == b":" and field[18] in _DIGITS:
        return field + b".000000"
    if _TS_FULL.fullmatch(field):
        return _pad_fraction(field, 19)
    text = _text(field).strip()
    if text.lower() in ("infinity", "-infinity"):
        return text.lower().encode()
    try:
        return _format_datetime(datetime.fromisoformat(text))
    except ValueError:
        return field


def norm_date(field: Field) -> Field:
    if field == NULL or (len(field) == 10 and _DATE.fullmatch(field)):
        return field
    text = _text(field).strip()
    if _DATE.match(text.encode("utf-8", "surrogateescape")):  # (bytes that are not UTF-8 too)
        try:
            return datetime.fromisoformat(text).date().isoformat().encode()
        except ValueError:
            return text[:10].encode()
    return field


def norm_time(field: Field) -> Field:
    if field == NULL:
        return field
    if _TIME.fullmatch(field):
        return _pad_fraction(field, 8)
    return field


def norm_uuid(field: Field) -> Field:
    if field == NULL:
        return field
    text = field.strip(b"{}").lower()
    if len(text) == 32:
        text = b"-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))
    return text


def _jsonb_dump(value: Any) -> str:
    """``value`` printed as PostgreSQL prints jsonb (keys shortest first, then bytewise)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: {_jsonb_dump(value[k])}" for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return _decimal_json(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _decimal_json(value: Decimal) -> str:
    # jsonb keeps a number's scale as written (1.0 stays 1.0) but drops an exponent
    # (1E+28 prints all its digits; quantize would overflow the context) and a zero's sign.
    if value.is_finite() and _beyond_numeric(value):  # jsonb refuses it: kept short
        return str(value)
    return format(value.copy_abs() if value.is_zero() else value, "f")


def norm_json(field: Field) -> Field:
    if field == NULL:
        return field
    try:
        value = json.loads(_text(field), parse_float=Decimal)
        return _escaped(_jsonb_dump(value))
    except ValueError:  # not JSON, or a lone surrogate ("\ud800"): jsonb refuses it as it is
        return field


def identity(field: Field) -> Field:
    return field


NORMALIZERS: dict[CanonKind, FieldFn] = {
    "integer": norm_integer,
    "decimal": norm_decimal,
    "float8": norm_float8,
    "float4": norm_float4,
    "boolean": norm_boolean,
    "text": identity,
    "bytes": identity,
    "date": norm_date,
    "time": norm_time,
    "timestamp": norm_timestamp,
    "timestamptz": norm_timestamp,
    "uuid": norm_uuid,
    "json": norm_json,
    "other": identity,
}

# Kinds whose canonical text PostgreSQL cannot take back without losing something: the
# target gets the field as read (a float's every digit), the checksum the canonical form.
_TARGET_KEEPS_RAW = frozenset({"float8", "float4", "json"})

# What a typed source (PostgreSQL, MySQL) already prints canonically, by its column kind.
_TYPED_CANONICAL: dict[CanonKind, frozenset[str]] = {
    "integer": frozenset({"integer"}),
    "text": frozenset({"text", "enum", "set", "other"}),
    "bytes": frozenset({"bytes"}),
    "date": frozenset({"date"}),
    "other": frozenset(
        {"other", "array", "interval", "text", "enum", "set", "json", "uuid", "time"}
    ),
}


@dataclass(frozen=True)
class Normalizer:
    """How one column's fields become canonical, and what the target receives."""

    kind: CanonKind
    canonical: FieldFn
    to_target: FieldFn

    @property
    def identity(self) -> bool:
        return self.canonical is identity and self.to_target is identity


@dataclass(frozen=True)
class SourceColumn:
    """What the source says of a column: enough to know which fields are canonical already."""

    kind: str | None = None  # isthmus.dialects.base.ColumnKind
    precision: int | None = None
    scale: int | None = None
    typed: bool = True  # its database enforces the declared type (SQLite does not)
    pads_fractions: bool = False  # temporal text always has `precision` fractional digits


def _append_zero_fraction(field: Field) -> Field:
    return field if field == NULL else field + b".000000"


def _strip_fixed_scale(field: Field) -> Field:
    # A typed decimal of scale > 0 always prints a point: trailing zeros go, and then it.
    text = field.rstrip(b"0").rstrip(b".")
    return b"0" if text == b"-0" else text


def normalizer(kind: CanonKind, source: SourceColumn | None = None) -> Normalizer:
    """The normalizer of a column of ``source`` landing in a ``kind`` target column."""
    src = source or SourceColumn(typed=False)
    if src.typed and src.kind is not None:
        if src.kind in _TYPED_CANONICAL.get(kind, ()):
            return Normalizer(kind, identity, identity)
        temporal = kind in ("timestamp", "timestamptz") and src.kind in ("timestamp", "timestamptz")
        if temporal and src.pads_fractions and src.precision == 6:
            return Normalizer(kind, identity, identity)
        if temporal and src.pads_fractions and not src.precision:
            return Normalizer(kind, _append_zero_fraction, identity)
        if temporal:
            return Normalizer(kind, norm_timestamp, identity)
        if kind == "decimal" and src.kind == "decimal" and src.scale:
            return Normalizer(kind, _strip_fixed_scale, identity)
    canon = NORMALIZERS[kind]
    target = identity if kind in _TARGET_KEEPS_RAW else canon
    return Normalizer(kind, canon, target)


def checksum_line(fields: Sequence[Field]) -> Field:
    """The canonical line of canonical ``fields`` (tab-joined)."""
    return b"\t".join(fields)


def checksum(line: Field) -> str:
    return hashlib.md5(line, usedforsecurity=False).hexdigest()


def checksums(lines: Iterable[Field]) -> list[bytes]:
    """The checksum of each canonical line as hex bytes (what a COPY line carries), the
    per-line calls made in C: this runs once per migrated row."""
    md5 = partial(hashlib.md5, usedforsecurity=False)
    return list(map(str.encode, map(_hexdigest, map(md5, lines))))
