"""The synthetic legacy database: counts, determinism, FKs, orphans, quirky values, the target."""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from isthmus import demo_rows, demo_writers
from isthmus.demo import DEMO_TABLES, create_target_schema, expected_counts, generate_legacy
from isthmus.dialects import pgconn
from isthmus.errors import DatabaseError, TerminalDatabaseError, UsageError
from isthmus.urls import DatabaseURL

SCALE = 3
PARENT = {
    "profiles": ("office_id", "offices"),
    "doctors": ("profile_id", "profiles"),
    "patients": ("doctor_id", "doctors"),
    "orders": ("patient_id", "patients"),
    "products": ("order_id", "orders"),
}
DIALECT_FIXTURES = {
    "sqlite": "sqlite_url",
    "postgresql": "fresh_pg_url",
    "mysql": "fresh_mysql_url",
}


@pytest.fixture(params=list(DIALECT_FIXTURES))
def legacy_url(request: pytest.FixtureRequest) -> DatabaseURL:
    """An empty legacy database of each dialect (MySQL skips, saying why, without a server)."""
    url: DatabaseURL = request.getfixturevalue(DIALECT_FIXTURES[request.param])
    return url


def query(url: DatabaseURL, sql: str) -> list[tuple[Any, ...]]:
    if url.dialect == "sqlite":
        with sqlite3.connect(url.database or "") as conn:
            return conn.execute(sql).fetchall()
    if url.dialect == "mysql":
        conn = demo_writers.mysql_connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()
    with pgconn.connect(url) as pg:
        return pg.execute(sql).fetchall()


def table_digest(url: DatabaseURL, table: str) -> str:
    rows = query(url, f"SELECT * FROM {table} ORDER BY id")  # noqa: S608
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def orphan_count(url: DatabaseURL, table: str) -> int:
    column, parent = PARENT[table]
    sql = (
        f"SELECT count(*) FROM {table} c LEFT JOIN {parent} p ON p.id = c.{column}"  # noqa: S608
        " WHERE p.id IS NULL"
    )
    return int(query(url, sql)[0][0])


def declared_fks(url: DatabaseURL) -> set[tuple[str, str, str]]:
    """(table, column, referenced table) of every FK constraint on the demo tables."""
    if url.dialect == "sqlite":
        found = set()
        for table in DEMO_TABLES:
            for fk in query(url, f"PRAGMA foreign_key_list({table})"):
                found.add((table, fk[3], fk[2]))
        return found
    if url.dialect == "mysql":
        sql = (
            "SELECT table_name, column_name, referenced_table_name FROM information_schema.key_column_usage"
            " WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL"
        )
    else:
        sql = (
            "SELECT tc.table_name, kcu.column_name, ccu.table_name"
            " FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)"
            " JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)"
            " WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()"
        )
    return {(str(t), str(c), str(r)) for t, c, r in query(url, sql)}


EXPECTED_FKS = {(child, col, parent) for child, (col, parent) in PARENT.items()}


def test_expected_counts_reach_the_specified_size() -> None:
    counts = expected_counts(1000)
    assert counts == {
        "offices": 1000,
        "profiles": 4000,
        "doctors": 4000,
        "patients": 120_000,
        "orders": 360_000,
        "products": 720_000,
    }
    assert counts["patients"] + counts["orders"] + counts["products"] >= 1_200_000
    assert DEMO_TABLES == ("offices", "profiles", "doctors", "patients", "orders", "products")


def test_counts_match_and_foreign_keys_hold(legacy_url: DatabaseURL) -> None:
    reported: dict[str, int] = {}

    def progress(table: str, rows: int) -> None:
        reported[table] = reported.get(table, 0) + rows

    written = generate_legacy(legacy_url, scale=SCALE, progress=progress)
    assert written == expected_counts(SCALE) == reported
    for table, count in written.items():
        assert query(legacy_url, f"SELECT count(*) FROM {table}")[0][0] == count  # noqa: S608
    assert declared_fks(legacy_url) == EXPECTED_FKS
    assert all(orphan_count(legacy_url, table) == 0 for table in PARENT)


