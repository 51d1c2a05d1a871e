"""Property tests: the canonical form never tells a faithful cross-dialect copy from its source.

For each source dialect (SQLite, MariaDB/MySQL, PostgreSQL), a legacy table with an integer
key and a column of every kind a legacy system has gets a batch of generated rows, after a
fixed set of edge rows (trailing spaces, tabs, newlines, backslashes, ``\\N`` as text, empty
strings and NULLs, extreme numbers, ``-0``, timestamps at 0, 3 and 6 fractional digits,
booleans stored as integers, UUIDs in upper case...). isthmus derives the target
(``schema --apply``) and migrates the table into a fresh PostgreSQL database. Then:

- ``source_checksums`` equals ``target_checksums`` for every legacy ID (no false
  difference), whatever the time zone of the session that reads the target;
- after one value is changed in some rows on the source side (every column once, each in
  its own row), exactly those rows' checksums differ (no false equality), while rows where
  only the spelling of a value changed (a UUID's case, JSON's layout, ``1`` for ``true``)
  still agree;
- the next migration updates exactly the changed rows, and the copy is faithful again.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import MysqlDatabases, PgDatabases
from dialect_support import quote, run_sql
from isthmus import commands
from isthmus.canonical import NORMALIZERS
from isthmus.config import load_config
from isthmus.loadplan import EntityLoad, build_load
from isthmus.row_checksums import source_checksums, target_checksums
from isthmus.target import reflect_table
from isthmus.urls import DatabaseURL, parse_url
from isthmus.workspace import Workspace
from migrate_support import STATE, write_config

TABLE = "legacy"
# Each example migrates a whole table into a fresh target (about a second); raise the count
# with ISTHMUS_XD_EXAMPLES for a deeper search.
EXAMPLES = int(os.environ.get("ISTHMUS_XD_EXAMPLES", "4"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[p for p in Phase if p != Phase.shrink or not os.environ.get("ISTHMUS_XD_NOSHRINK")],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
# Session time zones the target is read in besides UTC: odd offsets, DST, half hours.
ZONES = ["Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "Europe/Amsterdam"]


@dataclass(frozen=True)
class Col:
    """A legacy column: its declaration, the values a legacy system puts in it, and how to
    change a stored value into a genuinely different one (``change``) or into another
    spelling of the same value (``respell``: the checksum must not move)."""

    name: str
    ddl: str
    values: st.SearchStrategy[Any]  # non-NULL values
    edges: tuple[Any, ...]  # always in the table, one per edge row (NULL among them)
    change: Callable[[Any], Any]
    respell: Callable[[Any], Any] | None = None


# -- values and their changes ---------------------------------------------------------------

# PostgreSQL text cannot hold NUL, and neither jsonb (\u0000): no target could store it, so no
# legacy value carrying one can be copied faithfully. Surrogates are not UTF-8.
CHARS = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
TEXT_EDGES: tuple[Any, ...] = (
    None,
    "",
    " ",
    "trailing  ",
    "  leading",
    "\t",
    "tab\there",
    "line\nbreak\r\n",
    "back\\slash\\",
    "\\N",
    "NULL",
    "Zürich – Łódź 😀 日本",
    "a" * 37 + "😀é ",  # 40 characters: a varchar(40) full to its last (trailing) space
    "\x01\x08\x0b\x0c\x7f",
)


def text(size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(CHARS, max_size=min(size or 24, 24))


def change_text(size: int | None = None) -> Callable[[Any], Any]:
    """NULL ↔ empty string, else one more trailing space (or one less, at the size limit)."""

    def change(v: Any) -> Any:
        if v is None:
            return ""
        if v == "":
            return None
        return v[:-1] if size is not None and len(v) >= size else v + " "

    return change


def change_char(v: Any) -> Any:
    """For CHAR(n), which MySQL reads without its trailing spaces: another first character."""
    if v is None or not v.strip():
        return "q"
    return ("r" if v[0] == "q" else "q") + v[1:]


def change_int(low: int, high: int) -> Callable[[Any], Any]:
    return lambda v: 0 if v is None else v + 1 if v < high else v - 1


def change_decimal(digits: int, places: int) -> Callable[[Any], Any]:
    unit = Decimal(1).scaleb(-places)
    top = Decimal(10) ** (digits - places) - unit

    def change(v: Any) -> Any:
        if v is None:
            return Decimal(0)
        d = Decimal(v)
        if not d.is_finite():
            return Decimal("1.5")
        return d + unit if d + unit <= top else d - unit

    return change


def change_numeric(v: Any) -> Any:
    """An unbounded numeric: its opposite (exact at any size), or 1 for zero and NaN."""
    return Decimal(1) if v is None or v.is_nan() or v.is_zero() else -v


def decimals(digits: int, places: int) -> st.SearchStrategy[Decimal]:
    top = Decimal(10) ** (digits - places) - Decimal(1).scaleb(-places)
    return st.decimals(min_value=-top, max_value=top, places=places)


def single(v: float) -> float:
    return float(struct.unpack("f", struct.pack("f", v))[0])


def change_float(width: int) -> Callable[[Any], Any]:
    """Another value at the column's precision (1.5 and -2.25 are exact in both widths)."""

    def change(v: Any) -> Any:
        if v is None:
            return 0.0
        stored = single(v) if width == 32 else v
        return -2.25 if stored == 1.5 else 1.5

    return change


