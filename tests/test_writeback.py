"""Writing target rows back into the legacy source (target_wins, bidirectional sync), against
real SQLite, MariaDB/MySQL and PostgreSQL databases: values from target COPY text
(isthmus.writeback), upsert_rows, delete_keys and insert_with_new_keys, and the round trip
target field -> source value -> source row -> stream_text -> the same canonical form."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from conftest import MysqlDatabases, PgDatabases
from dialect_support import run_sql
from isthmus.canonical import NORMALIZERS, SourceColumn, kind_of_pg_type, normalizer
from isthmus.dialects import capabilities_of, open_source
from isthmus.dialects.base import Column, SourceDialect
from isthmus.errors import TerminalDatabaseError, TransientDatabaseError, UsageError
from isthmus.target_types import target_type
from isthmus.urls import DatabaseURL, parse_url
from isthmus.writeback import WritebackValueError, source_rows, source_value

DIALECTS = [
    "sqlite",
    pytest.param("mysql", marks=pytest.mark.mysql),
    "postgresql",
]

# -- source_value on its own ---------------------------------------------------------------

SQLITE = capabilities_of("sqlite")
MYSQL = capabilities_of("mysql")
PG = capabilities_of("postgresql")


def col(kind: Any, type_name: str = "") -> Column:
    return Column(name="c", type_name=type_name or kind, kind=kind)


def test_null_is_none_whatever_the_kind() -> None:
    for kind in ("integer", "text", "bytes", "timestamp", "boolean", "json"):
        for caps in (SQLITE, MYSQL, PG):
            assert source_value(col(kind), b"\\N", caps) is None


def test_booleans_as_the_source_takes_them() -> None:
    assert source_value(col("boolean", "tinyint(1)"), b"t", MYSQL) == 1
    assert source_value(col("boolean", "tinyint(1)"), b"f", MYSQL) == 0
    assert type(source_value(col("boolean"), b"t", SQLITE)) is int
    assert source_value(col("boolean"), b"t", PG) is True
    assert source_value(col("boolean"), b"f", PG) is False
    with pytest.raises(WritebackValueError, match=r"column 'c'.*not a boolean"):
        source_value(col("boolean"), b"maybe", PG)


def test_timestamps_as_the_source_takes_them() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 123400)
    aware = naive.replace(tzinfo=dt.UTC)
    field, field_tz = b"2024-01-02 03:04:05.1234", b"2024-01-02 03:04:05.1234+00"
    assert source_value(col("timestamp"), field, MYSQL) == naive
    assert source_value(col("timestamptz"), field_tz, MYSQL) == naive  # naive, in UTC
    assert source_value(col("timestamptz"), b"2024-01-02 05:04:05.1234+02", MYSQL) == naive
    assert source_value(col("timestamp"), field, PG) == naive
    assert source_value(col("timestamptz"), field_tz, PG) == aware
    assert source_value(col("timestamp"), field, SQLITE) == "2024-01-02 03:04:05.123400"
    assert source_value(col("timestamptz"), field_tz, SQLITE) == "2024-01-02 03:04:05.123400"
    assert source_value(col("timestamp"), b"2024-01-02 03:04:05", SQLITE) == "2024-01-02 03:04:05"
    assert source_value(col("timestamp"), b"0099-01-02 03:04:05", SQLITE) == "0099-01-02 03:04:05"
    # what Python cannot hold goes as text, for PostgreSQL to parse (or another to refuse)
    assert source_value(col("timestamp"), b"infinity", PG) == "infinity"
    assert source_value(col("timestamptz"), b"0044-03-15 12:00:00+00 BC", PG) == (
        "0044-03-15 12:00:00+00 BC"
    )


def test_dates_and_times() -> None:
    assert source_value(col("date"), b"2020-02-29", MYSQL) == dt.date(2020, 2, 29)
    assert source_value(col("date"), b"2020-02-29", SQLITE) == "2020-02-29"
    assert source_value(col("time"), b"03:04:05.5", MYSQL) == dt.time(3, 4, 5, 500000)
    assert source_value(col("time"), b"03:04:05.5", SQLITE) == "03:04:05.500000"
    assert source_value(col("time"), b"03:04:05", SQLITE) == "03:04:05"
    assert source_value(col("time"), b"24:00:00", PG) == "24:00:00"
    assert source_value(col("date"), b"-infinity", PG) == "-infinity"


def test_numbers_bytes_and_text() -> None:
    assert source_value(col("integer"), b"-9223372036854775808", MYSQL) == -(2**63)
    assert source_value(col("integer"), b"18446744073709551615", MYSQL) == 2**64 - 1
    assert source_value(col("decimal"), b"12.300", MYSQL) == Decimal("12.300")
    assert source_value(col("decimal"), b"12.300", SQLITE) == "12.300"
    assert source_value(col("float"), b"1e+100", PG) == 1e100
    assert source_value(col("float"), b"-Infinity", PG) == float("-inf")
    assert source_value(col("bytes"), b"\\\\x0a0bff", MYSQL) == b"\n\x0b\xff"
    assert source_value(col("bytes"), b"\\\\x", SQLITE) == b""
    assert source_value(col("bytes"), b"a\\\\\\\\b\\\\001", PG) == b"a\\b\x01"  # escape format
    assert source_value(col("text"), b"tab\\there\\\\N\\n\xc3\xa9", PG) == "tab\there\\N\né"
    assert source_value(col("json"), b'{"a": [1, "\\\\n"]}', MYSQL) == '{"a": [1, "\\n"]}'
    assert source_value(col("uuid"), b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", SQLITE) == (
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    )
    assert source_value(col("set", "set('x','y')"), b"x,y", MYSQL) == "x,y"
    with pytest.raises(WritebackValueError, match=r"column 'c' \(integer\).*not a integer"):
        source_value(col("integer"), b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", MYSQL)
    with pytest.raises(WritebackValueError, match="not a decimal"):
        source_value(col("decimal"), b"twelve", SQLITE)


def test_source_rows_converts_every_row() -> None:
    columns = [col("integer"), Column("b", "tinyint(1)", "boolean"), col("text")]
    rows = source_rows(columns, [[b"1", b"t", b"x"], [b"2", b"\\N", b""]], MYSQL)
    assert rows == [(1, 1, "x"), (2, None, "")]
    with pytest.raises(WritebackValueError, match="a row of 2 field"):
        source_rows(columns, [[b"1", b"t"]], MYSQL)


def test_every_source_dialect_says_it_can_write_back() -> None:
    assert SQLITE.writable_source and MYSQL.writable_source and PG.writable_source
    assert not SQLITE.native_booleans and not MYSQL.native_booleans and PG.native_booleans
    assert MYSQL.aware_datetimes is False and PG.aware_datetimes is True


# -- upsert, delete, insert with new keys on real databases --------------------------------

PEOPLE = {
    "sqlite": [
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE, "
        "born DATE, active BOOLEAN)",
        "CREATE TABLE fixed (id INT PRIMARY KEY, name TEXT)",
    ],
    "mysql": [
        "CREATE TABLE people (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "name VARCHAR(40) NOT NULL UNIQUE, born DATE, active TINYINT(1)) ENGINE=InnoDB",
        "CREATE TABLE fixed (id INT PRIMARY KEY, name TEXT) ENGINE=InnoDB",
    ],
    "postgresql": [
        "CREATE TABLE people (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "name varchar(40) NOT NULL UNIQUE, born date, active boolean)",
        "CREATE TABLE fixed (id int PRIMARY KEY, name text)",
    ],
}
SEED = "INSERT INTO people (name, born, active) VALUES ('ann', '1990-01-02', 1), ('bob', NULL, 0), ('cy', '2001-12-31', NULL)"
SEED_PG = SEED.replace("1), ", "true), ").replace("0), ", "false), ")
COLUMNS = ["name", "born", "active"]


@pytest.fixture(params=DIALECTS)
def people_url(request: pytest.FixtureRequest) -> DatabaseURL:
    name = request.param
    fixture = {"sqlite": "sqlite_url", "mysql": "fresh_mysql_url", "postgresql": "fresh_pg_url"}
    url: DatabaseURL = request.getfixturevalue(fixture[name])
    run_sql(url, [*PEOPLE[name], SEED_PG if name == "postgresql" else SEED])
    return url


@pytest.fixture
def people(people_url: DatabaseURL) -> Iterator[SourceDialect]:
    source = open_source(people_url)
    yield source
    source.close()


def columns_of(source: SourceDialect, table: str, names: list[str]) -> list[Column]:
    info = source.reflect().tables[table]
    found = [info.column(n) for n in names]
    assert all(c is not None for c in found)
    return [c for c in found if c is not None]


def values(
    source: SourceDialect, fields: list[list[bytes]], names: list[str] = COLUMNS
) -> list[tuple[Any, ...]]:
    """Target COPY-text fields of people rows as the source's values."""
    return source_rows(columns_of(source, "people", names), fields, source.capabilities)


