"""Property tests of the canonical form (``isthmus.canonical``) against real databases.

For random values of every kind, the canonical form of the value written into PostgreSQL
(as the target column type) and read back with COPY TO equals the canonical form of the
value as a source prints it: ``to_copy_text`` for Python values, and the text the real
SQLite and MariaDB dialects stream for the value stored in their own typed column. Values
that are spelled differently but are the same (``12.30``/``12.3``, ``-0.0``/``0``, UUID
case, trailing zeros of a fraction, a naive timestamp and the same one at ``+00``) never
differ; values that are genuinely different always do.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from conftest import MysqlDatabases
from dialect_support import mysql_admin
from isthmus import canonical
from isthmus.canonical import NORMALIZERS, CanonKind, Normalizer, SourceColumn, normalizer
from isthmus.copytext import to_copy_text
from isthmus.dialects import open_source
from isthmus.dialects.base import SourceDialect
from isthmus.urls import DatabaseURL, parse_url

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The target column type of each kind.
PG_TYPES: dict[CanonKind, str] = {
    "integer": "bigint",
    "decimal": "numeric",
    "float8": "double precision",
    "float4": "real",
    "boolean": "boolean",
    "text": "text",
    "bytes": "bytea",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "uuid": "uuid",
    "json": "jsonb",
}


class Target:
    """One PostgreSQL session with a one-column table per kind: write a COPY field, read it back."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        for kind, type_name in PG_TYPES.items():
            conn.execute(f"CREATE TEMP TABLE k_{kind} (v {type_name})")

    def round_trip(self, kind: CanonKind, field: bytes, *, zone: str = "UTC") -> bytes:
        table = f"k_{kind}"
        with self.conn.transaction():
            self.conn.execute("SET LOCAL TimeZone = 'UTC'")  # copytext writes UTC
            self.conn.execute(f"TRUNCATE {table}")
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} (v) FROM STDIN") as copy:
                copy.write(field + b"\n")
            self.conn.execute(f"SET LOCAL TimeZone = '{zone}'")
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data
        return data[:-1]


@pytest.fixture(scope="module")
def target(pg_url: DatabaseURL) -> Iterator[Target]:
    with psycopg.connect(pg_url.raw, autocommit=True) as conn:
        yield Target(conn)


def canon(kind: CanonKind, field: bytes) -> bytes:
    return NORMALIZERS[kind](field)