def change_bool(v: Any) -> Any:
    return False if v is None else not truthy(v)


def truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("t", "true", "y", "yes", "on", "1")
    return bool(v)


def change_date(v: Any) -> Any:
    if v is None:
        return dt.date(2000, 1, 1)
    return v + dt.timedelta(days=1) if v.year < 9999 else v - dt.timedelta(days=1)


def change_timestamp(digits: int) -> Callable[[Any], Any]:
    """One unit of the column's precision later (or earlier, at the end of time)."""
    unit = dt.timedelta(microseconds=10 ** (6 - digits))

    def change(v: Any) -> Any:
        if v is None:
            return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        return v + unit if v.year < 9999 else v - unit

    return change


def change_enum(members: tuple[str, ...]) -> Callable[[Any], Any]:
    return lambda v: members[0] if v is None or v != members[0] else members[1]


def change_json(v: Any) -> Any:
    """SQL NULL becomes JSON ``null``; a value is wrapped in an array."""
    return "null" if v is None else "[" + v + "]"


def respell_json(v: Any) -> Any:
    """The same JSON, laid out otherwise: keys sorted, indented, a space before colons."""
    if v is None:
        return None
    return _layout(json.loads(v, parse_float=Decimal, parse_int=Decimal))


def _layout(value: Any) -> str:
    """JSON text with its numbers as written (1e400 is no float), keys sorted, spaced out."""
    if isinstance(value, dict):
        items = (f"{json.dumps(k)} : {_layout(value[k])}" for k in sorted(value))
        return "{\n  " + ",\n  ".join(items) + "\n}"
    if isinstance(value, list):
        return "[ " + " ,\t".join(_layout(v) for v in value) + " ]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=True)


def change_bytes(v: Any) -> Any:
    return b"" if v is None else None if v == b"" else bytes(v) + b"\x00"


def change_fixed_bytes(v: Any) -> Any:
    """For BINARY(n), which pads with zero bytes: the first byte flipped."""
    if v is None or v == b"":
        return b"\x01"
    return bytes([v[0] ^ 0xFF]) + bytes(v[1:])


def change_uuid(v: Any) -> Any:
    u = uuid.UUID(str(v)) if v is not None else uuid.UUID(int=1)
    return str(uuid.UUID(int=u.int ^ 1)).upper()


def change_uuid_text(v: Any) -> Any:
    """A UUID kept as text: its case is part of the value; a digit-only one gets a letter."""
    if v is None:
        return "00000000-0000-0000-0000-00000000000A"
    swapped = v.swapcase()
    return swapped if swapped != v else v[:-1] + "a"


def respell_uuid(v: Any) -> Any:
    """The same UUID in another spelling (typed uuid columns only)."""
    if v is None:
        return None
    u = uuid.UUID(str(v).strip("{}"))
    return "{" + str(u).upper() + "}" if str(v).islower() or str(v) == str(u) else str(u)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(4), inner, max_size=3),
    max_leaves=5,
).map(lambda v: json.dumps(v, ensure_ascii=False))
JSON_EDGES: tuple[Any, ...] = (
    None,
    "null",
    "{}",
    "[]",
    '""',
    '{"b": 1, "a": [1.0, 1e16, -0.0, 1.5e-7], "ab": "x\\ty\\\\z\\n"}',
    '{"k": "ünï 😀", "k2": null, "": true}',
    '{"a": 1, "a": [2]}',  # the last of duplicate keys wins, in jsonb as in Python
    "[1e400, -1E-7, 123456789012345678901234567890.50, 0.0, 1.0]",
    '"\\u00e9\\ud83d\\ude00\\/"',  # escapes that jsonb prints as the characters
)
UUIDS_UPPER = st.uuids().map(lambda u: str(u).upper())


def naive(low: int = 1, high: int = 9999) -> st.SearchStrategy[dt.datetime]:
    return st.datetimes(
        min_value=dt.datetime(low, 1, 2), max_value=dt.datetime(high, 12, 30, 23, 59, 59)
    )