def canonical_people(source: SourceDialect) -> dict[int, tuple[bytes, ...]]:
    """Every people row read back with stream_text, in canonical form."""
    norms = [NORMALIZERS["text"], NORMALIZERS["date"], NORMALIZERS["boolean"]]
    return {
        int(row[0]): tuple(n(f) for n, f in zip(norms, row[1:], strict=True))
        for batch in source.stream_text("people", ["id", *COLUMNS], ["id"])
        for row in batch
    }


ANN = (b"ann", b"1990-01-02", b"t")
BOB = (b"bob", b"\\N", b"f")
CY = (b"cy", b"2001-12-31", b"\\N")


def test_upsert_updates_existing_keys_and_inserts_new_ones(people: SourceDialect) -> None:
    fields = [[b"zed", b"2000-02-29", b"t"], [b"new\\tone", b"\\N", b"f"]]
    rows = [(2, *v) for v in values(people, fields[:1])] + [
        (10, *v) for v in values(people, fields[1:])
    ]
    assert people.upsert_rows("people", ["id", *COLUMNS], "id", rows) == 2
    assert canonical_people(people) == {
        1: ANN,
        2: (b"zed", b"2000-02-29", b"t"),
        3: CY,
        10: (b"new\\tone", b"\\N", b"f"),
    }
    # the key generator moved past the key written (PostgreSQL: the identity's sequence)
    keys = people.insert_with_new_keys(
        "people", COLUMNS, "id", values(people, [[b"after", b"\\N", b"\\N"]])
    )
    assert len(keys) == 1 and keys[0] > 10
    # columns in any order, and only some of them
    assert people.upsert_rows("people", ["active", "id"], "id", [(1, 3)]) == 1
    assert canonical_people(people)[3] == (b"cy", b"2001-12-31", b"t")
    assert people.upsert_rows("people", ["id", *COLUMNS], "id", []) == 0