# -- strategies --------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
NAIVE = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
AWARE = st.datetimes(
    min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=st.timezones()
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(
                st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=5
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)

CASES: dict[CanonKind, st.SearchStrategy[Any]] = {
    "integer": st.integers(-(2**63), 2**63 - 1),
    "decimal": DECIMALS,
    "float8": st.floats(),
    "float4": st.floats(width=32),
    "boolean": st.booleans(),
    "text": TEXT,
    "bytes": st.binary(),
    "date": st.dates(),
    "time": st.times(),
    "timestamp": NAIVE,
    "timestamptz": AWARE,
    "uuid": st.uuids(),
}


# -- written into PostgreSQL and read back: the same canonical form ------------------------


@pytest.mark.parametrize("kind", list(CASES))
def test_postgresql_round_trip_keeps_the_canonical_form(target: Target, kind: CanonKind) -> None:
    @SETTINGS
    @given(CASES[kind])
    def check(value: Any) -> None:
        field = to_copy_text(value)
        back = target.round_trip(kind, field)
        assert canon(kind, back) == canon(kind, field), (value, field, back)

    check()


@SETTINGS
@given(JSON)
def test_json_round_trip(target: Target, value: Any) -> None:
    spaced = json.dumps(value, ensure_ascii=False, indent=1)
    for field in (to_copy_text(json.dumps(value)), to_copy_text(spaced)):
        back = target.round_trip("json", field)
        assert canon("json", back) == canon("json", field), (value, field, back)


@SETTINGS
@given(AWARE, st.sampled_from(["UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham"]))
def test_timestamptz_read_in_any_session_zone(
    target: Target, value: dt.datetime, zone: str
) -> None:
    field = to_copy_text(value)
    back = target.round_trip("timestamptz", field, zone=zone)
    assert canon("timestamptz", back) == canon("timestamptz", field), (value, zone, back)


# -- same value, other spelling: never differ ---------------------------------------------


@SETTINGS
@given(DECIMALS, st.integers(0, 5))
@example(Decimal("12.3"), 1)
@example(Decimal("-0"), 2)
def test_decimal_spellings(value: Decimal, zeros: int) -> None:
    plain = format(value, "f")
    padded = plain + ("." if "." not in plain else "") + "0" * zeros if zeros else plain
    forms = {plain, padded, str(value), format(value, "e"), f" {plain} "}
    assert len({canon("decimal", f.encode()) for f in forms}) == 1, forms


def test_equal_spellings() -> None:
    assert canon("decimal", b"12.30") == canon("decimal", b"12.3") == b"12.3"
    assert canon("decimal", b"-0.00") == canon("decimal", b"0") == b"0"
    assert canon("float8", b"-0") == canon("float8", b"0") == canon("float8", b"-0.0")
    assert canon("float4", b"-0") == canon("float4", b"0")
    upper = b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
    assert (
        canon("uuid", upper) == canon("uuid", upper.lower()) == canon("uuid", b"{" + upper + b"}")
    )
    assert canon("timestamp", b"2021-03-04 05:06:07.120") == canon(
        "timestamp", b"2021-03-04 05:06:07.12"
    )
    assert canon("timestamptz", b"2021-03-04 05:06:07+00") == canon(
        "timestamp", b"2021-03-04 05:06:07"
    )
    assert canon("time", b"05:06:07.5") == canon("time", b"05:06:07.500000")
    assert canon("boolean", b"true") == canon("boolean", b"1") == canon("boolean", b"t")


@SETTINGS
@given(NAIVE)
def test_naive_and_utc_spellings_never_differ(value: dt.datetime) -> None:
    naive = to_copy_text(value)
    as_utc = to_copy_text(value.replace(tzinfo=dt.UTC))
    forms = [naive, naive + b"+00", as_utc, value.isoformat().encode() + b"Z"]
    forms.append(value.replace(tzinfo=dt.UTC).isoformat().encode())
    assert len({canon("timestamptz", f) for f in forms}) == 1, forms
    assert len({canon("timestamp", f) for f in forms}) == 1, forms


@SETTINGS
@given(st.uuids())
def test_uuid_spellings(value: uuid.UUID) -> None:
    forms = [str(value), str(value).upper(), value.hex, value.hex.upper(), "{" + str(value) + "}"]
    assert len({canon("uuid", f.encode()) for f in forms}) == 1


# -- genuinely different values always differ ---------------------------------------------

DISTINCT: dict[CanonKind, st.SearchStrategy[Any]] = {
    k: v for k, v in CASES.items() if k not in ("float8", "float4")
}


@pytest.mark.parametrize("kind", list(DISTINCT))
def test_different_values_differ(kind: CanonKind) -> None:
    strategy = DISTINCT[kind]

    @SETTINGS
    @given(strategy, strategy)
    def check(a: Any, b: Any) -> None:
        if kind == "timestamptz":
            assume(a.astimezone(dt.UTC) != b.astimezone(dt.UTC))
        else:
            assume(a != b)
        assert canon(kind, to_copy_text(a)) != canon(kind, to_copy_text(b)), (a, b)

    check()


@SETTINGS
@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_different_floats_differ_at_the_declared_precision(a: float, b: float) -> None:
    assume(abs(a - b) > 1e-13 * max(abs(a), abs(b), 1e-300))
    assert canon("float8", to_copy_text(a)) != canon("float8", to_copy_text(b)), (a, b)


@SETTINGS
@given(JSON, JSON)
def test_different_json_differs(a: Any, b: Any) -> None:
    assume(json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True))
    assume(not _json_equal_numbers(a, b))
    assert canon("json", to_copy_text(json.dumps(a))) != canon(
        "json", to_copy_text(json.dumps(b))
    ), (a, b)


def _json_equal_numbers(a: Any, b: Any) -> bool:
    """1 and 1.0 are different JSON texts but may be the same number: leave them out."""
    return json.dumps(a, sort_keys=True).replace(".0", "") == json.dumps(b, sort_keys=True).replace(
        ".0", ""
    )


# -- the real text of SQLite and MariaDB ----------------------------------------------------

# (kind, source column declaration, strategy) for each source.
SQLITE_CASES: list[tuple[CanonKind, str, st.SearchStrategy[Any]]] = [
    ("integer", "INTEGER", st.integers(-(2**63), 2**63 - 1)),
    (
        "decimal",
        "NUMERIC(20,6)",
        st.decimals(min_value=-(10**12), max_value=10**12, places=6).map(str),
    ),
    ("float8", "REAL", st.floats(allow_nan=False)),
    ("boolean", "BOOLEAN", st.booleans()),
    ("text", "TEXT", TEXT),
    ("bytes", "BLOB", st.binary()),
    ("date", "DATE", st.dates().map(dt.date.isoformat)),
    ("timestamp", "TIMESTAMP", NAIVE.map(lambda v: v.isoformat(sep=" "))),
    ("timestamp", "DATETIME", NAIVE.map(lambda v: v.isoformat() + "Z")),
    ("uuid", "UUID", st.uuids().map(lambda u: str(u).upper())),
    ("json", "JSON", JSON.map(lambda v: json.dumps(v, ensure_ascii=False))),
]