TS_EDGES: tuple[Any, ...] = (
    None,
    dt.datetime(2021, 3, 4, 5, 6, 7),
    dt.datetime(2021, 3, 4, 5, 6, 7, 120000),
    dt.datetime(2021, 3, 4, 5, 6, 7, 123456),
    dt.datetime(2021, 3, 4, 5, 6, 7, 999999),
    dt.datetime(1999, 12, 31, 23, 59, 59, 500000),
    dt.datetime(1970, 1, 1),
)


def aware(ts: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(None if v is None else v.replace(tzinfo=dt.UTC) for v in ts)


# -- SQLite: whatever the application wrote, as text, integers, reals or blobs --------------

# Separator, and suffix: none, Z, or an offset (hours only, as PostgreSQL prints it, too).
_SQLITE_STYLES = [" ", "T", "TZ", " +02:00", " +02", " -03:30", "T-11"]


def sqlite_timestamp(digits: int) -> st.SearchStrategy[str]:
    def spell(v: dt.datetime, style: str) -> str:
        v = v.replace(microsecond=v.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits))
        spec = {0: "seconds", 3: "milliseconds", 6: "microseconds"}[digits]
        return v.isoformat(style[0], spec) + style[1:]

    return st.builds(spell, naive(2, 9998), st.sampled_from(_SQLITE_STYLES))


def _parse(v: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(v)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def sqlite_change_timestamp(v: Any) -> Any:
    """One unit of the text's own precision later, in the plainest spelling."""
    if v is None:
        return "2000-01-01 00:00:00"
    fraction = re.search(r"\.([0-9]+)", v)
    digits = len(fraction[1]) if fraction else 0
    spec = {0: "seconds", 3: "milliseconds", 6: "microseconds"}[digits]
    return (_parse(v) + dt.timedelta(microseconds=10 ** (6 - digits))).isoformat(" ", spec)


def sqlite_change_decimal(v: Any) -> Any:
    """Visible in the REAL that SQLite keeps of the decimal (15 significant digits)."""
    if v is None:
        return "0"
    d = Decimal(v)
    return str(d + 1 if abs(d) < 10**8 else d * 2)


def sqlite_respell_timestamp(v: Any) -> Any:
    return None if v is None else _parse(v).isoformat("T", "microseconds") + "Z"


def sqlite_respell_bool(v: Any) -> Any:
    return None if v is None else "true" if truthy(v) else "false"


def sqlite_change_date(v: Any) -> Any:
    if v is None:
        return "2000-01-01"
    day = dt.date.fromisoformat(v[:10])
    return change_date(day).isoformat()


def sqlite_respell_date(v: Any) -> Any:
    """A date written as a midnight datetime, as ORMs do."""
    return None if v is None else v[:10] + " 00:00:00"


SQLITE_COLUMNS: tuple[Col, ...] = (
    Col(
        "i",
        "INTEGER",
        st.integers(-(2**63), 2**63 - 1),
        (None, 0, -1, 2**63 - 1, -(2**63)),
        change_int(-(2**63), 2**63 - 1),
    ),
    # NUMERIC affinity: SQLite stores a decimal's text as an INTEGER or a REAL (15 significant
    # digits), so a legacy SQLite decimal is that number; 12 digits survive it.
    Col(
        "d",
        "NUMERIC(12,4)",
        decimals(12, 4).map(str),
        (None, "0", "-0.0000", "12.3000", "0.0001", "99999999.9999", "-99999999.9999", "1e20"),
        sqlite_change_decimal,
    ),
    # SQLite turns NaN into NULL on the way in: a NaN never is in an SQLite table to copy.
    Col(
        "f",
        "REAL",
        st.floats(allow_nan=False),
        (None, 0.0, -0.0, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, float("inf"), 2.0**53 + 2),
        change_float(64),
    ),
    Col("g", "DOUBLE", st.floats(allow_nan=False), (None, 1e-7, -1e16), change_float(64)),
    Col(
        "b",
        "BOOLEAN",
        st.sampled_from([0, 1, True, False, "t", "f", "true", "FALSE", "Y", "n", "yes"]),
        (None, 0, 1, "true", "f"),
        change_bool,
        sqlite_respell_bool,
    ),
    Col(
        "bt", "TINYINT(1)", st.sampled_from([0, 1]), (None, 1, 0), change_bool, sqlite_respell_bool
    ),
    Col("s", "VARCHAR(40)", text(), TEXT_EDGES, change_text()),
    Col("t", "TEXT", text(), tuple(reversed(TEXT_EDGES)), change_text()),
    Col(
        "dt",
        "DATE",
        st.dates(min_value=dt.date(1, 1, 2)).map(dt.date.isoformat),
        (None, "2021-03-04", "0001-01-02", "9999-12-30", "2021-03-04 00:00:00"),
        sqlite_change_date,
        sqlite_respell_date,
    ),
    Col(
        "ts0",
        "DATETIME",
        sqlite_timestamp(0) | sqlite_timestamp(3) | sqlite_timestamp(6),
        (
            None,
            "2021-03-04 05:06:07",
            "2021-03-04T05:06:07.120Z",
            "2021-03-04 07:06:07.500+02:00",
            "2021-03-04 07:06:07.120+02",  # 26 bytes, like a canonical timestamp
            "2021-03-04 07:06+02",  # 19 bytes, like a timestamp without a fraction
        ),
        sqlite_change_timestamp,
        sqlite_respell_timestamp,
    ),
    Col(
        "ts3",
        "DATETIME(3)",
        sqlite_timestamp(3) | sqlite_timestamp(0),
        (None, "2021-03-04 05:06:07.120", "2021-03-04T05:06:07Z"),
        sqlite_change_timestamp,
        sqlite_respell_timestamp,
    ),
    Col(
        "ts6",
        "TIMESTAMP(6)",
        sqlite_timestamp(6) | sqlite_timestamp(3) | sqlite_timestamp(0),
        (None, "2021-03-04 05:06:07.123456", "2021-03-04 05:06:07.000001"),
        sqlite_change_timestamp,
        sqlite_respell_timestamp,
    ),
    Col(
        "j",
        "JSON",
        JSON_VALUES,
        JSON_EDGES,
        change_json,
        respell_json,
    ),
    Col(
        "u",
        "UUID",
        UUIDS_UPPER | st.uuids().map(str) | st.uuids().map(lambda u: u.hex),
        (None, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}"),
        change_uuid,
        respell_uuid,
    ),
    Col(
        "ut",
        "VARCHAR(36)",
        UUIDS_UPPER,
        (None, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        change_uuid_text,
    ),
    Col("bl", "BLOB", st.binary(max_size=40), (None, b"", b"\x00", b"\\N\t\n"), change_bytes),
)


# -- MariaDB / MySQL ------------------------------------------------------------------------

FLOAT_MAX = 3.4028234663852886e38  # the largest float32 (bounds keep Hypothesis from rejects)
ENUM_MEMBERS = ("active", "Inactive", "on hold", "it's", "ünï")
MYSQL_NAIVE = naive(1000, 9999)  # the documented DATETIME range starts at 1000-01-01
# TIMESTAMP holds 1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC.
MYSQL_STAMPS = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2038, 1, 18)
).map(lambda v: v.replace(tzinfo=dt.UTC))