def test_delete_keys(people: SourceDialect) -> None:
    assert people.delete_keys("people", "id", [1, 3, 99, 3]) == 2
    assert canonical_people(people) == {2: BOB}
    assert people.delete_keys("people", "id", []) == 0


def test_insert_with_new_keys(people: SourceDialect) -> None:
    fields = [
        [b"dee", b"1999-09-09", b"t"],
        [b"eve", b"\\N", b"\\N"],
        [b"fay", b"2010-10-10", b"f"],
    ]
    keys = people.insert_with_new_keys("people", COLUMNS, "id", values(people, fields))
    assert len(keys) == 3 and keys == sorted(set(keys)) and keys[0] > 3
    read = canonical_people(people)
    assert [read[k] for k in keys] == [tuple(f) for f in fields]
    rows = people.fetch_keys("people", ["id", "name"], "id", keys)
    assert sorted((r[0], r[1]) for r in rows) == list(zip(keys, ["dee", "eve", "fay"], strict=True))
    assert people.insert_with_new_keys("people", COLUMNS, "id", []) == []


def test_batches_stay_within_the_bind_limit(people: SourceDialect) -> None:
    # a tiny limit on this instance: every call runs in many batches, still one transaction
    people.capabilities = dataclasses.replace(people.capabilities, max_bind_parameters=5)
    upserts = [(n, f"p{n}", None, None) for n in range(2, 40)]
    assert people.upsert_rows("people", ["id", *COLUMNS], "id", upserts) == 38
    read = canonical_people(people)
    assert sorted(read) == list(range(1, 40))
    assert read[2] == (b"p2", b"\\N", b"\\N") and read[1] == ANN
    new = [(f"n{i}", None, None) for i in range(25)]
    keys = people.insert_with_new_keys("people", COLUMNS, "id", new)
    assert keys == sorted(set(keys)) and keys[0] > 39 and len(keys) == 25
    by_key = {r[0]: r[1] for r in people.fetch_keys("people", ["id", "name"], "id", keys)}
    assert [by_key[k] for k in keys] == [r[0] for r in new]
    assert people.delete_keys("people", "id", list(range(1, 30)) + keys) == 29 + 25
    assert sorted(canonical_people(people)) == list(range(30, 40))