MYSQL_CASES: list[tuple[CanonKind, str, st.SearchStrategy[Any]]] = [
    ("integer", "BIGINT", st.integers(-(2**63), 2**63 - 1)),
    ("decimal", "DECIMAL(30,8)", st.decimals(min_value=-(10**21), max_value=10**21, places=8)),
    ("float8", "DOUBLE", st.floats(allow_nan=False, allow_infinity=False)),
    ("boolean", "TINYINT(1)", st.booleans()),
    ("text", "LONGTEXT", TEXT),
    ("bytes", "LONGBLOB", st.binary()),
    ("date", "DATE", st.dates(min_value=dt.date(1000, 1, 1))),
    (
        "timestamp",
        "DATETIME(6)",
        st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    ),
    (
        "timestamp",
        "DATETIME",
        st.datetimes(min_value=dt.datetime(1000, 1, 1)).map(lambda v: v.replace(microsecond=0)),
    ),
    ("time", "TIME(6)", st.times()),
    ("json", "JSON", JSON.map(lambda v: json.dumps(v, ensure_ascii=False))),
]


def _source_normalizer(source: SourceDialect, table: str, kind: CanonKind) -> Normalizer:
    """The normaliser the migration uses for this source column landing in a ``kind`` column."""
    column = source.reflect().tables[table].column("v")
    assert column is not None
    caps = source.capabilities
    return normalizer(
        kind,
        SourceColumn(
            kind=column.kind,
            precision=column.precision,
            scale=column.scale,
            typed=caps.typed_values,
            pads_fractions=caps.pads_fractional_seconds,
        ),
    )


def _streamed(source: SourceDialect, table: str) -> bytes:
    rows = [r for batch in source.stream_text(table, ["id", "v"], ["id"]) for r in batch]
    assert len(rows) == 1
    return rows[0][1]


@pytest.mark.parametrize(
    "case", range(len(SQLITE_CASES)), ids=[f"{c[0]}-{c[1]}" for c in SQLITE_CASES]
)
def test_sqlite_text_matches_postgresql(target: Target, tmp_path: Path, case: int) -> None:
    kind, declared, strategy = SQLITE_CASES[case]
    path = tmp_path / "values.db"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, v {declared})")
    url = parse_url(f"sqlite:///{path}")

    @settings(SETTINGS, max_examples=60)
    @given(strategy)
    def check(value: Any) -> None:
        db = sqlite3.connect(path)
        with db:
            db.execute("DELETE FROM t")
            db.execute("INSERT INTO t VALUES (1, ?)", (value,))
        db.close()
        with open_source(url) as source:
            field = _streamed(source, "t")
            norm = _source_normalizer(source, "t", kind)
        back = target.round_trip(kind, norm.to_target(field))
        assert norm.canonical(field) == canon(kind, back), (value, field, back)

    check()


@pytest.fixture(scope="module")
def mysql_source(mysql_databases: MysqlDatabases) -> DatabaseURL:
    return mysql_databases.create("isthmus_props")


@pytest.mark.parametrize(
    "case", range(len(MYSQL_CASES)), ids=[f"{c[0]}-{c[1]}" for c in MYSQL_CASES]
)
def test_mariadb_text_matches_postgresql(
    target: Target, mysql_source: DatabaseURL, case: int
) -> None:
    kind, declared, strategy = MYSQL_CASES[case]
    table = f"t{case}"
    admin = mysql_admin(mysql_source)
    try:
        with admin.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, v {declared}) CHARACTER SET utf8mb4"
            )
    finally:
        admin.close()
    source = open_source(mysql_source)
    norm = _source_normalizer(source, table, kind)

    @settings(SETTINGS, max_examples=60)
    @given(strategy)
    def check(value: Any) -> None:
        my = mysql_admin(mysql_source)
        try:
            with my.cursor() as cur:
                cur.execute(f"DELETE FROM {table}")  # noqa: S608
                cur.execute(f"INSERT INTO {table} VALUES (1, %s)", (value,))  # noqa: S608
        finally:
            my.close()
        field = _streamed(source, table)
        back = target.round_trip(kind, norm.to_target(field))
        assert norm.canonical(field) == canon(kind, back), (value, field, back)
        # And the source's text is the value itself: the same canonical form as the Python value.
        if kind not in ("json", "boolean"):
            assert norm.canonical(field) == canon(kind, to_copy_text(value)), (value, field)

    try:
        check()
    finally:
        source.close()


def test_canonical_module_kinds_are_covered() -> None:
    kinds = set(canonical.NORMALIZERS) - {"other"}
    assert kinds == set(PG_TYPES)