MYSQL_COLUMNS: tuple[Col, ...] = (
    Col(
        "i",
        "INT",
        st.integers(-(2**31), 2**31 - 1),
        (None, 0, -(2**31), 2**31 - 1),
        change_int(-(2**31), 2**31 - 1),
    ),
    Col(
        "bi",
        "BIGINT",
        st.integers(-(2**63), 2**63 - 1),
        (None, 2**63 - 1, -(2**63)),
        change_int(-(2**63), 2**63 - 1),
    ),
    Col(
        "ub",
        "BIGINT UNSIGNED",
        st.integers(0, 2**64 - 1),
        (None, 0, 2**64 - 1),
        change_int(0, 2**64 - 1),
    ),
    Col("y", "YEAR", st.integers(1901, 2155), (None, 0, 1901, 2155), change_int(1901, 2155)),
    Col(
        "d",
        "DECIMAL(12,4)",
        decimals(12, 4),
        (
            None,
            Decimal("0"),
            Decimal("-0.0000"),
            Decimal("12.3000"),
            Decimal("0.0001"),
            Decimal("-99999999.9999"),
        ),
        change_decimal(12, 4),
    ),
    Col(
        "d0",
        "DECIMAL(18,0)",
        decimals(18, 0),
        (None, Decimal(0), Decimal(10**18 - 1)),
        change_decimal(18, 0),
    ),
    # FLOAT is single precision; MySQL cannot store NaN or infinities.
    Col(
        "f",
        "FLOAT",
        st.floats(min_value=-FLOAT_MAX, max_value=FLOAT_MAX, width=32),
        (None, 0.0, -0.0, 0.1, 16777217.0, 1e-45, 3.4028234663852886e38, 1.17549435e-38),
        change_float(32),
    ),
    Col(
        "g",
        "DOUBLE",
        st.floats(allow_nan=False, allow_infinity=False),
        (None, 0.0, -0.0, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 2.0**53 + 2),
        change_float(64),
    ),
    # booleans as integers: a legacy tinyint(1) holds any -128..127, and every non-zero is true.
    Col(
        "b",
        "TINYINT(1)",
        st.sampled_from([0, 1, 2, -1, 127, -128]),
        (None, 0, 1, 2, -1),
        change_bool,
        lambda v: None if v is None else (2 if v == 1 else 1) if truthy(v) else 0,
    ),
    Col("bt", "BIT(1)", st.sampled_from([0, 1]), (None, 0, 1), change_bool),
    Col("s", "VARCHAR(40)", text(40), TEXT_EDGES, change_text(40)),
    Col("t", "TEXT", text(), tuple(reversed(TEXT_EDGES)), change_text()),
    Col("c", "CHAR(8)", text(8), (None, "", "ab", "ab  ", " x"), change_char),
    # a legacy latin1 (in MySQL: cp1252) column, read through a utf8mb4 connection
    Col(
        "l",
        "VARCHAR(20) CHARACTER SET latin1",
        st.text(st.characters(codec="cp1252", blacklist_characters="\x00"), max_size=20),
        (None, "", "€ café ", "Ÿ\\\t"),
        change_text(20),
    ),
    Col(
        "dt",
        "DATE",
        st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 30)),
        (None, dt.date(1000, 1, 1), dt.date(9999, 12, 30)),
        change_date,
    ),
    Col("ts0", "DATETIME", MYSQL_NAIVE, TS_EDGES, change_timestamp(0)),
    Col("ts3", "DATETIME(3)", MYSQL_NAIVE, TS_EDGES, change_timestamp(3)),
    Col("ts6", "DATETIME(6)", MYSQL_NAIVE, TS_EDGES, change_timestamp(6)),
    Col(
        "tz",
        "TIMESTAMP(6) NULL DEFAULT NULL",
        MYSQL_STAMPS,
        aware(TS_EDGES[:-1]),
        change_timestamp(6),
    ),
    Col(
        "tz0",
        "TIMESTAMP NULL DEFAULT NULL",
        MYSQL_STAMPS,
        aware(TS_EDGES[:-1]),
        change_timestamp(0),
    ),
    Col(
        "e",
        "ENUM(" + ", ".join("'" + m.replace("'", "''") + "'" for m in ENUM_MEMBERS) + ")",
        st.sampled_from(ENUM_MEMBERS),
        (None, *ENUM_MEMBERS),
        change_enum(ENUM_MEMBERS),
    ),
    Col(
        "st",
        "SET('a','b','c d')",
        st.sampled_from(["", "a", "b,a", "a,c d", "c d,b,a"]),
        (None, "", "a,b"),
        lambda v: "b" if v != "b" else "a",
    ),
    Col("j", "JSON", JSON_VALUES, JSON_EDGES, change_json, respell_json),
    Col(
        "ut",
        "CHAR(36)",
        UUIDS_UPPER,
        (None, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        change_uuid_text,
    ),
    # MariaDB's UUID type refuses versions 8 to 15 ("Incorrect uuid value"): none is stored.
    Col(
        "u",
        "UUID",
        st.uuids().map(lambda u: str(uuid.UUID(int=u.int & ~(8 << 76))).upper()),
        (None, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
        change_uuid,
    ),
    Col("bl", "BLOB", st.binary(max_size=40), (None, b"", b"\x00", b"\\N\t\n"), change_bytes),
    # UUIDs kept as 16 bytes; BINARY pads a shorter value with zero bytes
    Col("bu", "BINARY(16)", st.binary(max_size=16), (None, b"", b"\x00" * 16), change_fixed_bytes),
)


# -- PostgreSQL -----------------------------------------------------------------------------

PG_COLUMNS: tuple[Col, ...] = (
    Col(
        "i",
        "integer",
        st.integers(-(2**31), 2**31 - 1),
        (None, 0, -(2**31)),
        change_int(-(2**31), 2**31 - 1),
    ),
    Col(
        "si",
        "smallint",
        st.integers(-(2**15), 2**15 - 1),
        (None, -(2**15)),
        change_int(-(2**15), 2**15 - 1),
    ),
    Col(
        "bi",
        "bigint",
        st.integers(-(2**63), 2**63 - 1),
        (None, 2**63 - 1),
        change_int(-(2**63), 2**63 - 1),
    ),
    Col(
        "d",
        "numeric(12,4)",
        decimals(12, 4),
        (
            None,
            Decimal("0"),
            Decimal("-0.0000"),
            Decimal("12.3000"),
            Decimal("0.0001"),
            Decimal("NaN"),
        ),
        change_decimal(12, 4),
    ),
    Col(
        "n",
        "numeric",
        st.decimals(allow_nan=False, allow_infinity=False),
        (
            None,
            Decimal("NaN"),
            Decimal("Infinity"),
            Decimal("-Infinity"),
            Decimal("1E+30"),
            Decimal("1.000E-20"),
            Decimal("-0"),
        ),
        change_numeric,
    ),
    Col(
        "f",
        "real",
        st.floats(width=32),
        (None, 0.0, -0.0, 0.1, float("nan"), float("inf"), float("-inf"), 1e-45, 16777217.0),
        change_float(32),
    ),
    Col(
        "g",
        "double precision",
        st.floats(),
        (None, 0.0, -0.0, 0.1, float("nan"), float("-inf"), 5e-324, 1.7976931348623157e308),
        change_float(64),
    ),
    Col("b", "boolean", st.booleans(), (None, True, False), change_bool),
    Col("s", "varchar(40)", text(40), TEXT_EDGES, change_text(40)),
    Col("t", "text", text(), tuple(reversed(TEXT_EDGES)), change_text()),
    Col("c", "char(8)", text(8), (None, "", "ab", "ab  ", " x"), change_char),
    Col(
        "dt",
        "date",
        st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 30)),
        (None, dt.date(1, 1, 1), dt.date(9999, 12, 30)),
        change_date,
    ),
    Col("ts0", "timestamp(0)", naive(), TS_EDGES, change_timestamp(0)),
    Col("ts3", "timestamp(3)", naive(), TS_EDGES, change_timestamp(3)),
    Col("ts6", "timestamp", naive(), TS_EDGES, change_timestamp(6)),
    Col(
        "tz",
        "timestamptz(3)",
        st.datetimes(
            min_value=dt.datetime(2, 1, 1),
            max_value=dt.datetime(9998, 12, 31),
            timezones=st.timezones(),
        ),
        aware(TS_EDGES),
        change_timestamp(3),
    ),
    Col(
        "e", "mood", st.sampled_from(ENUM_MEMBERS), (None, *ENUM_MEMBERS), change_enum(ENUM_MEMBERS)
    ),
    Col("j", "jsonb", JSON_VALUES, JSON_EDGES, change_json),
    Col("jt", "json", JSON_VALUES, JSON_EDGES, change_json, respell_json),
    Col("u", "uuid", UUIDS_UPPER, (None, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), change_uuid),
    Col(
        "ut",
        "varchar(36)",
        UUIDS_UPPER,
        (None, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        change_uuid_text,
    ),
    Col("bl", "bytea", st.binary(max_size=40), (None, b"", b"\x00", b"\\N\t\n"), change_bytes),
)