def test_a_constraint_violation_is_terminal_named_and_writes_nothing(people: SourceDialect) -> None:
    rows = [(2, "zed", None, None), (11, "cy", None, None)]  # "cy" is taken: UNIQUE
    with pytest.raises(TerminalDatabaseError, match="people"):
        people.upsert_rows("people", ["id", *COLUMNS], "id", rows)
    with pytest.raises(TerminalDatabaseError, match="people"):
        people.insert_with_new_keys(
            "people", COLUMNS, "id", [("gus", None, None), (None, None, None)]
        )
    assert canonical_people(people) == {1: ANN, 2: BOB, 3: CY}
    # the source still writes afterwards
    assert people.upsert_rows("people", ["id", "name"], "id", [(2, "zed")]) == 1
    assert canonical_people(people)[2][0] == b"zed"


def test_reading_stays_read_only(people: SourceDialect) -> None:
    assert people.delete_keys("people", "id", [1]) == 1
    with pytest.raises(TerminalDatabaseError):
        people._query("DELETE FROM people")
    assert sorted(canonical_people(people)) == [2, 3]


def test_arguments_that_cannot_work(people: SourceDialect) -> None:
    cols = ["id", *COLUMNS]
    with pytest.raises(UsageError, match=r"'people'.*appears twice"):
        people.upsert_rows("people", cols, "id", [(5, "a", None, None), (5, "b", None, None)])
    with pytest.raises(UsageError, match=r"'people'.*do not include the key 'id'"):
        people.upsert_rows("people", COLUMNS, "id", [("a", None, None)])
    with pytest.raises(UsageError, match=r"'people'.*not an integer"):
        people.upsert_rows("people", cols, "id", [("5", "a", None, None)])
    with pytest.raises(UsageError, match=r"'people'.*a row of 2 value"):
        people.upsert_rows("people", cols, "id", [(5, "a")])
    with pytest.raises(UsageError, match=r"'people'.*leave it out"):
        people.insert_with_new_keys("people", cols, "id", [(5, "a", None, None)])
    assert canonical_people(people) == {1: ANN, 2: BOB, 3: CY}


def test_a_key_without_a_generator_is_terminal(people: SourceDialect) -> None:
    with pytest.raises(TerminalDatabaseError, match="fixed"):
        people.insert_with_new_keys("fixed", ["name"], "id", [("x",)])
    assert people.upsert_rows("fixed", ["id", "name"], "id", [(7, "x")]) == 1
    assert [tuple(r) for r in people.fetch_keys("fixed", ["id", "name"], "id", [7])] == [(7, "x")]