def test_orphans_are_planted_exactly(legacy_url: DatabaseURL) -> None:
    generate_legacy(legacy_url, scale=SCALE, foreign_keys=False, orphans=7)
    assert declared_fks(legacy_url) == set()
    per_table = {table: orphan_count(legacy_url, table) for table in PARENT}
    assert sum(per_table.values()) == 7
    assert all(n >= 1 for n in per_table.values()), per_table  # spread over every child table
    counts = query(legacy_url, "SELECT count(*) FROM products")
    assert counts[0][0] == expected_counts(SCALE)["products"]


def test_orphans_need_foreign_keys_off(sqlite_url: DatabaseURL) -> None:
    with pytest.raises(UsageError, match="foreign_keys=False"):
        generate_legacy(sqlite_url, scale=1, orphans=3)
    with pytest.raises(UsageError, match="at most"):
        generate_legacy(sqlite_url, scale=1, foreign_keys=False, orphans=21)


def test_values_are_as_quirky_as_legacy_data(legacy_url: DatabaseURL) -> None:
    generate_legacy(legacy_url, scale=SCALE)
    patients = query(
        legacy_url, "SELECT first_name, last_name, email, notes, created_at FROM patients"
    )
    names = {p[0] for p in patients} | {p[1] for p in patients}
    assert {"José", "Zoë", "Łukasz", "Ñúñez", "O'Brien", "Smith "} <= names
    emails = [p[2] for p in patients]
    assert None in emails and "" in emails
    notes = {p[3] for p in patients}
    assert None in notes and "" in notes
    for needle in ("\t", "\n", "\r\n", "\\", '"', "'", "😀"):
        assert any(needle in n for n in notes if n), needle
    assert "\\N" in notes and "NULL" in notes  # the literal strings, not NULL
    assert "Ends with a backslash \\" in notes and "  leading and trailing spaces  " in notes
    stamps = [p[4] for p in patients]
    if legacy_url.dialect == "sqlite":
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stamps)
        fractions = [int(s[-6:]) for s in stamps]
    else:
        assert all(isinstance(s, datetime) for s in stamps)
        fractions = [s.microsecond for s in stamps]
    assert sum(1 for f in fractions if f % 1000) > len(stamps) // 2  # real microseconds
    for table in DEMO_TABLES:
        low, high, count = query(legacy_url, f"SELECT min(id), max(id), count(*) FROM {table}")[0]  # noqa: S608
        if count > 50:
            assert high - low + 1 > count, f"{table} has no id gaps"
    assert query(legacy_url, "SELECT min(id) FROM offices")[0][0] >= 1000
    balances = {str(b[0]) for b in query(legacy_url, "SELECT balance FROM patients")}
    assert any(b.startswith("-") for b in balances)
    weights = [w[0] for w in query(legacy_url, "SELECT weight_g FROM products")]
    assert None in weights and any(isinstance(w, float) for w in weights)
    drafts = query(legacy_url, "SELECT placed_at FROM orders WHERE status = 'draft'")
    assert drafts and all(d[0] is None for d in drafts)


def test_same_seed_same_rows_other_seed_other_rows(legacy_url: DatabaseURL) -> None:
    generate_legacy(legacy_url, scale=SCALE, seed=7)
    first = [table_digest(legacy_url, t) for t in DEMO_TABLES]
    with pytest.raises(UsageError, match="already exists"):
        generate_legacy(legacy_url, scale=SCALE, seed=7)
    generate_legacy(legacy_url, scale=SCALE, seed=7, replace=True)
    assert [table_digest(legacy_url, t) for t in DEMO_TABLES] == first
    generate_legacy(legacy_url, scale=SCALE, seed=8, replace=True)
    assert table_digest(legacy_url, "patients") != first[3]


def test_rows_do_not_depend_on_chunking() -> None:
    def everything(per_chunk: int) -> dict[str, list[demo_rows.Row]]:
        rows: dict[str, list[demo_rows.Row]] = {t: [] for t in DEMO_TABLES}
        for chunk in demo_rows.generate(5, 42, orphans={}, offices_per_chunk=per_chunk):
            for table, part in chunk.items():
                rows[table].extend(part)
        return rows

    assert everything(1) == everything(2) == everything(25)