COLUMNS = {"sqlite": SQLITE_COLUMNS, "mysql": MYSQL_COLUMNS, "postgresql": PG_COLUMNS}


# -- the legacy table on each source ----------------------------------------------------------


def create_table(url: DatabaseURL, columns: tuple[Col, ...]) -> None:
    key = {"sqlite": "INTEGER", "mysql": "INT", "postgresql": "integer"}[url.dialect]
    body = ", ".join([f"id {key} PRIMARY KEY", *(f"{c.name} {c.ddl}" for c in columns)])
    statements = [f"DROP TABLE IF EXISTS {TABLE}"]
    if url.dialect == "postgresql":
        members = ", ".join("'" + m.replace("'", "''") + "'" for m in ENUM_MEMBERS)
        statements += ["DROP TYPE IF EXISTS mood", f"CREATE TYPE mood AS ENUM ({members})"]
    statements.append(f"CREATE TABLE {TABLE} ({body})")
    if url.dialect == "mysql":
        statements[-1] += " CHARACTER SET utf8mb4"
    run_sql(url, statements)


def session(url: DatabaseURL) -> list[str | tuple[str, list[Any]]]:
    # MySQL TIMESTAMP values are given in UTC; the session zone would shift them otherwise.
    return ["SET time_zone = '+00:00'"] if url.dialect == "mysql" else []


