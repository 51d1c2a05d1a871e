"""MySQL/MariaDB source: legacy quirks, zero dates, both drivers alike, errors, read-only."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest

from dialect_support import mysql_admin, run_sql
from isthmus.dialects import mysql_driver, open_source
from isthmus.dialects.mysql import Source
from isthmus.errors import TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, parse_url

LEGACY = [
    "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
    """CREATE TABLE offices (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(40) NOT NULL,
        active TINYINT(1) NOT NULL DEFAULT 1,
        flag BIT(1),
        mask BIT(10),
        founded YEAR,
        kind ENUM('main', 'bra''nch') NOT NULL,
        features SET('x-ray', 'parking', 'wifi'),
        opened DATE,
        touched DATETIME(6) NOT NULL,
        stamp TIMESTAMP NULL,
        balance DECIMAL(12,2) UNSIGNED,
        ratio DOUBLE,
        small SMALLINT UNSIGNED,
        tiny TINYINT,
        huge BIGINT UNSIGNED,
        doc JSON,
        blobby MEDIUMBLOB,
        uid BINARY(16)
    ) ENGINE=MyISAM""",
    """CREATE TABLE doctors (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        office_id INT UNSIGNED NOT NULL,
        email VARCHAR(100),
        UNIQUE KEY doctors_email (email),
        KEY doctors_office (office_id),
        CONSTRAINT doctors_office_fk FOREIGN KEY (office_id) REFERENCES offices_inno (id)
    ) ENGINE=InnoDB""",
    "CREATE VIEW office_names AS SELECT name FROM offices",
]
ROWS = [
    "INSERT INTO offices (id, name, active, flag, mask, founded, kind, features, opened, touched, "
    "stamp, balance, ratio, small, tiny, huge, doc) VALUES "
    "(1, 'a', 1, b'1', b'1000000001', 1999, 'bra''nch', 'wifi,x-ray', '0000-00-00', "
    "'0000-00-00 00:00:00', '2020-01-01 12:00:00', 12.50, 0.5, 65535, -3, 18446744073709551615, "
    "'{\"k\": 1}'), "
    "(2, 'b', 0, b'0', 0, 2000, 'main', '', '2021-02-31', '2021-03-04 05:06:07.123456', NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL), "
    "(3, 'c', 2, NULL, NULL, NULL, 'main', NULL, NULL, '2022-01-01 00:00:00', NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL)",
]


@pytest.fixture
def legacy(fresh_mysql_url: DatabaseURL) -> DatabaseURL:
    # doctors needs an InnoDB parent: MyISAM tables can neither hold nor be the target of FKs.
    run_sql(
        fresh_mysql_url,
        [
            "CREATE TABLE offices_inno (id INT UNSIGNED NOT NULL PRIMARY KEY) ENGINE=InnoDB",
            *LEGACY,
            *ROWS,
        ],
    )
    return fresh_mysql_url


def test_reflection_of_legacy_quirks(legacy: DatabaseURL) -> None:
    info = Source(legacy).reflect()
    assert set(info.tables) == {"offices", "offices_inno", "doctors"}
    assert info.views == ("office_names",)
    col = {c.name: c for c in info.tables["offices"].columns}
    assert (col["id"].kind, col["id"].bits, col["id"].unsigned, col["id"].autoincrement) == (
        "integer",
        64,  # unsigned int widened
        True,
        True,
    )
    assert (col["active"].type_name, col["active"].kind) == ("tinyint(1)", "boolean")
    assert col["flag"].kind == "boolean"
    assert (col["mask"].kind, col["mask"].bits) == ("integer", 16)
    assert (col["founded"].kind, col["founded"].bits) == ("integer", 16)
    assert (col["kind"].kind, col["kind"].enum_values) == ("enum", ("main", "bra'nch"))
    assert (col["features"].kind, col["features"].enum_values) == (
        "set",
        ("x-ray", "parking", "wifi"),
    )
    assert (col["touched"].kind, col["touched"].precision) == ("timestamp", 6)
    assert col["stamp"].kind == "timestamptz"
    assert (col["balance"].kind, col["balance"].precision, col["balance"].scale) == (
        "decimal",
        12,
        2,
    )
    assert (col["small"].bits, col["tiny"].bits, col["huge"].bits) == (32, 16, 64)
    assert col["doc"].kind == "json"
    assert (col["blobby"].kind, col["uid"].kind, col["uid"].length) == ("bytes", "bytes", 16)
    assert (col["name"].length, col["name"].nullable) == (40, False)
    assert info.tables["offices"].integer_key == "id"


def test_myisam_has_no_foreign_keys_and_says_so(legacy: DatabaseURL) -> None:
    info = Source(legacy).reflect()
    assert info.tables["offices"].foreign_keys == ()
    assert any("'offices' uses MyISAM" in note for note in info.notes)
    (fk,) = info.tables["doctors"].foreign_keys
    assert (fk.name, fk.columns, fk.ref_table, fk.ref_columns) == (
        "doctors_office_fk",
        ("office_id",),
        "offices_inno",
        ("id",),
    )
    indexes = {i.name: (i.columns, i.unique) for i in info.tables["doctors"].indexes}
    assert indexes["doctors_email"] == (("email",), True)
    assert indexes["doctors_office"] == (("office_id",), False)
    assert info.tables["offices"].row_estimate == 3  # exact for MyISAM


COLUMNS = [
    "id",
    "active",
    "flag",
    "mask",
    "founded",
    "kind",
    "features",
    "opened",
    "touched",
    "stamp",
    "balance",
    "huge",
    "doc",
]
EXPECTED = [
    (
        1,
        1,
        1,
        513,
        1999,
        "bra'nch",
        "x-ray,wifi",
        None,
        None,
        dt.datetime(2020, 1, 1, 12),
        Decimal("12.50"),
        18446744073709551615,
        '{"k": 1}',
    ),
    (
        2,
        0,
        0,
        0,
        2000,
        "main",
        "",
        None,
        dt.datetime(2021, 3, 4, 5, 6, 7, 123456),
        None,
        None,
        None,
        None,
    ),
    (3, 2, None, None, None, "main", None, None, dt.datetime(2022, 1, 1), None, None, None, None),
]


def test_values_zero_dates_bits_and_sets(legacy: DatabaseURL) -> None:
    with open_source(legacy) as src:
        rows = [r for b in src.stream("offices", COLUMNS, ["id"], batch_size=2) for r in b]
        assert rows == EXPECTED
        assert src.take_warnings() == [
            "offices.opened: 2 zero or impossible date(s) read as NULL",
            "offices.touched: 1 zero or impossible date(s) read as NULL",
        ]
        assert src.take_warnings() == []
        by_key = src.fetch_keys("offices", COLUMNS, "id", [1])
        assert by_key == EXPECTED[:1]
        assert len(src.take_warnings()) == 2


def test_timestamps_come_back_in_utc(legacy: DatabaseURL) -> None:
    run_sql(
        legacy,
        [
            "SET time_zone = '+05:00'",
            "UPDATE offices SET stamp = '2020-06-01 10:00:00' WHERE id = 2",
        ],
    )
    with open_source(legacy) as src:
        (row,) = src.fetch_keys("offices", ["id", "stamp"], "id", [2])
    assert row == (2, dt.datetime(2020, 6, 1, 5, 0))


def test_read_only_unless_writable(legacy: DatabaseURL) -> None:
    src = Source(legacy)
    driver_errors: tuple[type[Exception], ...] = (pymysql.err.MySQLError,)
    if src.driver == "connector":
        import mysql.connector

        driver_errors = (mysql.connector.Error,)
    with pytest.raises(driver_errors, match="READ ONLY"), src.connection().cursor() as cur:
        cur.execute("INSERT INTO doctors (office_id) VALUES (1)")
    writable = Source(legacy, writable=True)
    with writable.connection().cursor() as cur:
        cur.execute("INSERT INTO offices_inno VALUES (7)")
    assert src.count("offices_inno") == 1


def fill_big(url: DatabaseURL, rows: int = 100_000) -> None:
    run_sql(
        url,
        [
            "CREATE TABLE digits (d INT PRIMARY KEY)",
            "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
            "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB",
            "INSERT INTO big SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 1, REPEAT('x', 200) "
            "FROM digits a, digits b, digits c, digits e, digits f",
        ],
    )


def _readers_of(url: DatabaseURL, table: str) -> list[int]:
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


def test_killed_reader_is_transient(legacy: DatabaseURL) -> None:
    fill_big(legacy)
    src = Source(legacy)
    stream = src.stream("big", ["id", "pad"], ["id"], batch_size=100)
    assert len(next(stream)) == 100
    (reader,) = _readers_of(legacy, "big")
    run_sql(legacy, [f"KILL {reader}"])
    with pytest.raises(TransientDatabaseError, match="MySQL: reading table 'big'"):
        for _ in stream:
            pass
    assert src.count("big") == 100_000


def test_stopping_early_does_not_read_the_rest(legacy: DatabaseURL) -> None:
    fill_big(legacy)
    src = Source(legacy)
    stream = src.stream("big", ["id", "pad"], ["id"], batch_size=10)
    assert next(stream)[0][0] == 1
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 1.0
    for _ in range(50):  # the server notices the closed socket on its next write
        if not _readers_of(legacy, "big"):
            break
        time.sleep(0.1)
    assert _readers_of(legacy, "big") == []


def test_unknown_database_bad_password_and_refused(legacy: DatabaseURL) -> None:
    with pytest.raises(TerminalDatabaseError, match=r"\(1049\).*isthmus_no_such_db"):
        open_source(legacy.with_database("isthmus_no_such_db"))
    bad = parse_url(f"mysql://nobody_here:s3cret-pw@{legacy.host}:{legacy.port or 3306}/x")
    with pytest.raises(
        TerminalDatabaseError, match=r"mysql://nobody_here:\*\*\*@.*\(1045\)"
    ) as info:
        open_source(bad)
    assert "s3cret-pw" not in str(info.value)
    refused = parse_url("mysql://root:s3cret-pw@127.0.0.1:1/legacy")
    with pytest.raises(
        TransientDatabaseError, match=r"connecting to mysql://root:\*\*\*@127\.0\.0\.1:1/legacy"
    ) as info2:
        open_source(refused)
    assert "s3cret-pw" not in str(info2.value)


@pytest.mark.parametrize(
    ("errno", "transient"),
    [
        (2006, True),
        (2013, True),
        (1205, True),
        (1213, True),
        (1040, True),
        (1146, False),
        (1064, False),
        (1792, False),
    ],
)
def test_error_numbers(errno: int, transient: bool) -> None:
    errors: list[BaseException] = [pymysql.err.OperationalError(errno, "server said no")]
    if mysql_driver.preload_c_extension():
        import mysql.connector.errors as connector_errors

        errors.append(connector_errors.DatabaseError(msg="server said no", errno=errno))
    for exc in errors:
        error = mysql_driver.translate(exc, "reading table 'x'")
        expected = TransientDatabaseError if transient else TerminalDatabaseError
        assert type(error) is expected
        assert str(error) == f"MySQL: reading table 'x': ({errno}) server said no"


def test_unknown_driver_is_a_config_error(legacy: DatabaseURL) -> None:
    from isthmus.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown driver 'odbc'"):
        Source(parse_url(legacy.raw + "?driver=odbc"))


PARITY_SCRIPT = """
import json, sys
from isthmus.dialects import mysql_driver
if not mysql_driver.preload_c_extension():
    print(json.dumps({"skip": "the C extension does not load"})); sys.exit(0)
from isthmus.dialects.mysql import Source
from isthmus.urls import parse_url
out = {}
for driver in ("connector", "pymysql"):
    src = Source(parse_url(sys.argv[1] + "?driver=" + driver))
    assert src.driver == driver
    rows = [r for b in src.stream("offices", json.loads(sys.argv[2]), ["id"], batch_size=2) for r in b]
    out[driver] = {"rows": repr(rows), "warnings": src.take_warnings()}
print(json.dumps(out))
"""


def test_both_drivers_return_the_same_values(legacy: DatabaseURL) -> None:
    """The C extension only loads in a fresh interpreter (see mysql_driver), hence the subprocess."""
    done = subprocess.run(
        [sys.executable, "-c", PARITY_SCRIPT, legacy.raw, json.dumps(COLUMNS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["connector"] == result["pymysql"]
    assert result["pymysql"]["rows"] == repr(EXPECTED)