def test_dialects_hold_the_same_text_and_keys(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    urls = [sqlite_url, fresh_pg_url]
    with contextlib.suppress(pytest.skip.Exception):  # without MySQL: SQLite against PostgreSQL
        urls.append(request.getfixturevalue("fresh_mysql_url"))
    sql = (
        "SELECT id, doctor_id, first_name, last_name, email, phone, notes FROM patients ORDER BY id"
    )
    seen = []
    for url in urls:
        generate_legacy(url, scale=2, seed=99)
        seen.append(query(url, sql))
    assert all(rows == seen[0] for rows in seen[1:])


def test_mysql_inserts_write_what_load_data_writes(
    fresh_mysql_url: DatabaseURL, mysql_databases: Any
) -> None:
    generate_legacy(fresh_mysql_url, scale=2)
    other: DatabaseURL = mysql_databases.create()
    chunks = demo_rows.generate(2, 42, orphans={})
    demo_writers.write_mysql(
        other, chunks, foreign_keys=True, replace=False, progress=None, load_data=False
    )
    for table in DEMO_TABLES:
        assert table_digest(other, table) == table_digest(fresh_mysql_url, table), table


def test_create_target_schema_builds_uuid_keys(fresh_pg_url: DatabaseURL) -> None:
    create_target_schema(fresh_pg_url, schema="app")
    with pgconn.connect(fresh_pg_url) as conn:
        types = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'app'"
            ).fetchall()
        )
        for table in DEMO_TABLES:
            assert types[f"{table}.id"] == "uuid"
        for child, (column, _) in PARENT.items():
            assert types[f"{child}.{column}"] == "uuid"
        assert types["patients.balance"] == "numeric"
        assert types["patients.created_at"] == "timestamp with time zone"
        assert types["offices.is_active"] == "boolean"
        assert types["products.weight_g"] == "double precision"
        fks = {
            (t, c, r)
            for t, c, r in conn.execute(
                "SELECT kcu.table_name, kcu.column_name, ccu.table_name"
                " FROM information_schema.referential_constraints rc"
                " JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)"
                " JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)"
                " WHERE rc.constraint_schema = 'app'"
            ).fetchall()
        }
        assert fks == EXPECTED_FKS
        indexed = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'app'"
            ).fetchall()
        }
        assert {f"ix_{child}_{col}" for child, (col, _) in PARENT.items()} <= indexed
        office = conn.execute(
            "INSERT INTO app.offices (id, name, address, city, phone, timezone, is_active, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 'Zürich', '', 'Zürich', '', 'Europe/Zurich', true, now(), now())"
            " RETURNING id"
        ).fetchone()
        assert office is not None
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO app.profiles VALUES (gen_random_uuid(), gen_random_uuid(), 'a@b', 'A', 'B',"
                " 'dentist', NULL, now(), now())"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO app.orders VALUES (gen_random_uuid(), gen_random_uuid(), 'X', 'lost', 0,"
                " NULL, now(), now())"
            )


def test_create_target_schema_options(fresh_pg_url: DatabaseURL) -> None:
    with pgconn.connect(fresh_pg_url) as conn:
        libpq_params = conn.info.get_parameters()
    key_value = " ".join(f"{k}={v}" for k, v in libpq_params.items())
    create_target_schema(key_value, foreign_keys=False, timestamp_type="timestamp")
    with pytest.raises(UsageError, match=r"public\.offices already exists"):
        create_target_schema(fresh_pg_url)
    create_target_schema(fresh_pg_url.raw, replace=True, foreign_keys=False)
    with pgconn.connect(fresh_pg_url) as conn:
        fk_count = conn.execute(
            "SELECT count(*) FROM information_schema.table_constraints"
            " WHERE constraint_type = 'FOREIGN KEY' AND table_schema = 'public'"
        ).fetchone()
        assert fk_count == (0,)
    with pytest.raises(UsageError, match="timestamp_type"):
        create_target_schema(fresh_pg_url, timestamp_type="date")


def test_errors_are_one_line_without_password(tmp_path: Path) -> None:
    with pytest.raises(TerminalDatabaseError, match=r"legacy\.db"):
        generate_legacy(f"sqlite:///{tmp_path}/missing/dir/legacy.db", scale=1)
    with pytest.raises(DatabaseError) as refused:
        generate_legacy("mysql://root:s3cret@127.0.0.1:1/legacy", scale=1)
    assert "s3cret" not in str(refused.value) and "127.0.0.1:1" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(UsageError, match="scale"):
        generate_legacy(f"sqlite:///{tmp_path}/x.db", scale=0)