def insert(url: DatabaseURL, columns: tuple[Col, ...], rows: dict[int, dict[str, Any]]) -> None:
    names = ["id", *(c.name for c in columns)]
    marks = ", ".join(["%s"] * len(names))
    statement = f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
    statements = session(url)
    for key, row in rows.items():
        statements.append((statement, [key, *(row[c.name] for c in columns)]))
    run_sql(url, statements)


def update(url: DatabaseURL, changes: list[tuple[int, str, Any]]) -> None:
    statements = session(url)
    for key, column, value in changes:
        statements.append(
            (f"UPDATE {TABLE} SET {quote(url, column)} = %s WHERE id = %s", [value, key])  # noqa: S608
        )
    run_sql(url, statements)


# -- checksums on both sides, and what differs when they do not agree -----------------------


@dataclass
class Sides:
    source: dict[int, str]
    target: dict[int, str]
    by_zone: dict[str, dict[int, str]]  # the target read in other session time zones

    def differing(self) -> set[int]:
        assert self.source.keys() == self.target.keys()
        return {k for k in self.source if self.source[k] != self.target[k]}


def entity_load(ws: Workspace, conn: psycopg.Connection[Any]) -> EntityLoad:
    (planned,) = ws.plan.entities
    table = reflect_table(conn, ws.config.target.schema_, planned.entity.target_table)
    return build_load(planned, table, ws.plan, ws.source.capabilities)


