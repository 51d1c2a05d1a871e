"""The same reading contract on every source dialect: keyset bounds, counts, key look-ups,
hostile identifiers, argument checks, read-only sessions, missing tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dialect_support import quote, run_sql
from isthmus.dialects import mysql_driver, open_source
from isthmus.dialects.base import SourceDialect
from isthmus.errors import TerminalDatabaseError, UsageError
from isthmus.urls import DatabaseURL, parse_url

WEIRD_TABLE = 'we"ird ta`ble'
WEIRD_COLUMN = "sélect"
LETTERS = "abcde"
PAIRS = [(a, b, a * 10 + LETTERS.index(b)) for a in range(1, 5) for b in LETTERS]
CODES = [f"k{n:02d}" for n in range(1, 21)]


@pytest.fixture(params=["sqlite", "postgresql", "mysql-pymysql", "mysql-connector"])
def url(request: pytest.FixtureRequest) -> DatabaseURL:
    dialect, _, driver = request.param.partition("-")
    fixture = {"sqlite": "sqlite_url", "postgresql": "fresh_pg_url", "mysql": "fresh_mysql_url"}
    if driver == "connector" and not mysql_driver.preload_c_extension():
        pytest.skip("mysql-connector's C extension did not load in this process (ssl came first)")
    db: DatabaseURL = request.getfixturevalue(fixture[dialect])
    weird = quote(db, WEIRD_TABLE)
    run_sql(
        db,
        [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20), amount INTEGER)",
            "CREATE TABLE pairs (a INTEGER NOT NULL, b VARCHAR(10) NOT NULL, v INTEGER, PRIMARY KEY (a, b))",
            "CREATE TABLE codes (code VARCHAR(10) NOT NULL PRIMARY KEY, n INTEGER)",
            f"CREATE TABLE {weird} (id INTEGER PRIMARY KEY, {quote(db, WEIRD_COLUMN)} VARCHAR(20))",
            *[
                ("INSERT INTO items VALUES (%s, %s, %s)", (n, f"item {n}", n * 3))
                for n in range(1, 26)
            ],
            *[("INSERT INTO pairs VALUES (%s, %s, %s)", p) for p in PAIRS],
            *[("INSERT INTO codes VALUES (%s, %s)", (c, i)) for i, c in enumerate(CODES)],
            (f"INSERT INTO {weird} VALUES (%s, %s)", (1, "é'\"`x")),  # noqa: S608
        ],
    )
    return parse_url(f"{db.raw}?driver={driver}") if driver else db


@pytest.fixture
def source(url: DatabaseURL) -> Iterator[SourceDialect]:
    with open_source(url) as src:
        yield src


def read(
    src: SourceDialect, table: str, columns: list[str], key: list[str], **bounds: Any
) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for batch in src.stream(table, columns, key, batch_size=7, **bounds)
        for row in batch
    ]


def test_full_stream_comes_in_ordered_batches(source: SourceDialect) -> None:
    batches = list(source.stream("items", ["id", "name"], ["id"], batch_size=7))
    assert [len(b) for b in batches] == [7, 7, 7, 4]
    assert [tuple(r) for b in batches for r in b] == [(n, f"item {n}") for n in range(1, 26)]


def test_single_key_bounds(source: SourceDialect) -> None:
    assert [r[0] for r in read(source, "items", ["id"], ["id"], after=[5], upto=[12])] == list(
        range(6, 13)
    )
    assert [r[0] for r in read(source, "items", ["id"], ["id"], after=[20])] == list(range(21, 26))
    assert [r[0] for r in read(source, "items", ["id"], ["id"], upto=(3,))] == [1, 2, 3]
    assert read(source, "items", ["id"], ["id"], after=[25]) == []


@pytest.mark.parametrize(
    ("after", "upto"),
    [
        ((2, "c"), (3, "b")),
        ((1, "e"), None),
        (None, (2, "a")),
        ((4, "e"), None),
        ((0, "z"), (9, "a")),
    ],
)
def test_composite_key_bounds(source: SourceDialect, after: Any, upto: Any) -> None:
    rows = read(source, "pairs", ["a", "b", "v"], ["a", "b"], after=after, upto=upto)
    expected = [
        p for p in PAIRS if (after is None or p[:2] > after) and (upto is None or p[:2] <= upto)
    ]
    assert rows == expected


def test_text_key_bounds(source: SourceDialect) -> None:
    rows = read(source, "codes", ["code", "n"], ["code"], after=["k05"], upto=["k09"])
    assert [r[0] for r in rows] == ["k06", "k07", "k08", "k09"]


def test_count_range_and_fetch_keys(source: SourceDialect) -> None:
    assert source.count("items") == 25
    assert source.key_range("items", "id") == (1, 25)
    rows = source.fetch_keys("items", ["id", "amount"], "id", [3, 17, 99, 5])
    assert sorted(tuple(r) for r in rows) == [(3, 9), (5, 15), (17, 51)]
    assert source.fetch_keys("items", ["id"], "id", []) == []


def test_key_tiles_and_key_counts(source: SourceDialect) -> None:
    """What key-range chunks are planned and checked with (migrate_chunks.py)."""
    assert source.key_tiles("items", "id", 4) == [(1, 7, 7), (8, 13, 6), (14, 19, 6), (20, 25, 6)]
    assert source.key_tiles("items", "id", 40)[:2] == [(1, 1, 1), (2, 2, 1)]
    assert len(source.key_tiles("items", "id", 40)) == 25
    assert source.key_tiles(WEIRD_TABLE, "id", 2) == [(1, 1, 1)]
    assert source.count_keys("items", "id", [(3, 5), (20, 99)]) == 9
    assert source.count_keys("items", "id", [(3, 5), (20, 99)], inside=False) == 16
    assert source.count_keys("items", "id", []) == 0
    assert source.count_keys("items", "id", [], inside=False) == 25


def test_hostile_identifiers(source: SourceDialect) -> None:
    table = source.reflect().tables[WEIRD_TABLE]
    assert table.column_names == ("id", WEIRD_COLUMN)
    assert read(source, WEIRD_TABLE, ["id", WEIRD_COLUMN], ["id"], after=[0]) == [(1, "é'\"`x")]
    assert source.count(WEIRD_TABLE) == 1
    assert [tuple(r) for r in source.fetch_keys(WEIRD_TABLE, [WEIRD_COLUMN], "id", [1])] == [
        ("é'\"`x",)
    ]


def test_values_are_bound_not_spliced(source: SourceDialect) -> None:
    hostile = "k05' OR '1'='1"
    rows = read(source, "codes", ["code"], ["code"], after=[hostile], upto=["k07"])
    assert [r[0] for r in rows] == ["k06", "k07"]


def test_arguments_that_cannot_work(source: SourceDialect) -> None:
    with pytest.raises(UsageError, match=r"'items'.*not among the columns"):
        source.stream("items", ["name"], ["id"])
    with pytest.raises(UsageError, match=r"'pairs'.*1 value"):
        source.stream("pairs", ["a", "b"], ["a", "b"], after=[1])


def test_missing_table_is_terminal_and_named(source: SourceDialect) -> None:
    with pytest.raises(TerminalDatabaseError, match="no_such_table"):
        list(source.stream("no_such_table", ["id"], ["id"]))
    with pytest.raises(TerminalDatabaseError, match="no_such_table"):
        source.count("no_such_table")
    assert source.count("items") == 25  # the Source still works afterwards


def test_reflection_lists_the_tables(source: SourceDialect) -> None:
    info = source.reflect()
    assert {"items", "pairs", "codes", WEIRD_TABLE} <= set(info.tables)
    assert info.tables["pairs"].primary_key == ("a", "b")
    assert info.tables["items"].integer_key == "id"
    assert info.tables["codes"].integer_key is None
    assert info.tables["items"].row_estimate in (25, None) or source.capabilities.name == "mysql"