def test_sqlite_busy_is_transient(sqlite_url: DatabaseURL) -> None:
    run_sql(sqlite_url, [*PEOPLE["sqlite"], SEED])
    source = open_source(parse_url(sqlite_url.raw + "?timeout=0.1"))
    other = sqlite3.connect(sqlite_url.database or "", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientDatabaseError, match="people"):
            source.delete_keys("people", "id", [1])
        other.execute("ROLLBACK")
        assert source.delete_keys("people", "id", [1]) == 1
    finally:
        other.close()
        source.close()


# -- MySQL specifics: both drivers, names with %, keys without RETURNING, MyISAM -------------
# (read back with stream_text: the reads that quote names for both drivers' % handling)


def text_rows(source: SourceDialect, table: str, columns: list[str]) -> list[tuple[bytes, ...]]:
    return [tuple(r) for b in source.stream_text(table, columns, [columns[0]]) for r in b]


@pytest.mark.mysql
@pytest.mark.parametrize("driver", ["pymysql", "auto"])
@pytest.mark.parametrize("engine", ["InnoDB", "MyISAM"])
def test_mysql_keys_with_and_without_returning(
    fresh_mysql_url: DatabaseURL, driver: str, engine: str
) -> None:
    table = "odd% `name"
    run_sql(
        fresh_mysql_url,
        [
            "CREATE TABLE `odd% ``name` (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"`v%` VARCHAR(20)) ENGINE={engine}",
            "INSERT INTO `odd% ``name` (`v%`) VALUES ('a'), ('b')",
        ],
    )
    source = open_source(parse_url(fresh_mysql_url.raw + f"?driver={driver}"))
    try:
        source.capabilities = dataclasses.replace(source.capabilities, max_bind_parameters=3)
        for returning in (True, False):
            source._returning = returning  # type: ignore[attr-defined]
            keys = source.insert_with_new_keys(table, ["v%"], "id", [(f"r{i}",) for i in range(7)])
            assert keys == sorted(set(keys)) and len(keys) == 7
            got = {int(r[0]): r[1] for r in text_rows(source, table, ["id", "v%"])}
            assert [got[k] for k in keys] == [f"r{i}".encode() for i in range(7)]
        assert source.upsert_rows(table, ["id", "v%"], "id", [(1, "A"), (100, "C")]) == 2
        assert source.delete_keys(table, "id", [2]) == 1
        rows = text_rows(source, table, ["id", "v%"])
        assert rows[0] == (b"1", b"A") and rows[-1] == (b"100", b"C") and len(rows) == 16
    finally:
        source.close()


# -- PostgreSQL specifics: a key from a default expression, hostile names --------------------