def both_sides(config_path: Path, zone: str) -> Sides:
    with Workspace(load_config(config_path)) as ws, psycopg.connect(ws.target_conninfo) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        load = entity_load(ws, conn)
        source = dict(source_checksums(ws.source, load))
        target = dict(target_checksums(conn, load, STATE))
        conn.execute(f"SET TimeZone = '{zone}'")
        other = dict(target_checksums(conn, load, STATE))
    return Sides(source, target, {zone: other})


def explain(config_path: Path, keys: set[int]) -> str:
    """Column by column, the canonical fields of the first differing rows on both sides."""
    lines = []
    with Workspace(load_config(config_path)) as ws, psycopg.connect(ws.target_conninfo) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        load = entity_load(ws, conn)
        cols = load.checksummed
        read = [c.source for c in load.columns]
        source: dict[int, list[tuple[bytes, bytes]]] = {}
        for batch in ws.source.stream_text(TABLE, read, [load.columns[0].source]):
            for row in batch:
                legacy = int(row[0])
                if legacy in keys:
                    fields = [row[read.index(c.source)] for c in cols]
                    source[legacy] = [
                        (f, c.normalizer.canonical(f)) for f, c in zip(fields, cols, strict=True)
                    ]
        names = ", ".join(f"t.{c.target}" for c in cols)
        query = (
            f"COPY (SELECT m.legacy_id, {names} FROM public.{TABLE} t JOIN {STATE}.legacy_id_mappings m"  # noqa: S608
            f" ON m.uuid_id = t.id AND m.entity_type = '{TABLE}') TO STDOUT"
        )
        with conn.cursor() as cur, cur.copy(query) as copy:
            data = b"".join(bytes(c) for c in copy)
        for line in data.splitlines():
            key, *fields = line.split(b"\t")
            if int(key) not in keys:
                continue
            for (raw, canon), field, col in zip(source[int(key)], fields, cols, strict=True):
                got = NORMALIZERS[col.kind](field)
                if got != canon:
                    lines.append(
                        f"id {int(key)} {col.source} ({col.kind}): source {raw!r} -> {canon!r},"
                        f" target {field!r} -> {got!r}"
                    )
    return "\n".join(lines[:20])


# -- the property -------------------------------------------------------------------------------


