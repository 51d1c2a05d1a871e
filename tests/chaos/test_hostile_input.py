"""Hostile input: identifiers, values, config, mapping files and cron expressions that try to
break isthmus, against real SQLite, MariaDB and PostgreSQL databases.

Each case ends in a correct migration (validate passes, values equal) or a clear error or
quarantine entry naming the row, column or key, with nothing lost (source rows = migrated +
quarantined) and no SQL run that was not meant to be (the canary tables survive).

1. identifiers: tables and columns named ``select``, ``Order Items``, ``"quoted"``, ``it's``,
   ``MixedCase``, ``naïve_ünïcode``, ``日本``, ``x; DROP TABLE t; --``, ``50%s off``, ``?``,
   ``%(x)s``, in SQLite, MariaDB (both drivers) and PostgreSQL: init, schema --apply, migrate,
   diff, validate, a differential migrate and a target_wins write-back all work;
2. values: NUL, invalid UTF-8, huge text and blobs, zero and impossible dates, numbers out of
   range (of the target too), NaN and ±Infinity, extreme dates, JSON oddities;
3. config files whose table, column, key and schema names try to inject SQL;
4. mapping CSVs with duplicates, bad UUIDs, wrong types, missing columns, huge lines;
5. malformed cron expressions for scheduled jobs.

Each prints ``hostile-input: <class> N/N handled``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaos_support import FULL, rows
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import mysql_admin, quote, run_sql
from isthmus import commands
from isthmus.config import Config, config_from_dict
from isthmus.errors import ConfigError, IsthmusError, UsageError
from isthmus.urls import DatabaseURL, parse_url

pytestmark = pytest.mark.chaos

STATE = "isthmus"
VALIDATIONS = ["completeness_check", "data_integrity", "relationship_integrity"]


def handled(klass: str, ok: int, total: int) -> None:
    print(f"hostile-input: {klass} {ok}/{total} handled")


def label(url: DatabaseURL) -> str:
    """The source's dialect, and the MySQL driver when it is not the default one."""
    return url.dialect + ("-pymysql" if "driver=pymysql" in url.raw else "")


def make_config(source: DatabaseURL, target: DatabaseURL, **extra: Any) -> Config:
    doc: dict[str, Any] = {
        "source": {"url": source.raw},
        "target": {"url": target.raw, "state_schema": STATE},
        "migration": {"batch_size": 16},
    }
    doc.update(extra)
    return config_from_dict(doc)


SOURCES = ["sqlite", "mysql", "mysql-pymysql", "postgresql"]


@pytest.fixture(params=SOURCES)
def source_url(request: pytest.FixtureRequest, pg_databases: PgDatabases) -> DatabaseURL:
    """A source of each dialect (MariaDB through both of its drivers)."""
    if request.param == "sqlite":
        url: DatabaseURL = request.getfixturevalue("sqlite_url")
        return url
    if request.param.startswith("mysql"):
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        url = mysql.create("isthmus_hostile")
        return parse_url(url.raw + "?driver=pymysql") if "pymysql" in request.param else url
    return pg_databases.create("isthmus_hostile_src")


def execute(url: DatabaseURL, statements: Sequence[str]) -> None:
    """Run statements without parameters (so a ``%`` in a name is only a character)."""
    if url.dialect == "sqlite":
        conn = sqlite3.connect(url.database or "")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
    elif url.dialect == "postgresql":
        with psycopg.connect(url.raw, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement.encode())  # bytes: never formatted
    else:
        my = mysql_admin(url)
        try:
            with my.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            my.close()