def test_postgresql_key_from_a_default_expression(fresh_pg_url: DatabaseURL) -> None:
    with psycopg.connect(fresh_pg_url.raw, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "le%gacy"')
        conn.execute('CREATE SEQUENCE "le%gacy".free_seq START 500 INCREMENT 5')
        conn.execute(
            'CREATE TABLE "le%gacy"."to%do" (id bigint PRIMARY KEY '
            'DEFAULT nextval(\'"le%gacy".free_seq\'), "v%" text)'
        )
    source = open_source(parse_url(fresh_pg_url.raw + "?schema=le%25gacy"))
    try:
        keys = source.insert_with_new_keys("to%do", ["v%"], "id", [("a",), ("b",), ("c",)])
        assert keys == [500, 505, 510]
        assert source.upsert_rows("to%do", ["id", "v%"], "id", [(505, "B"), (7, "z")]) == 2
        assert source.delete_keys("to%do", "id", [500]) == 1
        rows = text_rows(source, "to%do", ["id", "v%"])
        assert rows == [(b"7", b"z"), (b"505", b"B"), (b"510", b"c")]
    finally:
        source.close()


# -- the round trip, one column of each kind ------------------------------------------------

KINDS_DDL = {
    "sqlite": [
        "CREATE TABLE kinds (id INTEGER PRIMARY KEY, k_integer BIGINT, k_decimal NUMERIC(12,3), "
        "k_float DOUBLE, k_boolean BOOLEAN, k_text TEXT, k_bytes BLOB, k_date DATE, k_time TIME, "
        "k_timestamp DATETIME, k_timestamptz TIMESTAMPTZ, k_json JSON, k_uuid UUID, k_other)"
    ],
    "mysql": [
        "CREATE TABLE kinds (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, k_integer BIGINT, "
        "k_decimal DECIMAL(12,3), k_float DOUBLE, k_boolean TINYINT(1), k_text LONGTEXT, "
        "k_bytes LONGBLOB, k_date DATE, k_time TIME(6), k_timestamp DATETIME(6), "
        "k_timestamptz TIMESTAMP(6) NULL, k_json JSON, k_enum ENUM('a', 'b c'), "
        "k_set SET('x', 'y', 'z'), k_uuid {uuid}) ENGINE=InnoDB"
    ],
    "postgresql": [
        "CREATE TYPE mood AS ENUM ('sad', 'o''k', 'b c')",
        "CREATE TABLE kinds (id bigserial PRIMARY KEY, k_integer bigint, k_decimal numeric(12,3), "
        "k_float double precision, k_boolean boolean, k_text text, k_bytes bytea, k_date date, "
        "k_time time, k_timestamp timestamp, k_timestamptz timestamptz, k_json jsonb, "
        "k_enum mood, k_uuid uuid, k_other inet, k_interval interval, k_array integer[])",
    ],
}
TARGET_SETTINGS = [
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET bytea_output = 'hex'",
]

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


def value_strategy(column: Column, dialect: str) -> st.SearchStrategy[Any]:
    """Values of a column's kind that every source can hold (MySQL's ranges, SQLite's
    15-digit numerics, PostgreSQL's NUL-free text)."""
    kind = column.kind
    members = column.enum_values
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "integer": st.integers(-(2**63), 2**63 - 1),
        "decimal": st.decimals(Decimal("-999999999.999"), Decimal("999999999.999"), places=3),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "text": _TEXT,
        "bytes": st.binary(max_size=30),
        "date": st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)),
        "time": st.times(),
        "timestamp": st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31)),
        "timestamptz": st.datetimes(
            dt.datetime(1971, 1, 1),
            dt.datetime(2037, 12, 31),
            timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))]),
        ),
        "json": _JSON.map(Jsonb),
        "uuid": st.uuids(version=4),  # MariaDB's UUID refuses some variants
        "interval": st.timedeltas(dt.timedelta(days=-999), dt.timedelta(days=999)),
        "array": st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=4),
        "enum": st.sampled_from(members or ("sad",)),
        "set": st.lists(st.sampled_from(members or ("x",)), unique=True).map(
            lambda chosen: ",".join(m for m in members if m in chosen)
        ),
        "other": st.ip_addresses().map(str) if dialect == "postgresql" else _TEXT,
    }
    return st.none() | strategies[kind]


@dataclass
class KindsTable:
    dialect: str
    source: SourceDialect
    columns: list[Column]
    target: psycopg.Connection[Any]
    target_table: str
    target_kinds: list[Any]
    keys: Iterator[int]

    def target_fields(self, row: list[Any]) -> list[bytes]:
        """The row as the target holds it: inserted into a table of the target's types and
        printed back by PostgreSQL's COPY TO."""
        names = ", ".join(f'"{c.name}"' for c in self.columns)
        marks = ", ".join(["%s"] * len(row))
        self.target.execute(f"TRUNCATE {self.target_table}")
        insert = f"INSERT INTO {self.target_table} ({names}) VALUES ({marks})"  # noqa: S608
        self.target.execute(insert, row)
        with self.target.cursor().copy(
            f"COPY (SELECT {names} FROM {self.target_table}) TO STDOUT"  # noqa: S608
        ) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        return data.rstrip(b"\n").split(b"\t")