def row_strategy(columns: tuple[Col, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {c.name: st.one_of(st.sampled_from(c.edges), c.values) for c in columns}
    )


def edge_rows(columns: tuple[Col, ...]) -> list[dict[str, Any]]:
    count = max(len(c.edges) for c in columns)
    return [{c.name: c.edges[n % len(c.edges)] for c in columns} for n in range(count)]


def fresh_target(url: DatabaseURL) -> None:
    """The target database as new: no state schema, an empty public schema."""
    run_sql(
        url,
        [
            f"DROP SCHEMA IF EXISTS {STATE} CASCADE",
            "DROP SCHEMA public CASCADE",
            "CREATE SCHEMA public",
        ],
    )


@dataclass
class Source:
    url: Callable[[int], DatabaseURL]  # a source database for the n-th example


def source_for(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> Source:
    if dialect == "sqlite":
        return Source(lambda n: parse_url(f"sqlite:///{tmp_path / f'legacy{n}.db'}"))
    if dialect == "mysql":
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        my = mysql.create("isthmus_xd")
        return Source(lambda n: my)
    pg: PgDatabases = request.getfixturevalue("pg_databases")
    src = pg.create("isthmus_xd_src")
    return Source(lambda n: src)


@pytest.mark.parametrize("dialect", ["sqlite", "mysql", "postgresql"])
def test_a_faithful_copy_never_differs_and_a_change_always_does(
    dialect: str, request: pytest.FixtureRequest, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    columns = COLUMNS[dialect]
    sources = source_for(dialect, request, tmp_path)
    target = pg_databases.create("isthmus_xd_tgt")
    edges = edge_rows(columns)
    # rows enough for one change per column and one respelling per column that has one, each
    # in its own row (every example's data must fit Hypothesis's buffer: keep it small)
    wanted = len(columns) + len([c for c in columns if c.respell is not None]) + 2
    counter = iter(range(1_000_000))

    @SETTINGS
    @given(
        generated=st.lists(
            row_strategy(columns), min_size=max(1, wanted - len(edges)), max_size=wanted + 10
        ),
        data=st.data(),
    )
    def check(generated: list[dict[str, Any]], data: st.DataObject) -> None:
        n = next(counter)
        started = time.perf_counter()
        rows_list = edges + generated
        # sparse legacy ids, as gaps from 0 (no uniqueness filter to satisfy)
        gaps = data.draw(
            st.lists(st.integers(1, 10**7), min_size=len(rows_list), max_size=len(rows_list)),
            label="gaps between legacy ids",
        )
        keys = list(itertools.accumulate(gaps))
        rows = dict(zip(keys, rows_list, strict=True))
        url = sources.url(n)
        create_table(url, columns)
        insert(url, columns, rows)
        directory = tmp_path / f"example{n}"
        directory.mkdir()
        fresh_target(target)
        config_path = write_config(directory / "isthmus.toml", url, target)
        config = load_config(config_path)
        commands.init(config)
        commands.schema(config, apply=True)
        first = commands.migrate(config)
        (outcome,) = [e.to_dict() for e in first.entities]
        assert first.exit_code == 0 and outcome["inserted"] == len(rows), (
            outcome,
            [(q.legacy_key, q.reason[:300]) for q in commands.quarantine_list(config)][:3],
        )

        # 1. a faithful copy: every row agrees, in whatever zone the target is read
        zone = data.draw(st.sampled_from(ZONES), label="target session zone")
        sides = both_sides(config_path, zone)
        assert sides.source.keys() == set(rows), "source rows missing from the checksums"
        assert sides.target.keys() == set(rows), "target rows missing from the checksums"
        differ = sides.differing()
        assert not differ, "false difference:\n" + explain(config_path, differ)
        assert sides.by_zone[zone] == sides.target, f"the target reads otherwise in {zone}"
        clean = commands.diff(config)  # the diff engine itself (SQL forms included) agrees
        assert clean.total == 0, [
            (d.comparison_type, d.metadata.get("sides"), d.metadata.get("columns_differing"))
            for d in commands.differentials_list(config)
        ]

        # 2. one value changed per row (every column once): exactly those rows differ;
        # another spelling of the same value (every column that has one): no row differs
        order = data.draw(st.permutations(keys), label="rows to change")
        respelled = [(c.name, c.respell) for c in columns if c.respell is not None]
        changes = [
            (k, c.name, c.change(rows[k][c.name])) for k, c in zip(order, columns, strict=False)
        ]
        spellings = [
            (k, name, respell(rows[k][name]))
            for k, (name, respell) in zip(order[len(columns) :], respelled, strict=False)
        ]
        update(url, changes + spellings)
        after = both_sides(config_path, zone)
        changed = {k for k, _, _ in changes}
        missed = changed - after.differing()
        assert not missed, "false equality: " + str(
            [(k, c, rows[k][c], v) for k, c, v in changes if k in missed]
        )
        extra = after.differing() - changed
        assert not extra, "a respelling differs:\n" + explain(config_path, extra)
        assert after.target == sides.target
        found = commands.diff(config)
        (entity,) = found.entities
        assert set(entity.found.of("conflicted_records")) == changed, entity.to_dict()
        assert found.total == len(changed), entity.to_dict()

        # 3. the differential migration moves exactly the changed rows, and agrees again
        second = commands.migrate(config)
        (again,) = [e.to_dict() for e in second.entities]
        assert second.exit_code == 0, again
        assert (again["inserted"], again["updated"]) == (0, len(changed)), again
        final = both_sides(config_path, zone)
        assert not final.differing(), "after the update:\n" + explain(
            config_path, final.differing()
        )
        print(f"{dialect} example {n}: {len(rows)} rows in {time.perf_counter() - started:.1f}s")

    check()


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        # 26 bytes like `YYYY-MM-DD HH:MM:SS.ffffff`, but a 3-digit fraction and an hour offset
        # (PostgreSQL prints a timestamptz so in a +02 session; SQLite stores what it is given)
        (b"2021-06-01 14:00:00.123+02", b"2021-06-01 12:00:00.123000"),
        (b"2021-06-01 14:00:00.123-03", b"2021-06-01 17:00:00.123000"),
        # 19 bytes like `YYYY-MM-DD HH:MM:SS`, but no seconds and an offset
        (b"2021-06-01 14:00+02", b"2021-06-01 12:00:00.000000"),
        (b"2021-06-01 14:00:00.123456", b"2021-06-01 14:00:00.123456"),
        (b"2021-06-01 14:00:00", b"2021-06-01 14:00:00.000000"),
    ],
)
def test_offsets_are_not_mistaken_for_canonical_timestamps(field: bytes, expected: bytes) -> None:
    assert NORMALIZERS["timestamptz"](field) == expected
    assert NORMALIZERS["timestamp"](field) == expected