def insert_rows(
    url: DatabaseURL, table: str, columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> None:
    """INSERT rows with bound values, whatever the names hold (``%`` and ``?`` too)."""
    names = [quote(url, c) for c in [table, *columns]]
    if url.dialect != "sqlite":  # the drivers' %s formatting: a % in a name is doubled
        names = [n.replace("%", "%%") for n in names]
    mark = "?" if url.dialect == "sqlite" else "%s"
    query = (
        f"INSERT INTO {names[0]} ({', '.join(names[1:])})"  # noqa: S608
        f" VALUES ({', '.join([mark] * len(columns))})"
    )
    if url.dialect == "sqlite":
        conn = sqlite3.connect(url.database or "")
        try:
            conn.executemany(query, values)
            conn.commit()
        finally:
            conn.close()
    elif url.dialect == "postgresql":
        with psycopg.connect(url.raw, autocommit=True) as pg, pg.cursor() as cur:
            cur.executemany(query, values)
    else:
        my = mysql_admin(url)
        try:
            with my.cursor() as cur:
                cur.executemany(query, [tuple(v) for v in values])
        finally:
            my.close()


def fetch(url: DatabaseURL, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    if url.dialect == "sqlite":
        conn = sqlite3.connect(url.database or "")
        try:
            return [
                tuple(r)
                for r in conn.execute(query.replace("%s", "?") if params else query, params)
            ]
        finally:
            conn.close()
    if url.dialect == "postgresql":
        with psycopg.connect(url.raw) as pg:
            return [tuple(r) for r in pg.execute(query, params or None)]
    my = mysql_admin(url)
    try:
        with my.cursor() as cur:
            cur.execute(query, tuple(params) or None)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        my.close()


# -- 1. hostile identifiers ---------------------------------------------------------------------

# (table, key column, [(column, type)], references {column: parent table})
PARENT = "select"
ITEMS = "Order Items"
QUOTED = '"quoted"'
APOS = "it's"
MIXED = "MixedCase"
UNI = "naïve_ünïcode"
JAPAN = "日本"
INJECT = "x; DROP TABLE t; --"
PERCENT = "50%s off"
CANARY = "t"

# Values that break naive quoting, escaping or parameter formatting.
NASTY = [
    "plain",
    "it's",
    'say "hi"',
    "back\\slash",
    "\\N",
    "tab\there",
    "new\nline\r\n",
    "'); DROP TABLE t; --",
    "%s %(x)s {0} ?",
    "naïve 日本 🦄",
    "",
    "  trailing  ",
    "`back`tick`",
    "\u2028sep\u2029",
]


def hostile_tables(dialect: str) -> list[tuple[str, str, list[tuple[str, str]], dict[str, str]]]:
    integer = "INTEGER" if dialect == "sqlite" else "INT"
    text = "VARCHAR(200)" if dialect == "mysql" else "TEXT"
    stamp = "DATETIME" if dialect == "mysql" else "TIMESTAMP"
    tables = [
        (
            PARENT,
            "id",
            [("from", text), ("Order", integer), ("where", "REAL"), ("when", stamp)],
            {},
        ),
        (
            ITEMS,
            "id",
            [
                ("select_id", integer),
                (QUOTED, text),
                (APOS, text),
                (MIXED, integer),
                (UNI, text),
                (JAPAN, text),
                (INJECT, text),
                (PERCENT, text),
            ],
            {"select_id": PARENT},
        ),
        (QUOTED, "id", [(APOS, text), ("Order Items_id", integer)], {"Order Items_id": ITEMS}),
        (APOS, "ID", [("a`b", text), ("Quoted", integer)], {"Quoted": QUOTED}),
        (MIXED, "Id", [("Value", text), ("UPPER", integer)], {}),
        (UNI, "clé", [("ünï", text), (JAPAN + "_id", integer)], {JAPAN + "_id": JAPAN}),
        (JAPAN, "番号", [("名前", text)], {}),
        (PERCENT, "id", [("%(x)s", text), ("?", text)], {}),
        (CANARY, "id", [("v", text)], {}),
    ]
    return tables


def create_hostile(source: DatabaseURL, n: int) -> dict[str, int]:
    """Create the hostile schema with ``n`` rows in each table; returns rows per table."""
    dialect = source.dialect
    tables = hostile_tables(dialect)

    def q(name: str) -> str:
        return quote(source, name)

    statements: list[str] = []
    # Parents before children (in the list order: JAPAN is created before UNI needs it, so
    # create in dependency order explicitly).
    order = [JAPAN, PARENT, ITEMS, QUOTED, APOS, MIXED, UNI, PERCENT, CANARY]
    by_name = {t[0]: t for t in tables}
    for name in order:
        _, key, columns, refs = by_name[name]
        cols = [f"{q(key)} {'INTEGER' if dialect == 'sqlite' else 'INT'} PRIMARY KEY"]
        cols += [f"{q(c)} {t}" for c, t in columns]
        cols += [
            f"FOREIGN KEY ({q(c)}) REFERENCES {q(p)} ({q(by_name[p][1])})" for c, p in refs.items()
        ]
        tail = " CHARACTER SET utf8mb4" if dialect == "mysql" else ""
        statements.append(f"CREATE TABLE {q(name)} ({', '.join(cols)}){tail}")
    execute(source, statements)
    counts: dict[str, int] = {}
    for name in order:
        _, key, columns, refs = by_name[name]
        names = [key] + [c for c, _ in columns]
        batch: list[list[Any]] = []
        for i in range(1, n + 1):
            values: list[Any] = [i]
            for c, t in columns:
                if c in refs:
                    values.append(None if i % 7 == 0 else (i * 3) % n + 1)
                elif t in ("INTEGER", "INT"):
                    values.append(i * 11 - 50)
                elif t == "REAL":
                    values.append(i / 8 - 1.5)
                elif t in ("DATETIME", "TIMESTAMP"):
                    values.append(dt.datetime(2020, 1, 1, 12) + dt.timedelta(hours=i * 37))
                else:
                    values.append(None if i % 5 == 0 else f"{NASTY[i % len(NASTY)]}#{i}")
            batch.append(values)
        insert_rows(source, name, names, batch)
        counts[name] = n
    return counts


def test_hostile_identifiers_round_trip(source_url: DatabaseURL, fresh_pg_url: DatabaseURL) -> None:
    n = rows(30, 400)
    counts = create_hostile(source_url, n)
    config = make_config(source_url, fresh_pg_url)

    commands.init(config)
    applied = commands.schema(config, apply=True)
    assert applied is not None
    result = commands.migrate(config)
    assert result.exit_code == 0, result.to_dict()
    assert result.open_quarantine == 0
    migrated = {e["entity"]: e for e in result.to_dict()["entities"]}
    assert set(migrated) == set(counts), sorted(migrated)
    for name, count in counts.items():
        assert migrated[name]["rows_read"] == count, (name, migrated[name])

    diff = commands.diff(config)
    assert diff.exit_code == 0, diff.to_dict()
    checked = commands.validate(config, VALIDATIONS)
    assert checked.exit_code == 0, [c.to_dict() for c in checked.failed]
    assert len(checked.checks) == len(VALIDATIONS) * len(counts)

    # Values equal, column by column, in the table with the nastiest names.
    def q(name: str) -> str:
        return quote(source_url, name)

    _, _, columns, _ = next(t for t in hostile_tables(source_url.dialect) if t[0] == ITEMS)
    text_cols = [c for c, t in columns if t in ("TEXT", "VARCHAR(200)")]
    src = {
        r[0]: r[1:]
        for r in fetch(
            source_url,
            f"SELECT {q('id')}, {', '.join(q(c) for c in text_cols)} FROM {q(ITEMS)}",  # noqa: S608
        )
    }
    with psycopg.connect(fresh_pg_url.raw) as conn:
        tgt = {
            r[0]: r[1:]
            for r in conn.execute(
                sql.SQL(
                    "SELECT m.legacy_id, {} FROM {} i JOIN {}.legacy_id_mappings m"
                    " ON m.uuid_id = i.id AND m.entity_type = {}"
                ).format(
                    sql.SQL(", ").join(sql.Identifier("i", c) for c in text_cols),
                    sql.Identifier(ITEMS),
                    sql.Identifier(STATE),
                    sql.Literal(ITEMS),
                ),
            )
        }
    assert src == tgt

    # A change on either side in a hostile column is seen: the comparison is not vacuous.
    run_sql(
        source_url,
        [(f"UPDATE {q(ITEMS)} SET {q(INJECT)} = %s WHERE {q('id')} = 3", ("changed'; --",))],  # noqa: S608
    )
    again = commands.migrate(config)
    assert again.exit_code == 0
    items = next(e for e in again.to_dict()["entities"] if e["entity"] == ITEMS)
    assert items["updated"] == 1, items
    with psycopg.connect(fresh_pg_url.raw, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET {} = %s WHERE id = (SELECT uuid_id FROM"
                " {}.legacy_id_mappings WHERE entity_type = %s AND legacy_id = 4)"
            ).format(sql.Identifier(ITEMS), sql.Identifier(JAPAN), sql.Identifier(STATE)),
            ("target side", ITEMS),
        )
    seen = commands.diff(config, [ITEMS])
    assert seen.exit_code == 1
    assert seen.total == 1, seen.to_dict()
    # ... and written back into the hostile source table by its writer (target_wins).
    resolved = commands.differentials_resolve(
        config, strategy="target_wins", every_open=True, entities=[ITEMS]
    )
    assert resolved.exit_code == 0, resolved.to_dict()
    back = fetch(source_url, f"SELECT {q(JAPAN)} FROM {q(ITEMS)} WHERE {q('id')} = 4")  # noqa: S608
    assert back == [("target side",)]
    assert commands.diff(config).exit_code == 0

    # The canary survived on both sides, with its rows.
    assert fetch(source_url, f"SELECT count(*) FROM {q(CANARY)}")[0][0] == n  # noqa: S608
    with psycopg.connect(fresh_pg_url.raw) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (n,)
    handled(f"identifiers-{label(source_url)}", len(counts), len(counts))


# -- 2. hostile values --------------------------------------------------------------------------

# MariaDB: its max_allowed_packet (16 MB) bounds a value, so at most 12 MB there
HUGE_MB = rows(4, 20)
NASTY_TEXT = "back\\slash \\N tab\t cr\r nl\n 'q' \"dq\" 日本 🦄 \u2028 \ufeff end "


@dataclass
class Planted:
    """What a hostile source holds and what must become of it."""

    total: int = 0  # source rows
    # key → (column named, words in the reason): must be quarantined
    quarantined: dict[int, tuple[str | None, tuple[str, ...]]] = field(default_factory=dict)
    # key → columns read as NULL (a documented conversion, said in the warnings)
    nulled: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # key → column: written, but changed by a target stricter than the source; validate says so
    mismatched: dict[int, str] = field(default_factory=dict)
    # (key, column, SQL on the target giving a comparable value, expected value)
    checks: list[tuple[int, str, str, Any]] = field(default_factory=list)
    # keys migrated as they are (everything but the above)
    kept: set[int] = field(default_factory=set)

    ordinary: int = 0  # of the kept rows, the ordinary ones around the hostile ones

    @property
    def trials(self) -> int:
        """Hostile values planted (one per row)."""
        rows = len(self.quarantined) + len(self.nulled) + len(self.mismatched) + len(self.kept)
        return rows - self.ordinary


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _all_bytes(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def _huge_text(size: int) -> str:
    unit = NASTY_TEXT
    return (unit * (size // len(unit.encode()) + 1))[: size // 2]


def plant_values(source: DatabaseURL, n: int) -> Planted:
    """``vals``: ``n`` ordinary rows, then one hostile value per row from key 1000000 on."""
    dialect = source.dialect
    planted = Planted()
    mb = (min(12, HUGE_MB) if dialect == "mysql" else HUGE_MB) * 1024 * 1024
    huge_text, huge_blob = _huge_text(mb), _all_bytes(mb)
    if dialect == "sqlite":
        ddl = (
            "CREATE TABLE vals (id INTEGER PRIMARY KEY, note TEXT, n INTEGER, r REAL, d DATE,"
            " b BLOB, money NUMERIC(12,4))"
        )
        good = ("ok", 1, 0.5, "2024-01-01", b"\x01", 10.5)
    elif dialect == "mysql":
        ddl = (
            "CREATE TABLE vals (id INT PRIMARY KEY, note LONGTEXT, n BIGINT, r DOUBLE, d DATE,"
            " b LONGBLOB, money DECIMAL(12,4), l1 VARCHAR(60) CHARACTER SET latin1,"
            " dt DATETIME, ub BIGINT UNSIGNED, big DECIMAL(65,30), tm TIME, e ENUM('a','b'),"
            " f FLOAT, bits BIT(64), vb VARBINARY(300)) CHARACTER SET utf8mb4"
        )
        good = ("ok", 1, 0.5, "2024-01-01", b"\x01", 10.5)
    else:
        ddl = (
            "CREATE TABLE vals (id INT PRIMARY KEY, note TEXT, n BIGINT, r FLOAT8, d DATE,"
            " b BYTEA, money NUMERIC(12,4), f4 REAL, num NUMERIC, ts TIMESTAMP, tz TIMESTAMPTZ,"
            " j JSONB)"
        )
        good = ("ok", 1, 0.5, "2024-01-01", b"\x01", 10.5)
    execute(source, [ddl])
    base = ["id", "note", "n", "r", "d", "b", "money"]
    insert_rows(source, "vals", base, [(i, f"{good[0]} {i}", *good[1:]) for i in range(1, n + 1)])
    planted.kept |= set(range(1, n + 1))
    planted.ordinary = n
    key = 999_999  # hostile rows from key 1000000 on

    def add(column: str, value: Any) -> int:
        nonlocal key
        key += 1
        insert_rows(source, "vals", [*base, *([] if column in base else [column])], [
            [key, *(value if c == column else g for c, g in zip(base[1:], good, strict=True)),
             *([] if column in base else [value])]
        ])  # fmt: skip
        return key

    def sql_value(column: str, expression: str, *, mode: str | None = None) -> int:
        """A value only SQL can write (a relaxed sql_mode on MariaDB)."""
        k = add("note", f"{good[0]} {key + 1}")
        statements = [f"UPDATE vals SET {column} = {expression} WHERE id = {k}"]  # noqa: S608
        if mode is not None:
            statements.insert(0, f"SET SESSION sql_mode = '{mode}'")
        execute(source, statements)
        return k

    # Every dialect: huge text and blob, text with every escape, number extremes.
    if dialect == "mysql":  # built by the server: a statement is bounded by max_allowed_packet
        unit_text, unit_blob = NASTY_TEXT, _all_bytes(256)
        reps_text, reps_blob = mb // len(unit_text.encode()), mb // 256
        huge_text, huge_blob = unit_text * reps_text, unit_blob * reps_blob
        k = add("note", unit_text)
        execute(source, [f"UPDATE vals SET note = REPEAT(note, {reps_text}) WHERE id = {k}"])  # noqa: S608
        planted.checks.append(
            (k, "note", "md5(convert_to(note, 'UTF8'))", _md5(huge_text.encode()))
        )
        planted.kept.add(k)
        k = add("b", unit_blob)
        execute(source, [f"UPDATE vals SET b = REPEAT(b, {reps_blob}) WHERE id = {k}"])  # noqa: S608
    else:
        k = add("note", huge_text)
        planted.checks.append(
            (k, "note", "md5(convert_to(note, 'UTF8'))", _md5(huge_text.encode()))
        )
        planted.kept.add(k)
        k = add("b", huge_blob)
    planted.checks.append((k, "b", "md5(b)", _md5(huge_blob)))
    planted.kept.add(k)
    k = add("note", NASTY_TEXT)
    planted.checks.append((k, "note", "note", NASTY_TEXT))
    planted.kept.add(k)
    k = add("b", _all_bytes(256))
    planted.checks.append((k, "b", "b", _all_bytes(256)))
    planted.kept.add(k)
    for integer in (-(2**63), 2**63 - 1):
        k = add("n", integer)
        planted.checks.append((k, "n", "n", integer))
        planted.kept.add(k)
    for value in (1.7976931348623157e308, 5e-324, -0.0):
        k = add("r", value)
        planted.checks.append((k, "r", "r", value))
        planted.kept.add(k)
    # A decimal beyond the target's precision (the target is made numeric(8,2) below): refused,
    # quarantined; beyond its scale: rounded by PostgreSQL, which validate must point out.
    planted.quarantined[add("money", 12345678.5)] = ("money", ("numeric field overflow",))
    planted.mismatched[add("money", 1.2345)] = "money"

    if dialect in ("sqlite", "mysql"):  # PostgreSQL text cannot hold NUL at all
        planted.quarantined[add("note", "a\x00b")] = ("note", ("0x00",))
    if dialect == "sqlite":
        for raw, shown in ((b"\xc3\x28", "0xc3 0x28"), (b"a\xffb", "0xff")):
            k = sql_value("note", f"CAST(X'{raw.hex()}' AS TEXT)")
            planted.quarantined[k] = ("note", (shown, "UTF8"))
        k = sql_value("n", "'99999999999999999999'")
        planted.quarantined[k] = ("n", ("out of range", "bigint"))
        planted.quarantined[add("n", 9.5)] = ("n", ("9.5",))
        planted.quarantined[add("d", "0000-00-00")] = ("d", ("0000-00-00",))
        planted.quarantined[add("d", "2024-02-30")] = ("d", ("2024-02-30",))
        for value in (math.inf, -math.inf):
            k = add("r", value)
            planted.checks.append((k, "r", "r", value))
            planted.kept.add(k)
        # SQLite stores NaN as NULL itself: there is nothing else to migrate.
        k = add("r", math.nan)
        assert fetch(source, "SELECT r FROM vals WHERE id = %s", (k,)) == [(None,)]
        planted.kept.add(k)
    if dialect == "mysql":
        latin = bytes(range(0x80, 0xA0)) + b"\xff\xc3\x28"
        k = sql_value("l1", f"X'{latin.hex()}'")
        (shown,) = fetch(source, f"SELECT CONVERT(l1 USING utf8mb4) FROM vals WHERE id = {k}")[0]  # noqa: S608
        planted.checks.append((k, "l1", "l1", shown))  # MariaDB's latin1 (cp1252) reading
        planted.kept.add(k)
        relaxed = "ALLOW_INVALID_DATES"
        for bad in ("'0000-00-00'", "'2024-02-30'", "'2024-00-10'"):
            k = sql_value("d", bad, mode=relaxed)
            planted.nulled[k] = ("d",)
        k = sql_value("dt", "'0000-00-00 00:00:00'", mode=relaxed)
        planted.nulled[k] = ("dt",)
        k = sql_value("ub", "18446744073709551615")
        planted.checks.append((k, "ub", "ub", Decimal(18446744073709551615)))
        planted.kept.add(k)
        wide = "99999999999999999999999999999999999.999999999999999999999999999999"
        k = sql_value("big", wide)
        planted.checks.append((k, "big", "big", Decimal(wide)))
        planted.kept.add(k)
        planted.quarantined[sql_value("tm", "'838:59:59'")] = ("tm", ("838:59:59",))
        planted.quarantined[sql_value("tm", "'-838:59:59'")] = ("tm", ("-838:59:59",))
        k = sql_value("e", "'zzz'", mode="")  # not a member: MariaDB keeps '' (index 0)
        planted.quarantined[k] = (None, ("check constraint", "vals_e_check"))
        k = sql_value("f", "3.402823466e38")
        planted.kept.add(k)
        k = sql_value("bits", "18446744073709551615")
        planted.checks.append((k, "bits", "bits", Decimal(18446744073709551615)))
        planted.kept.add(k)
        k = add("vb", _all_bytes(300))
        planted.checks.append((k, "vb", "vb", _all_bytes(300)))
        planted.kept.add(k)
    if dialect == "postgresql":
        for special in ("NaN", "Infinity", "-Infinity"):
            k = sql_value("r", f"'{special}'")
            execute(
                source,
                [f"UPDATE vals SET f4 = '{special}', num = '{special}' WHERE id = {k}"],  # noqa: S608
            )
            planted.checks.append((k, "num", "num::text", special))
            planted.checks.append((k, "r", "r::text", special))
            planted.kept.add(k)
        k = sql_value("ts", "'infinity'")
        execute(source, [f"UPDATE vals SET tz = '-infinity', d = 'infinity' WHERE id = {k}"])  # noqa: S608
        planted.checks.append(
            (k, "ts", "ts::text || tz::text || d::text", "infinity-infinityinfinity")
        )
        planted.kept.add(k)
        k = sql_value("ts", "'4713-01-01 BC'")
        execute(source, [f"UPDATE vals SET tz = '294276-12-31 23:59:59+00' WHERE id = {k}"])  # noqa: S608
        planted.kept.add(k)
        for big in ("1e500", "-1e-500"):
            k = sql_value("num", big)
            planted.checks.append((k, "num", "num", Decimal(big)))
            planted.kept.add(k)
        k = add("note", "\uffff\U0010ffff\u200b𝕏")
        planted.kept.add(k)
        k = sql_value("j", '\'{"a\\u0001b": "\\ud83d\\ude00", "n": 1e400, "z": -0.0}\'')
        planted.kept.add(k)
    planted.total = fetch(source, "SELECT count(*) FROM vals")[0][0]
    assert planted.total == planted.trials + n
    return planted


# PyMySQL (MariaDB's fallback driver) reads values the same way: at full size only.
@pytest.mark.parametrize(
    "source_url", [s for s in SOURCES if FULL or s != "mysql-pymysql"], indirect=True
)
def test_hostile_values(source_url: DatabaseURL, fresh_pg_url: DatabaseURL) -> None:
    planted = plant_values(source_url, rows(40, 2000))
    config = make_config(source_url, fresh_pg_url)
    commands.init(config)
    commands.schema(config, apply=True)
    with psycopg.connect(fresh_pg_url.raw, autocommit=True) as conn:  # stricter than the source
        conn.execute("ALTER TABLE vals ALTER COLUMN money TYPE numeric(8,2)")

    result = commands.migrate(config)

    (entity,) = result.to_dict()["entities"]
    assert entity["rows_read"] == planted.total
    assert entity["inserted"] + entity["quarantined"] == planted.total, entity
    assert result.open_quarantine == len(planted.quarantined)
    assert result.exit_code == (1 if planted.quarantined else 0)
    entries = {int(e.legacy_key): e for e in commands.quarantine_list(config)}
    assert set(entries) == set(planted.quarantined), sorted(entries)
    handled_ok = 0
    for k, (column, words) in planted.quarantined.items():
        entry = entries[k]
        assert entry.column_name == column, (k, entry)
        assert all(w in entry.reason for w in words), (k, words, entry.reason)
        assert "\n" not in entry.reason
        handled_ok += 1
    # Nothing lost: the source rows are the target's plus the quarantined ones.
    with psycopg.connect(fresh_pg_url.raw) as conn:
        target_rows = conn.execute("SELECT count(*) FROM vals").fetchone()
        mapped: dict[int, Any] = dict(
            conn.execute(
                f"SELECT legacy_id, uuid_id FROM {STATE}.legacy_id_mappings"  # noqa: S608
                " WHERE entity_type = 'vals'"
            ).fetchall()
        )
    assert target_rows == (planted.total - len(planted.quarantined),)
    assert set(mapped) == (planted.kept | set(planted.nulled) | set(planted.mismatched))

    # Documented conversions: said in the warnings, NULL in the target.
    for k, columns in planted.nulled.items():
        for column in columns:
            assert any(w.startswith(f"vals.{column}:") and "NULL" in w for w in result.warnings)
            with psycopg.connect(fresh_pg_url.raw) as conn:
                got = conn.execute(
                    sql.SQL("SELECT {} FROM vals WHERE id = %s").format(sql.Identifier(column)),
                    (mapped[k],),
                ).fetchone()
            assert got == (None,), (k, column, got)
        handled_ok += 1
    # The values themselves, read back from the target.
    with psycopg.connect(fresh_pg_url.raw) as conn:
        conn.execute("SET extra_float_digits = 3")
        for k, column, expression, expected in planted.checks:
            got = conn.execute(
                f"SELECT {expression} FROM vals WHERE id = %s",  # noqa: S608
                (mapped[k],),
            ).fetchone()
            assert got is not None
            value = got[0]
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(value), (k, column)
            elif isinstance(value, memoryview):
                assert bytes(value) == expected, (k, column)
            else:
                assert value == expected, (k, column, str(value)[:80], str(expected)[:80])

    # validate: quarantined rows are notes; the row the stricter target rounded is found.
    checked = commands.validate(config, VALIDATIONS)
    failed = {(c.entity, c.validation_type): c for c in checked.failed}
    assert set(failed) == {("vals", "data_integrity")}, [c.to_dict() for c in checked.failed]
    data = failed[("vals", "data_integrity")]
    assert data.findings.counts == {"value_mismatch": len(planted.mismatched)}
    samples = data.findings.samples["value_mismatch"]
    assert {s["legacy_id"]: list(s["columns"]) for s in samples} == {
        k: [c] for k, c in planted.mismatched.items()
    }
    handled_ok += len(planted.mismatched)
    # diff says the same: the quarantined rows are missing, the rounded one conflicted.
    found = commands.diff(config)
    counts = found.to_dict()["entities"][0]["counts"]
    assert counts["missing_records"] == (
        {"source": len(planted.quarantined)} if planted.quarantined else {}
    )
    assert sum(counts["conflicted_records"].values()) == len(planted.mismatched)
    # every other hostile row: equal, by validate and the checks
    handled_ok += len(planted.kept) - planted.ordinary
    assert handled_ok == planted.trials
    handled(f"values-{label(source_url)}", handled_ok, planted.trials)


# -- 3. config files with injection attempts ----------------------------------------------------

EVIL = 'x"; DROP TABLE t; --'
EVIL_TOO = 'a" OR "1"="1\'; DROP TABLE t; --'


def _canary_source(path: Path) -> DatabaseURL:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, seen TEXT);"
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO users VALUES (1, 'ann', '2024-01-01'), (2, 'bob', NULL), (3, 'cy', NULL);"
        "INSERT INTO t VALUES (1, 'canary');"
    )
    db.commit()
    db.close()
    return parse_url(f"sqlite:///{path}")


# (label, config sections, what must come of it): "error" = a ConfigError naming the key
# (the words), else ("quoted", target table, target column that must exist, quoted).
INJECTIONS: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    ("entity name", {"entities": {"users; DROP TABLE t": {"source_table": "users"}, "t": {}}},
     ("quoted", "users; DROP TABLE t", "name")),
    ("source_table", {"entities": {"users": {"source_table": EVIL_TOO}, "t": {}}},
     ("error", "entities.users.source_table", "no such table")),
    ("target_table", {"entities": {"users": {"target_table": EVIL}, "t": {}}},
     ("quoted", EVIL, "name")),
    ("renamed to", {"entities": {"users": {"columns": {"name": EVIL}}, "t": {}}},
     ("quoted", "users", EVIL)),
    ("renamed from", {"entities": {"users": {"columns": {EVIL: "name"}}, "t": {}}},
     ("quoted", "users", EVIL)),
    ("target_key", {"entities": {"users": {"target_key": EVIL}, "t": {}}},
     ("quoted", "users", EVIL)),
    ("exclude", {"entities": {"users": {"exclude": [EVIL]}, "t": {}}},
     ("error", "entities.users.exclude", "no column")),
    ("key", {"entities": {"users": {"key": EVIL}, "t": {}}},
     ("error", "entities.users.key", "no column")),
    ("updated_at", {"entities": {"users": {"updated_at": EVIL}, "t": {}}},
     ("error", "entities.users.updated_at", "no column")),
    ("references column", {"entities": {"users": {"references": {EVIL: "t"}}, "t": {}}},
     ("error", "entities.users.references", "no column")),
    ("references parent", {"entities": {"users": {"references": {"name": EVIL}}, "t": {}}},
     ("error", "entities.users.references.name", "no entity")),
    ("tolerances", {"entities": {"users": {"tolerances": {EVIL: 0.1}}, "t": {}}},
     ("error", "entities.users.tolerances", "no column")),
    ("state_schema", {"target": {"state_schema": EVIL}},
     ("error", "state_schema", "schema name")),
    ("target schema", {"target": {"schema": 'app"; DROP TABLE t; --'}},
     ("quoted", "users", "name")),
]  # fmt: skip


def test_config_injection(
    tmp_path: Path, pg_databases: PgDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _canary_source(tmp_path / "legacy.db")
    target = pg_databases.create("isthmus_inject")
    ok = 0
    for i, (label, sections, expect) in enumerate(INJECTIONS):
        doc: dict[str, Any] = {
            "source": {"url": source.raw},
            # each case in schemas of its own, so that none sees another's tables
            "target": {"url": target.raw, "state_schema": f"st{i}", "schema": f"case{i}"},
        }
        for name, section in sections.items():
            doc[name] = {**doc.get(name, {}), **section}
        if expect[0] == "error":
            with pytest.raises(ConfigError) as caught:
                config = config_from_dict(doc, where="isthmus.toml")
                commands.init(config)
                commands.schema(config, apply=True)
            message = str(caught.value)
            assert "\n" not in message, (label, message)
            assert all(w in message for w in expect[1:]), (label, message)
            assert caught.value.exit_code == 2
        else:
            _, table, column = expect
            schema = doc["target"]["schema"]
            config = config_from_dict(doc)
            commands.init(config)
            commands.schema(config, apply=True)
            assert commands.migrate(config).exit_code == 0, label
            assert commands.validate(config, VALIDATIONS).exit_code == 0, label
            with psycopg.connect(target.raw) as conn:
                count = conn.execute(
                    sql.SQL("SELECT count({}) FROM {}").format(
                        sql.Identifier(column), sql.Identifier(schema, table)
                    )
                ).fetchone()
            assert count is not None and count[0] == 3, (label, count)
        # No SQL was injected: the canary is where it was, on both sides.
        assert fetch(source, "SELECT v FROM t") == [("canary",)], label
        with psycopg.connect(target.raw) as conn:
            tables = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 't'"
            ).fetchall()
        quoted_cases = sum(1 for _, _, e in INJECTIONS[: i + 1] if e[0] == "quoted")
        assert len(tables) == quoted_cases, (label, tables)
        ok += 1
    # Through the CLI, from a file: exit 2, one line naming the file and the key.
    toml = tmp_path / "isthmus.toml"
    toml.write_text(
        f'[source]\nurl = "{source.raw}"\n[target]\nurl = "{target.raw}"\n'
        'state_schema = "cli"\n[entities.users]\nkey = "x\\"; DROP TABLE t; --"\n[entities.t]\n',
        encoding="utf-8",
    )
    cli = run_cli(toml, "schema", "--apply")
    assert cli.returncode == 2, cli.stderr
    (line,) = cli.stderr.strip().splitlines()
    assert str(toml) in line and "entities.users.key" in line and line.count(str(toml)) == 1
    assert fetch(source, "SELECT v FROM t") == [("canary",)]
    ok += 1
    handled("config-injection", ok, len(INJECTIONS) + 1)


def run_cli(toml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isthmus.cli", "--config", str(toml), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# -- 4. mapping files ---------------------------------------------------------------------------


def _u(i: int) -> str:
    return str(uuid.UUID(int=0x0190C6A0_0000_7000_8000_000000000000 + i))


def _good_lines(n: int, start: int = 1) -> str:
    return "".join(f"users,{i},{_u(i)}\n" for i in range(start, start + n))


# (label, file bytes, words the one-line error must hold: the line and what is wrong)
def bad_mapping_files(n: int) -> list[tuple[str, bytes, tuple[str, ...]]]:
    good = _good_lines(n)
    last = n + 2  # the line after the header and the good lines
    return [
        ("same legacy id twice", (f"users,1,{_u(1)}\nusers,1,{_u(2)}\n").encode(),
         ("line 2", "legacy")),
        ("same uuid twice", (f"users,1,{_u(1)}\nusers,2,{_u(1)}\n").encode(), ("line 2",)),
        ("bad uuid", (HEADER + good + "users,999999,not-a-uuid\n").encode(),
         (f"line {last}", "not a UUID")),
        ("uuid with a g", (HEADER + good + "users,999999,0190c6a0-0000-7000-8000-00000000000g\n").encode(),
         (f"line {last}", "not a UUID")),
        ("uuid too short", (f"users,5,{_u(5)[:-1]}\n").encode(), ("line 1", "not a UUID")),
        ("text legacy id", (f"users,abc,{_u(1)}\n").encode(), ("line 1", "legacy_id 'abc'")),
        ("float legacy id", (good + f"users,1.0,{_u(999999)}\n").encode(),
         (f"line {n + 1}", "legacy_id '1.0'")),
        ("exponent legacy id", (f"users,1e3,{_u(1)}\n").encode(), ("line 1", "1e3")),
        ("underscored legacy id", (f"users,1_000,{_u(1)}\n").encode(), ("line 1", "1_000")),
        ("arabic digits", (f"users,١٢,{_u(1)}\n").encode(), ("line 1", "legacy_id")),
        ("legacy id past int8", (f"users,{2**63},{_u(1)}\n").encode(), ("line 1", "64-bit")),
        ("missing column", (good + "users,7\n").encode(), (f"line {n + 1}", "expected 3 fields")),
        ("extra column", (f"users,7,{_u(7)},x\n").encode(), ("line 1", "got 4")),
        ("empty entity", (f",7,{_u(7)}\n").encode(), ("line 1", "entity_type is empty")),
        ("unknown entity", (f"patients,7,{_u(7)}\n").encode(), ("line 1", "unknown entity_type")),
        ("injected entity", (f"\"users'; DROP TABLE t; --\",7,{_u(7)}\n").encode(),
         ("line 1", "unknown entity_type")),
        ("huge line", (good + "users,1," + "f" * 300_000 + "\n").encode(),
         (f"line {n + 1}", "field larger than field limit")),
        ("NUL byte", (good + f"users,8\x00,{_u(8)}\n").encode(), (f"line {n + 1}", "'8\\x00'")),
        ("not UTF-8", (good + f"users,9,{_u(9)}\xff\n").encode("latin-1"), ("not UTF-8", "line")),
        ("unclosed quote", (good + f"\"users,10,{_u(10)}\n").encode(), ("line",)),
        ("contradicts the table", (f"users,1,{_u(77)}\n").encode(), ("line 1",)),
    ]  # fmt: skip


HEADER = "entity_type,legacy_id,uuid_id\n"


def test_mapping_files(tmp_path: Path, pg_databases: PgDatabases) -> None:
    source = _canary_source(tmp_path / "legacy.db")
    target = pg_databases.create("isthmus_mapfile")
    config = make_config(source, target)
    commands.init(config)
    n = rows(200, 50_000)

    def mapped() -> list[tuple[Any, ...]]:
        with psycopg.connect(target.raw) as conn:
            return conn.execute(
                f"SELECT entity_type, legacy_id, uuid_id::text FROM {STATE}.legacy_id_mappings"  # noqa: S608
                " ORDER BY 1, 2"
            ).fetchall()

    # One good mapping already in the table, that a file may contradict.
    first = tmp_path / "first.csv"
    first.write_text(f"users,1,{_u(1)}\n", encoding="utf-8")
    assert commands.mappings_import(config, first).new == 1
    before = mapped()
    ok = 0
    cases = bad_mapping_files(n)
    for i, (label, data, words) in enumerate(cases):
        path = tmp_path / f"bad{i}.csv"
        path.write_bytes(data)
        with pytest.raises(IsthmusError) as caught:
            commands.mappings_import(config, path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message, (label, message)
        assert all(w in message for w in words), (label, words, message[:300])
        assert len(message) < 2_000, (label, len(message))  # a huge line is not echoed whole
        assert mapped() == before, f"{label}: half imported"
        ok += 1
    # Through the CLI: exit 2 (bad input) or 3 (a conflict), one line, nothing imported.
    cli_toml = tmp_path / "isthmus.toml"
    cli_toml.write_text(
        f'[source]\nurl = "{source.raw}"\n[target]\nurl = "{target.raw}"\n'
        f'state_schema = "{STATE}"\n',
        encoding="utf-8",
    )
    cli = run_cli(cli_toml, "mappings", "import", str(tmp_path / "bad3.csv"))
    assert cli.returncode == 2, cli.stderr
    (line,) = cli.stderr.strip().splitlines()
    assert "not a UUID" in line and f"line {n + 2}" in line
    assert mapped() == before
    ok += 1
    # And the good file goes in whole; again, nothing changes.
    good = tmp_path / "good.csv"
    good.write_text(HEADER + _good_lines(n), encoding="utf-8")
    result = commands.mappings_import(config, good)
    assert (result.lines, result.new, result.already_present) == (n, n - 1, 1)
    assert commands.mappings_import(config, good).new == 0
    assert len(mapped()) == n
    assert fetch(source, "SELECT v FROM t") == [("canary",)]
    handled("mapping-files", ok, len(cases) + 1)


# -- 5. cron expressions ------------------------------------------------------------------------

BAD_CRONS = [
    "",
    "   ",
    "* * * *",  # four fields
    "* * * * * * *",  # seven
    "60 * * * *",
    "* 24 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "1-100 * * * *",
    "a b c d e",
    "@daily",
    "0 0 30 2 *",  # well formed, but February 30th never comes
    "0 0 31 4,6,9,11 *",
    "* * * * * 61",
    "\x00 * * * *",
    "0 0 * * 1#6",
    "L * * * *",
    "١ * * * *",
    "*; DROP TABLE t; --",
    "* * * * *' OR '1'='1",
    "%s %s %s %s %s",
    "9" * 5000,
]


def test_malformed_cron_expressions(tmp_path: Path, pg_databases: PgDatabases) -> None:
    source = _canary_source(tmp_path / "legacy.db")
    target = pg_databases.create("isthmus_cron")
    config = make_config(source, target)
    commands.init(config)
    ok = 0
    for expression in BAD_CRONS:
        with pytest.raises(UsageError) as caught:
            commands.jobs_create(config, "nightly", "scheduled_sync", cron=expression)
        message = str(caught.value)
        assert caught.value.exit_code == 2 and "\n" not in message, (expression, message)
        assert "cron" in message, message
        ok += 1
    assert commands.jobs_list(config) == []
    # Through the CLI: exit 2, one line, no job.
    toml = tmp_path / "isthmus.toml"
    toml.write_text(
        f'[source]\nurl = "{source.raw}"\n[target]\nurl = "{target.raw}"\n'
        f'state_schema = "{STATE}"\n',
        encoding="utf-8",
    )
    for expression in ("0 0 30 2 *", "61 * * * *"):
        cli = run_cli(toml, "jobs", "create", "n", "--type", "scheduled_sync", "--cron", expression)
        assert cli.returncode == 2, cli.stderr
        (line,) = cli.stderr.strip().splitlines()
        assert expression in line
        ok += 1
    assert commands.jobs_list(config) == []
    # A good one still works, and lands where the schedule says.
    job = commands.jobs_create(config, "nightly", "scheduled_sync", cron="0 2 29 2 *")
    assert job.next_run_at is not None and (job.next_run_at.month, job.next_run_at.day) == (2, 29)
    handled("cron", ok, len(BAD_CRONS) + 2)