@pytest.fixture(scope="module", params=DIALECTS)
def kinds(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PgDatabases,
) -> Iterator[KindsTable]:
    dialect = request.param
    if dialect == "sqlite":
        url = parse_url(f"sqlite:///{tmp_path_factory.mktemp('writeback') / 'kinds.db'}")
        run_sql(url, KINDS_DDL["sqlite"])
    elif dialect == "mysql":
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        url = mysql.create()
        try:
            run_sql(url, [KINDS_DDL["mysql"][0].format(uuid="UUID")])
        except Exception:  # MySQL (not MariaDB 10.7+): no UUID type, the text of one
            run_sql(url, [KINDS_DDL["mysql"][0].format(uuid="CHAR(36)")])
    else:
        url = pg_databases.create()
        run_sql(url, KINDS_DDL["postgresql"])
    source = open_source(url)
    table = source.reflect().tables["kinds"]
    columns = [c for c in table.columns if c.name != "id"]
    target_url = pg_databases.create("isthmus_wb_target")
    target = psycopg.connect(target_url.raw, autocommit=True)
    for statement in TARGET_SETTINGS:
        target.execute(statement)
    types = [target_type(c, dialect).sql for c in columns]
    target.execute(
        "CREATE TABLE tgt ("
        + ", ".join(f'"{c.name}" {t}' for c, t in zip(columns, types, strict=True))
        + ")"
    )
    yield KindsTable(
        dialect,
        source,
        columns,
        target,
        "tgt",
        [kind_of_pg_type(t) for t in types],
        itertools.count(100),
    )
    target.close()
    source.close()


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip_of_every_kind(kinds: KindsTable, data: st.DataObject) -> None:
    row = [data.draw(value_strategy(c, kinds.dialect), label=c.name) for c in kinds.columns]
    fields = kinds.target_fields(row)
    source = kinds.source
    caps = source.capabilities
    values = source_rows(kinds.columns, [fields], caps)[0]
    new_key = next(kinds.keys)
    names = [c.name for c in kinds.columns]
    # key 1 exists after the first example (an update), new_key never does (an insert)
    written = source.upsert_rows("kinds", ["id", *names], "id", [(1, *values), (new_key, *values)])
    assert written == 2
    read = {
        int(r[0]): r[1:]
        for batch in source.stream_text("kinds", ["id", *names], ["id"])
        for r in batch
        if int(r[0]) in (1, new_key)
    }
    for column, kind, i in zip(kinds.columns, kinds.target_kinds, itertools.count(), strict=False):
        described = SourceColumn(
            kind=column.kind,
            precision=column.precision,
            scale=column.scale,
            typed=caps.typed_values,
            pads_fractions=caps.pads_fractional_seconds,
        )
        expected = NORMALIZERS[kind](fields[i])
        norm = normalizer(kind, described).canonical
        for key in (1, new_key):
            assert norm(read[key][i]) == expected, (column.name, fields[i], read[key][i])
    source.delete_keys("kinds", "id", [new_key])


def test_kinds_table_has_one_column_of_each_kind(kinds: KindsTable) -> None:
    expected = {
        "integer", "decimal", "float", "boolean", "text", "bytes", "date", "time",
        "timestamp", "timestamptz", "json",
    }  # fmt: skip
    found = {c.kind for c in kinds.columns}
    assert expected <= found
    if kinds.dialect == "mysql":
        assert {"enum", "set"} <= found
    if kinds.dialect != "mysql":
        assert {"uuid", "other"} <= found


def test_sqlite_writer_never_creates_a_file(tmp_path: Path) -> None:
    """SQLite's writer never creates a database file (mode=rw, not rwc)."""
    run_sql(
        parse_url(f"sqlite:///{tmp_path / 'a.db'}"), ["CREATE TABLE t (id INTEGER PRIMARY KEY, v)"]
    )
    source = open_source(parse_url(f"sqlite:///{tmp_path / 'a.db'}"))
    (tmp_path / "a.db").unlink()
    with pytest.raises(TerminalDatabaseError, match="does not exist"):
        source.upsert_rows("t", ["id", "v"], "id", [(1, 2)])
    source.close()
    assert not (tmp_path / "a.db").exists()
