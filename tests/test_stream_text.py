"""Source.stream_text: rows as PostgreSQL COPY text fields, on every dialect, against real
databases. What it yields is loaded into PostgreSQL with COPY FROM and compared with the
source's own values; the contract of stream() (bounds, batches, errors) holds here too."""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialect_support import mysql_admin, quote, run_sql
from isthmus import copytext
from isthmus.copytext import NULL, escape, to_copy_text, unescape
from isthmus.dialects import mysql_driver, open_source
from isthmus.dialects.base import SourceDialect
from isthmus.errors import TerminalDatabaseError, TransientDatabaseError, UsageError
from isthmus.urls import DatabaseURL, parse_url

Fields = list[list[bytes]]

# -- copytext ---------------------------------------------------------------------------------


@given(st.binary())
def test_escape_round_trip(raw: bytes) -> None:
    escaped = escape(raw)
    assert unescape(escaped) == raw
    assert not any(c in escaped for c in b"\t\n\r\b\f\v")
    # every backslash starts one of the escapes COPY TO writes
    assert (
        escaped.replace(b"\\\\", b"")
        .replace(b"\\t", b"")
        .replace(b"\\n", b"")
        .replace(b"\\r", b"")
        .replace(b"\\b", b"")
        .replace(b"\\f", b"")
        .replace(b"\\v", b"")
        .count(b"\\")
        == 0
    )


def test_unescape_knows_what_copy_to_may_write() -> None:
    assert unescape(b"a\\bb\\fc\\vd") == b"a\bb\fc\vd"
    assert unescape(b"\\101\\0\\7x\\x41\\x4g\\xq") == b"A\x00\x07xA\x04gxq"
    assert unescape(b"\\\\N") == b"\\N"
    assert unescape(b"\\.\\q") == b".q"
    assert unescape(b"plain") == b"plain"


def test_to_copy_text_of_each_python_type() -> None:
    aware = dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    cases: list[tuple[object, bytes]] = [
        (None, NULL),
        (True, b"t"),
        (False, b"f"),
        (-12, b"-12"),
        (2**70, b"1180591620717411303424"),
        (0.1, b"0.1"),
        (float("inf"), b"Infinity"),
        (float("-inf"), b"-Infinity"),
        (float("nan"), b"NaN"),
        (Decimal("-1.50"), b"-1.50"),
        ("tab\there\nnl\\bs\rcr 'q\" é", b"tab\\there\\nnl\\\\bs\\rcr 'q\" \xc3\xa9"),
        ("\\N", b"\\\\N"),
        ("", b""),
        (b"\x00\\\xff", b"\\\\x005cff"),
        (bytearray(b"\x01"), b"\\\\x01"),
        (memoryview(b"\x02"), b"\\\\x02"),
        (dt.date(2020, 2, 29), b"2020-02-29"),
        (dt.datetime(2020, 1, 2, 3, 4, 5), b"2020-01-02 03:04:05"),
        (dt.datetime(2020, 1, 2, 3, 4, 5, 60), b"2020-01-02 03:04:05.000060"),
        (aware, b"2020-01-02 01:04:05.000006"),
        (dt.time(23, 59, 1, 5), b"23:59:01.000005"),
        (dt.timedelta(hours=-1), b"-1 days 23:00:00"),
        (dt.timedelta(hours=25, microseconds=1), b"1 days 01:00:00.000001"),
        (uuid.UUID(int=255), b"00000000-0000-0000-0000-0000000000ff"),
        (["a,b", None, 'q"\\', ["x"]], b'{"a,b",NULL,"q\\\\"\\\\\\\\",{"x"}}'),
        ((1, 2), b'{"1","2"}'),
        ([], b"{}"),
        ({"k": "v\n", "n": [1]}, b'{"k": "v\\\\n", "n": [1]}'),
    ]
    for value, expected in cases:
        assert to_copy_text(value) == expected, value


@given(st.text())
def test_to_copy_text_of_text_is_its_escaped_utf8(text: str) -> None:
    field = to_copy_text(text)
    assert field != NULL
    assert unescape(field).decode("utf-8", "surrogatepass") == text


