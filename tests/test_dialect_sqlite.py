"""SQLite source: loose type affinity, rowid aliases, internal tables, read-only, locks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dialect_support import run_sql
from isthmus.dialects import open_source
from isthmus.dialects.sqlite import Source
from isthmus.errors import TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, parse_url

LEGACY_SCHEMA = [
    """CREATE TABLE offices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name VARCHAR(20) NOT NULL,
        opened DATETIME,
        active BOOLEAN DEFAULT 1,
        balance NUMERIC(10,2),
        anything,
        ratio REAL,
        photo BLOB,
        flag TINYINT(1)
    )""",
    "CREATE TABLE profiles (id INT PRIMARY KEY, office_id INTEGER REFERENCES offices, note TEXT)",
    "CREATE TABLE tags (a INTEGER, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID",
    "CREATE TABLE wr (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID",
    """CREATE TABLE links (
        id INTEGER PRIMARY KEY,
        tag_a INTEGER, tag_b TEXT,
        FOREIGN KEY (tag_a, tag_b) REFERENCES tags (a, b)
    )""",
    "CREATE UNIQUE INDEX links_tag ON links (tag_a, tag_b)",
    "CREATE INDEX links_lower ON links (lower(tag_b))",
    "CREATE VIEW office_names AS SELECT name FROM offices",
    "CREATE VIRTUAL TABLE search USING fts5(body)",
    "INSERT INTO offices (name, opened, active, balance, anything) VALUES ('a', '2020-01-02 03:04:05', 1, 12.5, x'00ff')",
    "INSERT INTO offices (name, anything) VALUES ('b', 42)",
    "ANALYZE",
]


@pytest.fixture
def legacy(sqlite_url: DatabaseURL) -> DatabaseURL:
    run_sql(sqlite_url, LEGACY_SCHEMA)
    return sqlite_url


def test_reflection_reads_declared_types_loosely(legacy: DatabaseURL) -> None:
    info = Source(legacy).reflect()
    offices = info.tables["offices"]
    col = {c.name: c for c in offices.columns}
    assert (col["id"].kind, col["id"].autoincrement, col["id"].nullable) == ("integer", True, False)
    assert (col["name"].type_name, col["name"].kind, col["name"].length) == (
        "varchar(20)",
        "text",
        20,
    )
    assert col["name"].nullable is False
    assert col["opened"].kind == "timestamp"
    assert col["active"].kind == "boolean" and col["active"].default == "1"
    assert (col["balance"].kind, col["balance"].precision, col["balance"].scale) == (
        "decimal",
        10,
        2,
    )
    assert (col["anything"].type_name, col["anything"].kind) == ("", "other")
    assert col["ratio"].kind == "float" and col["photo"].kind == "bytes"
    assert col["flag"].kind == "boolean"
    assert offices.row_estimate == 2


def test_rowid_alias_only_for_integer_primary_key(legacy: DatabaseURL) -> None:
    tables = Source(legacy).reflect().tables
    assert tables["profiles"].column("id").autoincrement is False  # type: ignore[union-attr]  # INT is no alias
    assert tables["profiles"].integer_key == "id"
    wr = tables["wr"]  # WITHOUT ROWID: INTEGER PRIMARY KEY is an ordinary column
    assert wr.column("id").autoincrement is False  # type: ignore[union-attr]
    assert tables["tags"].primary_key == ("a", "b")


def test_internal_virtual_and_view_objects_are_not_tables(legacy: DatabaseURL) -> None:
    info = Source(legacy).reflect()
    assert set(info.tables) == {"offices", "profiles", "tags", "wr", "links"}
    assert info.views == ("office_names",)
    assert any("'search'" in note and "virtual" in note for note in info.notes)
    assert any("'links_lower'" in note for note in info.notes)
    assert not any(name.startswith("sqlite_") for name in info.tables)


def test_foreign_keys_and_indexes(legacy: DatabaseURL) -> None:
    tables = Source(legacy).reflect().tables
    (fk,) = tables["profiles"].foreign_keys
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("office_id",), "offices", ("id",))
    (composite,) = tables["links"].foreign_keys
    assert (composite.columns, composite.ref_columns) == (("tag_a", "tag_b"), ("a", "b"))
    assert [(i.name, i.columns, i.unique) for i in tables["links"].indexes] == [
        ("links_tag", ("tag_a", "tag_b"), True)
    ]


def test_values_come_back_as_stored(legacy: DatabaseURL) -> None:
    with open_source(legacy) as src:
        rows = [
            r
            for b in src.stream("offices", ["id", "opened", "balance", "anything"], ["id"])
            for r in b
        ]
    assert rows == [(1, "2020-01-02 03:04:05", 12.5, b"\x00\xff"), (2, None, None, 42)]


def test_opened_read_only(legacy: DatabaseURL) -> None:
    src = Source(legacy)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        src.connection().execute("INSERT INTO offices (name) VALUES ('x')")
    writable = Source(legacy, writable=True)
    writable.connection().execute("INSERT INTO offices (name) VALUES ('x')")
    assert src.count("offices") == 3


def test_missing_file_names_the_file_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(TerminalDatabaseError, match=r"nope\.db.*does not exist"):
        open_source(parse_url(f"sqlite:///{path}"))
    assert not path.exists()


def test_not_a_database_is_terminal(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is not a database, just some text that is long enough" * 20)
    with pytest.raises(TerminalDatabaseError, match=r"notes\.db"):
        open_source(parse_url(f"sqlite:///{path}"))


def test_locked_database_is_transient(legacy: DatabaseURL) -> None:
    writer = sqlite3.connect(legacy.database or "", isolation_level=None)
    writer.execute("PRAGMA journal_mode=DELETE")
    writer.execute("BEGIN EXCLUSIVE")
    try:
        src = Source(parse_url(f"{legacy.raw}?timeout=0.05"))
    except TransientDatabaseError as exc:  # even opening needs a shared lock
        assert "locked" in str(exc)
    else:
        with pytest.raises(TransientDatabaseError, match="locked"):
            src.count("offices")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert Source(legacy).count("offices") == 2


def test_early_stop_releases_the_read(legacy: DatabaseURL) -> None:
    src = Source(legacy)
    stream = src.stream("offices", ["id"], ["id"], batch_size=1)
    assert next(stream) == [(1,)]
    stream.close()
    writer = sqlite3.connect(legacy.database or "", timeout=0.1)
    writer.execute("INSERT INTO offices (name) VALUES ('c')")
    writer.commit()
    writer.close()


def test_a_hot_journal_left_by_a_killed_writer_does_not_stop_the_read_only_source(
    tmp_path: Path,
) -> None:
    """A write-back killed mid-transaction leaves a journal that a read-only connection
    cannot roll back (SQLITE_READONLY_ROLLBACK); the source rolls it back and reads on."""
    import subprocess
    import sys

    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    writer = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA cache_size = 1')\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "c.execute('INSERT INTO t SELECT randomblob(1000) FROM (WITH RECURSIVE r(n) AS"
        " (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5000) SELECT n FROM r)')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True)
    assert (tmp_path / "legacy.db-journal").exists()
    source = open_source(parse_url(f"sqlite:///{path}"))
    try:
        assert source._query("SELECT count(*) FROM t") == [(1,)]  # the dead write is undone
    finally:
        source.close()