@given(st.floats())
def test_to_copy_text_of_floats_reads_back(value: float) -> None:
    back = float(to_copy_text(value))
    assert back == value or (math.isnan(back) and math.isnan(value))
    assert math.copysign(1, back) == math.copysign(1, value) or math.isnan(value)


PG_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
ROW = st.tuples(
    st.one_of(st.none(), PG_TEXT),
    st.one_of(st.none(), st.binary()),
    st.one_of(st.none(), st.floats(width=64)),
    st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=4)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.datetimes()),
    st.one_of(st.none(), st.lists(st.one_of(st.none(), PG_TEXT), max_size=4)),
    st.one_of(st.none(), st.booleans()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, max_size=8))
def test_postgresql_reads_back_what_to_copy_text_writes(
    pg_url: DatabaseURL, rows: list[tuple[Any, ...]]
) -> None:
    with psycopg.connect(pg_url.raw) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(
            "CREATE TEMP TABLE prop (t text, b bytea, f float8, n numeric, i int8, ts timestamp, "
            "a text[], o boolean)"
        )
        with conn.cursor().copy("COPY prop FROM STDIN") as copy:
            for row in rows:
                copy.write(b"\t".join(to_copy_text(v) for v in row) + b"\n")
        back = conn.execute("SELECT * FROM prop").fetchall()
    assert len(back) == len(rows)
    for got, sent in zip(back, rows, strict=True):
        for g, s in zip(got, sent, strict=True):
            if isinstance(s, float) and math.isnan(s):
                assert isinstance(g, float) and math.isnan(g)
            else:
                assert g == s


# -- the reading contract on every dialect ------------------------------------------------------

LETTERS = "abcde"
PAIRS = [(a, b, a * 10 + LETTERS.index(b)) for a in range(1, 5) for b in LETTERS]
CODES = [f"k{n:02d}" for n in range(1, 21)]
NAMES = ["plain", "tab\there", "nl\nhere", "back\\slash", "cr\rhere", "é ü 日本", "", None, "'q\"", "\\N"]  # fmt: skip
WEIRD_TABLE = 'we"ird ta`ble'
WEIRD_COLUMN = "sél%ect"


@pytest.fixture(params=["sqlite", "postgresql", "mysql-pymysql", "mysql-connector"])
def url(request: pytest.FixtureRequest) -> DatabaseURL:
    dialect, _, driver = request.param.partition("-")
    fixture = {"sqlite": "sqlite_url", "postgresql": "fresh_pg_url", "mysql": "fresh_mysql_url"}
    if driver == "connector" and not mysql_driver.preload_c_extension():
        pytest.skip("mysql-connector's C extension did not load in this process (ssl came first)")
    db: DatabaseURL = request.getfixturevalue(fixture[dialect])
    weird = quote(db, WEIRD_TABLE)
    weird_column = quote(db, WEIRD_COLUMN)
    if db.dialect == "postgresql":  # run_sql passes () to psycopg, which then reads "%"
        weird_column = weird_column.replace("%", "%%")
    run_sql(
        db,
        [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20), changed INTEGER)",
            "CREATE TABLE pairs (a INTEGER NOT NULL, b VARCHAR(10) NOT NULL, v INTEGER, PRIMARY KEY (a, b))",
            "CREATE TABLE codes (code VARCHAR(10) NOT NULL PRIMARY KEY, n INTEGER)",
            "CREATE TABLE vacant (id INTEGER PRIMARY KEY, name VARCHAR(20))",
            f"CREATE TABLE {weird} (id INTEGER PRIMARY KEY, {weird_column} VARCHAR(20))",
            *[
                ("INSERT INTO items VALUES (%s, %s, %s)", (n, NAMES[n - 1], n % 4))
                for n in range(1, 11)
            ],
            *[("INSERT INTO pairs VALUES (%s, %s, %s)", p) for p in PAIRS],
            *[("INSERT INTO codes VALUES (%s, %s)", (c, i)) for i, c in enumerate(CODES)],
            (f"INSERT INTO {weird} VALUES (%s, %s)", (1, "é'\"`x\t")),  # noqa: S608
        ],
    )
    return parse_url(f"{db.raw}?driver={driver}") if driver else db


@pytest.fixture
def source(url: DatabaseURL) -> Iterator[SourceDialect]:
    with open_source(url) as src:
        yield src


def text_rows(
    src: SourceDialect, table: str, columns: list[str], key: list[str], **kw: Any
) -> Fields:
    return [row for batch in src.stream_text(table, columns, key, **{"batch_size": 7, **kw}) for row in batch]  # fmt: skip


def as_text(rows: Sequence[Sequence[Any]]) -> Fields:
    return [[to_copy_text(v) for v in row] for row in rows]


def test_batches_of_three_over_ten_rows(source: SourceDialect) -> None:
    batches = list(source.stream_text("items", ["id", "name", "changed"], ["id"], batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    rows = [r for b in batches for r in b]
    assert all(type(r) is list and all(type(f) is bytes for f in r) for r in rows)
    assert rows == as_text([(n, NAMES[n - 1], n % 4) for n in range(1, 11)])
    assert rows[1][1] == b"tab\\there" and rows[7][1] == NULL and rows[9][1] == b"\\\\N"
    streamed = [r for b in source.stream("items", ["id", "name", "changed"], ["id"]) for r in b]
    assert rows == as_text(streamed)


def test_single_key_bounds(source: SourceDialect) -> None:
    def ids(**kw: Any) -> list[int]:
        return [int(r[0]) for r in text_rows(source, "items", ["id"], ["id"], **kw)]

    assert ids(after=[3], upto=[6]) == [4, 5, 6]
    assert ids(after=[8]) == [9, 10]
    assert ids(upto=(2,)) == [1, 2]
    assert ids(after=[10]) == []


@pytest.mark.parametrize(
    ("after", "upto"),
    [((2, "c"), (3, "b")), ((1, "e"), None), (None, (2, "a")), ((4, "e"), None)],
)
def test_composite_key_bounds(source: SourceDialect, after: Any, upto: Any) -> None:
    rows = text_rows(source, "pairs", ["a", "b", "v"], ["a", "b"], after=after, upto=upto)
    expected = [
        p for p in PAIRS if (after is None or p[:2] > after) and (upto is None or p[:2] <= upto)
    ]
    assert rows == as_text(expected)


def test_text_key_bounds_and_bound_values(source: SourceDialect) -> None:
    rows = text_rows(source, "codes", ["code", "n"], ["code"], after=["k05"], upto=["k09"])
    assert [r[0] for r in rows] == [b"k06", b"k07", b"k08", b"k09"]
    hostile = "k05' OR '1'='1"
    rows = text_rows(source, "codes", ["code"], ["code"], after=[hostile], upto=["k07"])
    assert [r[0] for r in rows] == [b"k06", b"k07"]


def test_since_is_a_change_cursor(source: SourceDialect) -> None:
    rows = text_rows(source, "items", ["id"], ["id"], since=("changed", 2))
    assert [int(r[0]) for r in rows] == [n for n in range(1, 11) if n % 4 >= 2]
    rows = text_rows(source, "items", ["id"], ["id"], after=[3], upto=[9], since=("changed", 3))
    assert [int(r[0]) for r in rows] == [7]
    with pytest.raises(UsageError, match=r"'items'.*since"):
        source.stream_text("items", ["id"], ["id"], since=("changed",))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"'items'.*since"):
        source.stream_text("items", ["id"], ["id"], since=("changed", None))


def test_empty_table_and_hostile_names(source: SourceDialect) -> None:
    assert list(source.stream_text("vacant", ["id", "name"], ["id"])) == []
    assert text_rows(source, WEIRD_TABLE, ["id", WEIRD_COLUMN], ["id"], after=[0]) == [
        [b"1", "é'\"`x\\t".encode()]
    ]


def test_errors_like_stream(source: SourceDialect) -> None:
    with pytest.raises(UsageError, match=r"'items'.*not among the columns"):
        source.stream_text("items", ["name"], ["id"])
    with pytest.raises(TerminalDatabaseError, match="no_such_table"):
        list(source.stream_text("no_such_table", ["id"], ["id"]))
    assert source.count("items") == 10


def test_closing_early(source: SourceDialect) -> None:
    stream = source.stream_text("items", ["id", "name"], ["id"], batch_size=2)
    assert [r[0] for r in next(stream)] == [b"1", b"2"]
    started = time.perf_counter()
    stream.close()  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 2.0
    assert source.count("items") == 10
    assert len(text_rows(source, "items", ["id"], ["id"])) == 10


BIG = 50_000
BIG_SQL = {  # 50,000 rows
    "sqlite": "INSERT INTO big WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 50000) SELECT i, 'row ' || i FROM n",
    "postgresql": "INSERT INTO big SELECT i, 'row ' || i FROM generate_series(1, 50000) i",
    "mysql": "INSERT INTO big SELECT n, CONCAT('row ', n) FROM (SELECT a.d + 10*b.d + 100*c.d "
    "+ 1000*e.d + 10000*f.d + 1 AS n FROM digits a, digits b, digits c, digits e, digits f) t "
    "WHERE n <= 50000",
}


def test_a_larger_table(url: DatabaseURL) -> None:
    run_sql(
        url,
        [
            "CREATE TABLE digits (d INTEGER PRIMARY KEY)",
            "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
            "CREATE TABLE big (id INTEGER PRIMARY KEY, pad VARCHAR(20))",
            BIG_SQL[url.dialect],
        ],
    )
    with open_source(url) as src:
        sizes = []
        expected = 1
        for batch in src.stream_text("big", ["id", "pad"], ["id"], batch_size=4096):
            sizes.append(len(batch))
            for row in batch:
                assert row == [b"%d" % expected, b"row %d" % expected]
                expected += 1
    assert expected == BIG + 1
    assert sizes == [4096] * (BIG // 4096) + [BIG % 4096]


# -- values: MySQL/MariaDB ----------------------------------------------------------------------

ALL_BYTES = bytes(range(256))
MYSQL_TYPES = [
    ("id", "INT NOT NULL PRIMARY KEY", "integer"),
    ("u", "INT UNSIGNED", "bigint"),
    ("huge", "BIGINT UNSIGNED", "numeric(20)"),
    ("d", "DECIMAL(12,3)", "numeric(12,3)"),
    ("f", "FLOAT", "real"),
    ("db", "DOUBLE", "float8"),
    ("b1", "TINYINT(1)", "smallint"),
    ("bit1", "BIT(1)", "boolean"),
    ("bit8", "BIT(8)", "smallint"),
    ("e", "ENUM('a', 'b\\tc', 'd''e')", "text"),
    ("s", "SET('x', 'y', 'z')", "text"),
    ("y", "YEAR", "smallint"),
    ("dd", "DATE", "date"),
    ("dt0", "DATETIME", "timestamp"),
    ("dt6", "DATETIME(6)", "timestamp(6)"),
    ("ts", "TIMESTAMP(3) NULL", "timestamptz"),
    ("tm", "TIME(6)", "interval"),
    ("vc", "VARCHAR(50)", "text"),
    ("tx", "TEXT", "text"),
    ("bl", "BLOB", "bytea"),
    ("bn", "BINARY(4)", "bytea"),
    ("vb", "VARBINARY(10)", "bytea"),
    ("j", "JSON", "jsonb"),
]
MYSQL_ROWS: list[tuple[Any, ...]] = [
    (1, 4294967295, 18446744073709551615, Decimal("-12.500"), 1.1, 0.1, 1, 1, 255, "b\tc",
     "x,z", 2024, "2020-02-29", "2020-01-02 03:04:05", "2020-01-02 03:04:05.123456",
     "2020-01-02 03:04:05.123", "-838:59:59.000000", "tab\tnl\nbs\\cr\r'q\"", "é\\N ü 日本\n",
     ALL_BYTES, b"\x01\x02", b"", '{"a": "b\\\\nc\\t", "n": [1, 2.5]}'),
    (2, 0, 0, Decimal("0.001"), -3.25e38, 1.7976931348623157e308, 2, 0, 0, "d'e", "",
     1901, "0000-00-00", "2021-02-31 00:00:00", "0000-00-00 00:00:00", None, "25:00:00.5",
     "", "", b"", b"\xff\xfe\xfd\xfc", b"\\\t\n", "{}"),
    (3, *[None] * 22),
]  # fmt: skip


@pytest.fixture(params=["pymysql", "connector"])
def mysql_typed(request: pytest.FixtureRequest, fresh_mysql_url: DatabaseURL) -> DatabaseURL:
    if request.param == "connector" and not mysql_driver.preload_c_extension():
        pytest.skip("mysql-connector's C extension did not load in this process (ssl came first)")
    columns = ", ".join(f"{name} {ddl}" for name, ddl, _ in MYSQL_TYPES)
    marks = ", ".join(["%s"] * len(MYSQL_TYPES))
    run_sql(
        fresh_mysql_url,
        [
            "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
            f"CREATE TABLE typed ({columns})",
            *[(f"INSERT INTO typed VALUES ({marks})", row) for row in MYSQL_ROWS],  # noqa: S608
        ],
    )
    # BIT columns take integers as b'...' literals only through SQL
    run_sql(fresh_mysql_url, ["UPDATE typed SET bit1 = b'1', bit8 = b'11111111' WHERE id = 1"])
    return parse_url(f"{fresh_mysql_url.raw}?driver={request.param}")


def load_into_pg(
    pg_url: DatabaseURL, table: str, types: Sequence[tuple[str, str]], rows: Fields
) -> list[tuple[Any, ...]]:
    """COPY ``rows`` into a fresh PostgreSQL table of ``types``; its rows, as psycopg reads them."""
    columns = ", ".join(f"{quote(pg_url, name)} {pg_type}" for name, pg_type in types)
    with psycopg.connect(pg_url.raw) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({columns})")
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write(b"\t".join(row) + b"\n")
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608


def test_mysql_values_load_into_postgresql(mysql_typed: DatabaseURL, pg_url: DatabaseURL) -> None:
    names = [name for name, _, _ in MYSQL_TYPES]
    types = [(name, pg_type) for name, _, pg_type in MYSQL_TYPES]
    with open_source(mysql_typed) as src:
        fields = text_rows(src, "typed", names, ["id"], batch_size=2)
        text_warnings = src.take_warnings()
        values = [r for b in src.stream("typed", names, ["id"]) for r in b]
        assert src.take_warnings() == text_warnings
    assert text_warnings == [
        "typed.dd: 1 zero or impossible date(s) read as NULL",
        "typed.dt0: 1 zero or impossible date(s) read as NULL",
        "typed.dt6: 1 zero or impossible date(s) read as NULL",
    ]
    assert fields[2] == [b"3"] + [NULL] * 22
    loaded = load_into_pg(pg_url, "from_mysql_text", types, fields)
    # The same rows through stream()'s Python values: two independent paths must agree.
    assert loaded == load_into_pg(pg_url, "from_mysql_values", types, as_text(values))
    one, two, _ = (dict(zip(names, row, strict=True)) for row in loaded)
    assert (one["u"], one["huge"], one["d"]) == (4294967295, 18446744073709551615, Decimal("-12.5"))
    assert (one["db"], two["db"], one["b1"], two["b1"]) == (0.1, 1.7976931348623157e308, 1, 2)
    assert (one["bit1"], one["bit8"], two["bit1"], two["bit8"]) == (True, 255, False, 0)
    assert (one["e"], two["e"], one["s"], two["s"], one["y"]) == ("b\tc", "d'e", "x,z", "", 2024)
    assert (one["dd"], two["dd"], two["dt0"], two["dt6"]) == (
        dt.date(2020, 2, 29),
        None,
        None,
        None,
    )
    assert one["dt6"] == dt.datetime(2020, 1, 2, 3, 4, 5, 123456)
    assert one["ts"] == dt.datetime(2020, 1, 2, 3, 4, 5, 123000, tzinfo=dt.UTC)
    assert one["tm"] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert two["tm"] == dt.timedelta(hours=25, microseconds=500000)
    assert (one["vc"], one["tx"]) == ("tab\tnl\nbs\\cr\r'q\"", "é\\N ü 日本\n")
    assert (two["vc"], two["tx"]) == ("", "")
    assert (one["bl"], one["bn"], one["vb"]) == (ALL_BYTES, b"\x01\x02\x00\x00", b"")
    assert (two["bl"], two["bn"], two["vb"]) == (b"", b"\xff\xfe\xfd\xfc", b"\\\t\n")
    assert (one["j"], two["j"]) == ({"a": "b\\nc\t", "n": [1, 2.5]}, {})
    assert one["f"] == pytest.approx(1.1, rel=1e-6)
    assert two["f"] == pytest.approx(-3.25e38, rel=1e-6)


def _readers(url: DatabaseURL, table: str) -> list[int]:
    admin = mysql_admin(url)
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND INFO LIKE %s "
                "AND ID <> CONNECTION_ID()",
                (url.database, f"%FROM `{table}`%"),
            )
            return [int(r[0]) for r in cur.fetchall()]
    finally:
        admin.close()


@pytest.fixture(params=["pymysql", "connector"])
def mysql_big(request: pytest.FixtureRequest, fresh_mysql_url: DatabaseURL) -> DatabaseURL:
    if request.param == "connector" and not mysql_driver.preload_c_extension():
        pytest.skip("mysql-connector's C extension did not load in this process (ssl came first)")
    run_sql(
        fresh_mysql_url,
        [
            "CREATE TABLE digits (d INT PRIMARY KEY)",
            "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
            "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB",
            "INSERT INTO big SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 1, "
            "REPEAT('x', 200) FROM digits a, digits b, digits c, digits e, digits f",
        ],
    )
    return parse_url(f"{fresh_mysql_url.raw}?driver={request.param}")


def test_mysql_abandoned_read_does_not_hang(mysql_big: DatabaseURL) -> None:
    with open_source(mysql_big) as src:
        stream = src.stream_text("big", ["id", "pad"], ["id"], batch_size=10)
        assert next(stream)[0][0] == b"1"
        started = time.perf_counter()
        stream.close()  # type: ignore[attr-defined]
        assert time.perf_counter() - started < 1.0
        for _ in range(50):
            if not _readers(mysql_big, "big"):
                break
            time.sleep(0.1)
        assert _readers(mysql_big, "big") == []


def test_mysql_killed_reader_is_transient(mysql_big: DatabaseURL) -> None:
    with open_source(mysql_big) as src:
        stream = src.stream_text("big", ["id", "pad"], ["id"], batch_size=100)
        assert len(next(stream)) == 100
        (reader,) = _readers(mysql_big, "big")
        run_sql(mysql_big, [f"KILL {reader}"])
        with pytest.raises(TransientDatabaseError, match="MySQL: reading table 'big'"):
            for _ in stream:
                pass
        assert src.count("big") == 100_000


# -- values: PostgreSQL -------------------------------------------------------------------------

PG_COLUMNS = [
    ("id", "integer PRIMARY KEY"),
    ("raw", "bytea"),
    ("tags", "text[]"),
    ("grid", "integer[][]"),
    ("nums", "numeric(6,2)[]"),
    ("feel", "mood"),
    ("feels", "mood[]"),
    ("at", "timestamptz"),
    ("local", "timestamp(3)"),
    ("day", "date"),
    ("clock", "time"),
    ("amount", "numeric"),
    ("ok", "boolean"),
    ("span", "interval"),
    ("uid", "uuid"),
    ("doc", "jsonb"),
    ("note", "text"),
    ("ratio", "float8"),
    ("small", "real"),
]
PG_ROWS = [
    "(1, '\\x00ff5c0a'::bytea || decode(repeat('ab', 3), 'hex'), "
    "ARRAY['a,b', NULL, 'q\"\\', '{x}', 'NULL', ''], '{{1,2},{3,NULL}}', '{1.50,-2}', "
    "'o''k', '{sad,happy}', '2020-01-02 03:04:05.678+02', '1999-12-31 23:59:59.999', "
    "'2020-02-29', '23:59:59.999999', 'NaN', true, '1 mon 2 days -03:04:05.5', "
    '\'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\', \'{"k": "v\\\\n\\t", "n": [1, null]}\', '
    "E'tab\\there\\nnl\\\\bs\\rcr é', 'Infinity', 0.1)",
    "(2, '', '{}', NULL, NULL, 'sad', '{}', '1900-01-01 00:00:00+00', NULL, NULL, NULL, "
    "-123456789.000000001, false, '-1 days', NULL, '{}', '', '-0', '-Infinity')",
    "(3" + ", NULL" * (len(PG_COLUMNS) - 1) + ")",
    "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1e-20, NULL, "
    "'0', NULL, NULL, E'\\\\N', 0.30000000000000004, 1e-38)",
]


@pytest.fixture
def pg_typed(fresh_pg_url: DatabaseURL) -> DatabaseURL:
    columns = ", ".join(f"{name} {ddl}" for name, ddl in PG_COLUMNS)
    like = ", ".join(f"{name} {ddl.replace(' PRIMARY KEY', '')}" for name, ddl in PG_COLUMNS)
    run_sql(
        fresh_pg_url,
        [
            # A database whose defaults would change COPY's text: stream_text must override them.
            *[
                f'ALTER DATABASE "{fresh_pg_url.database}" SET {setting}'
                for setting in (
                    "TimeZone = 'America/New_York'",
                    "extra_float_digits = 0",
                    "DateStyle = 'SQL, DMY'",
                    "IntervalStyle = 'sql_standard'",
                    "bytea_output = 'escape'",
                )
            ],
            "SET TimeZone = 'America/New_York'",
            "CREATE TYPE mood AS ENUM ('sad', 'o''k', 'happy')",
            f"CREATE TABLE typed ({columns})",
            f"INSERT INTO typed VALUES {', '.join(PG_ROWS)}",  # noqa: S608
            "CREATE TABLE parent (id int PRIMARY KEY, name text)",
            "CREATE TABLE child (extra int) INHERITS (parent)",
            "INSERT INTO parent VALUES (1, 'p1'), (3, 'p3')",
            "INSERT INTO child VALUES (2, 'c2', 7)",
            "CREATE SCHEMA copied",
            f"CREATE TABLE copied.typed ({like})",
            f"CREATE TABLE copied.from_values ({like})",
        ],
    )
    return fresh_pg_url


def test_postgresql_values_survive_copy_out_and_in(pg_typed: DatabaseURL) -> None:
    names = [name for name, _ in PG_COLUMNS]
    with open_source(pg_typed) as src:
        fields = text_rows(src, "typed", names, ["id"], batch_size=3)
    # stream() itself needs psycopg-parsable settings (DateStyle ISO) to read the values
    run_sql(pg_typed, [f'ALTER DATABASE "{pg_typed.database}" RESET ALL'])
    with open_source(pg_typed) as src:
        values = [r for b in src.stream("typed", names, ["id"]) for r in b]
    assert len(fields) == 4 and all(len(r) == len(names) for r in fields)
    assert fields[0][0] == b"1" and fields[2][1:] == [NULL] * (len(names) - 1)
    assert fields[0][7] == b"2020-01-02 01:04:05.678+00"  # UTC, whatever the writer's zone
    assert fields[0][18] == b"0.1" and fields[3][16] == b"\\\\N"
    assert fields[3][17] == b"0.30000000000000004"  # every digit, whatever the server default
    with psycopg.connect(pg_typed.raw, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for table, rows in (("typed", fields), ("from_values", as_text(values))):
            with conn.cursor().copy(f"COPY copied.{table} FROM STDIN") as copy:
                for row in rows:
                    copy.write(b"\t".join(row) + b"\n")
        original = conn.execute("SELECT t::text FROM ONLY typed t ORDER BY id").fetchall()
        # the text of each whole row: exact, down to interval months and float digits
        assert conn.execute("SELECT t::text FROM copied.typed t ORDER BY id").fetchall() == original
        differ = conn.execute(
            "SELECT count(*) FROM ((SELECT * FROM copied.from_values EXCEPT ALL "
            "SELECT * FROM copied.typed) UNION ALL (SELECT * FROM copied.typed EXCEPT ALL "
            "SELECT * FROM copied.from_values)) d"
        ).fetchone()
        assert differ == (0,)


def test_postgresql_inheritance_parent_reads_only_its_rows(pg_typed: DatabaseURL) -> None:
    with open_source(pg_typed) as src:
        assert text_rows(src, "parent", ["id", "name"], ["id"]) == [[b"1", b"p1"], [b"3", b"p3"]]
        assert text_rows(src, "child", ["id", "extra"], ["id"]) == [[b"2", b"7"]]


def test_postgresql_broken_connection_is_transient(fresh_pg_url: DatabaseURL) -> None:
    run_sql(
        fresh_pg_url,
        [
            "CREATE TABLE big (id int PRIMARY KEY, pad text)",
            "INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 200000) i",
        ],
    )
    with open_source(fresh_pg_url) as src:
        stream = src.stream_text("big", ["id", "pad"], ["id"], batch_size=100)
        assert len(next(stream)) == 100
        with psycopg.connect(fresh_pg_url.raw, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'COPY%'"
            ).fetchall()
        assert killed == [(True,)]
        with pytest.raises(TransientDatabaseError, match="PostgreSQL: reading table 'big'"):
            for _ in stream:
                pass
        assert src.count("big") == 200_000


# -- values: SQLite -----------------------------------------------------------------------------

SQLITE_ROWS: list[tuple[Any, ...]] = [
    (1, 1, 1.5, "tab\tnl\n\\ é", b"\x00\\\xff", "12.50", 1, "2020-01-02 03:04:05.123"),
    (2, "x\\y\r", float("inf"), "", ALL_BYTES, "NaN", 0, "2020-01-02"),
    (3, b"\xff\t", -0.0, None, b"", None, None, None),
    (4, 2.5, float("-inf"), "\\N", None, 1e-5, 1, "2020-01-02 03:04:05"),
    (5, None, 1e300, "日本", None, -7, 0, None),
    (6, 2**62, 0.1, "'q\"", b"\n", 3, 1, "2020-12-31T23:59:59"),
]


def test_sqlite_values(sqlite_url: DatabaseURL, pg_url: DatabaseURL) -> None:
    run_sql(
        sqlite_url,
        [
            "CREATE TABLE mixed (id INTEGER PRIMARY KEY, anything, r REAL, t TEXT, b BLOB, "
            "n NUMERIC, flag BOOLEAN, at DATETIME)",
            *[
                ("INSERT INTO mixed VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", r)
                for r in SQLITE_ROWS
            ],
        ],
    )
    names = ["id", "anything", "r", "t", "b", "n", "flag", "at"]
    with open_source(sqlite_url) as src:
        fields = text_rows(src, "mixed", names, ["id"], batch_size=4)
        values = [r for b in src.stream("mixed", names, ["id"]) for r in b]
    assert fields == as_text(values)
    assert [r[1] for r in fields] == [b"1", b"x\\\\y\\r", b"\\\\xff09", b"2.5", NULL, b"%d" % 2**62]
    assert [r[2] for r in fields] == [b"1.5", b"Infinity", b"0.0", b"-Infinity", b"1e+300", b"0.1"]
    typed = [r[:1] + r[2:] for r in fields]
    types = [("id", "bigint"), ("r", "float8"), ("t", "text"), ("b", "bytea"), ("n", "numeric"),
             ("flag", "boolean"), ("at", "timestamp")]  # fmt: skip
    loaded = load_into_pg(pg_url, "from_sqlite", types, typed)
    expected = [
        (
            r[0],
            r[2],
            r[3],
            r[4],
            None if r[5] is None else Decimal(str(r[5])),
            None if r[6] is None else bool(r[6]),
            None if r[7] is None else dt.datetime.fromisoformat(r[7]),
        )
        for r in SQLITE_ROWS
    ]
    for got, want in zip(loaded, expected, strict=True):
        nan = isinstance(want[4], Decimal) and want[4].is_nan() and math.isnan(got[4])
        assert got[:5] == want[:5] or (nan and got[:4] == want[:4])
        assert got[5:] == want[5:]


def test_copytext_module_is_small_and_public() -> None:
    assert copytext.NULL == b"\\N"
    assert {"escape", "unescape", "to_copy_text", "NULL"} <= set(dir(copytext))
