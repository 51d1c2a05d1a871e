"""A full differential migration from SQLite, MariaDB and PostgreSQL sources into a fresh
PostgreSQL target, then a run with nothing to do, then a run after source changes.

Equality is row for row through the canonical form (``migrate_support.check_equal``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import quote, run_sql
from isthmus import commands
from isthmus.demo_schema import TABLES
from isthmus.urls import DatabaseURL
from migrate_support import (
    DEMO_ENTITIES,
    STATE,
    Setup,
    check_equal,
    checkpoints,
    fetch,
    make_setup,
    target_constraints,
)

SCALE = 2  # 2,418 rows
BATCH = 500  # several batches per large entity

# The demo's only foreign keys: child → parent.
PARENTS = {
    "profiles": "offices",
    "doctors": "profiles",
    "patients": "doctors",
    "orders": "patients",
    "products": "orders",
}


def source_url(request: pytest.FixtureRequest, dialect: str) -> DatabaseURL:
    if dialect == "sqlite":
        url: DatabaseURL = request.getfixturevalue("sqlite_url")
        return url
    if dialect == "mysql":
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        return mysql.create("isthmus_rt")
    pg: PgDatabases = request.getfixturevalue("pg_databases")
    return pg.create("isthmus_rt_src")


def table_fingerprint(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    """One md5 over every row of a table, in a stable order."""
    statement = sql.SQL(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
    ).format(sql.Identifier(schema, table))
    row = conn.execute(statement).fetchone()
    assert row is not None
    return str(row[0])


def fingerprints(setup: Setup) -> dict[str, str]:
    with setup.target_conn() as conn:
        found = {t: table_fingerprint(conn, "public", t) for t in DEMO_ENTITIES}
        found["mappings"] = table_fingerprint(conn, STATE, "legacy_id_mappings")
        found["quarantine"] = table_fingerprint(conn, STATE, "quarantined_rows")
    return found


def ids(url: DatabaseURL, table: str) -> list[int]:
    rows = fetch(url, f"SELECT id FROM {quote(url, table)} ORDER BY id")  # noqa: S608
    return [int(r[0]) for r in rows]


def copy_row(url: DatabaseURL, table: str, from_id: int, **changes: Any) -> None:
    """Insert a copy of row ``from_id`` of ``table`` with ``changes`` (new id, new parent…)."""
    names = next(t.column_names for t in TABLES if t.name == table)
    cols = ", ".join(quote(url, n) for n in names)
    select = f"SELECT {cols} FROM {quote(url, table)} WHERE id = %s"  # noqa: S608
    (row,) = fetch(url, select, (from_id,))
    values = [changes.get(n, v) for n, v in zip(names, row, strict=True)]
    marks = ", ".join(["%s"] * len(names))
    insert = f"INSERT INTO {quote(url, table)} ({cols}) VALUES ({marks})"  # noqa: S608
    run_sql(url, [(insert, values)])


def update(
    url: DatabaseURL, table: str, column: str, value: str, key: int, *params: Any
) -> tuple[str, list[Any]]:
    """``UPDATE table SET column = value WHERE id = key``; ``{c}`` in ``value`` is the column."""
    c = quote(url, column)
    statement = f"UPDATE {quote(url, table)} SET {c} = {value.format(c=c)} WHERE id = %s"  # noqa: S608
    return statement, [*params, key]


def change_source(url: DatabaseURL) -> dict[str, tuple[int, int]]:
    """A few updates in different column types and new rows (a chain of new parents and
    children among them); returns the expected (inserted, updated) per entity."""
    offices, profiles, doctors = ids(url, "offices"), ids(url, "profiles"), ids(url, "doctors")
    patients, orders, products = ids(url, "patients"), ids(url, "orders"), ids(url, "products")
    weird = 'tab\there, "quoted", back\\slash\nnew line – Zürich \\N'
    run_sql(
        url,
        [
            update(url, "offices", "is_active", "NOT {c}", offices[0]),  # boolean
            update(url, "doctors", "hourly_rate", "%s", doctors[1], "123.45"),  # decimal
            # text with every character COPY must escape, and non-ASCII
            update(url, "patients", "notes", "%s", patients[3], weird),
            update(url, "patients", "birth_date", "NULL", patients[4]),  # a date becomes NULL
            # a foreign key moves to another existing parent
            update(url, "patients", "doctor_id", "%s", patients[5], doctors[-1]),
            # a timestamp with microseconds
            update(url, "orders", "placed_at", "%s", orders[7], "2022-02-03 04:05:06.654321"),
            update(url, "products", "weight_g", "%s", products[8], 12.5),  # float
            update(url, "products", "quantity", "{c} + 1", products[9]),  # integer
        ],
    )
    office, profile = offices[-1] + 7, profiles[-1] + 7
    doctor, product = doctors[-1] + 7, products[-1] + 7
    copy_row(url, "offices", offices[1], id=office, name="New Office – Łódź")
    copy_row(url, "profiles", profiles[1], id=profile, office_id=office, email="new@example.com")
    copy_row(url, "doctors", doctors[2], id=doctor, profile_id=profile, license_no="NEW-1")
    copy_row(url, "products", products[10], id=product, order_id=orders[-1], sku="NEW-SKU")
    return {
        "offices": (1, 1),
        "profiles": (1, 0),
        "doctors": (1, 1),
        "patients": (0, 3),
        "orders": (0, 1),
        "products": (1, 2),
    }


@pytest.mark.parametrize("dialect", ["sqlite", "mysql", "postgresql"])
def test_migrate_roundtrip(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    source = source_url(request, dialect)
    setup = make_setup(source, fresh_pg_url, tmp_path, scale=SCALE)
    config = setup.config
    total = sum(setup.counts.values())
    assert total == 1209 * SCALE

    # 1. the first run moves everything
    first = commands.migrate(config, batch_size=BATCH)
    assert first.exit_code == 0 and first.open_quarantine == 0
    by_entity = {e.entity: e for e in first.entities}
    assert list(by_entity) == DEMO_ENTITIES
    for name, e in by_entity.items():
        d = e.to_dict()
        assert (d["rows_read"], d["inserted"], d["updated"], d["unchanged"], d["quarantined"]) == (
            setup.counts[name],
            setup.counts[name],
            0,
            0,
            0,
        ), d
    equality = check_equal(config)
    assert equality.rows == setup.counts

    cps = checkpoints(setup)
    assert len(cps) == len(DEMO_ENTITIES)
    for cp in cps:
        assert cp["operation_type"] == "differential_migration"
        assert cp["status"] == "completed", cp
        assert cp["records_processed"] == cp["records_total"] == setup.counts[cp["entity_type"]]
        assert cp["last_processed_id"] == str(ids(source, cp["entity_type"])[-1])
        assert cp["metadata"]["fresh_target"] is True

    # the keys, indexes and FKs parked by `schema --apply` are in now
    assert first.pending_ddl and all(p["applied"] for p in first.pending_ddl), first.pending_ddl
    constraints = target_constraints(setup)
    for name in DEMO_ENTITIES:
        assert "p" in constraints.get(name, set()), f"{name} has no primary key"
    for child in PARENTS:
        assert "f" in constraints[child], f"{child} has no foreign key"
    with setup.target_conn() as conn:
        waiting = conn.execute(
            sql.SQL("SELECT name, error FROM {} WHERE applied_at IS NULL").format(
                sql.Identifier(STATE, "pending_ddl")
            )
        ).fetchall()
        assert waiting == []
        fks = conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        ).fetchall()
        assert {(c, p) for c, p in fks} == set(PARENTS.items())
        # mapping rows carry the checksum, the batch, and the source and target tables
        maps = conn.execute(
            sql.SQL(
                "SELECT entity_type, source_table, target_table, count(*),"
                " count(DISTINCT migration_batch), bool_and(checksum ~ '^[0-9a-f]{{16,}}$')"
                " FROM {} GROUP BY 1, 2, 3 ORDER BY 1"
            ).format(sql.Identifier(STATE, "legacy_id_mappings"))
        ).fetchall()
    assert {m[0]: m[1:] for m in maps} == {
        name: (name, name, setup.counts[name], -(-setup.counts[name] // BATCH), True)
        for name in DEMO_ENTITIES
    }

    # 2. nothing changed in the source: nothing is written, and the run says so
    before = fingerprints(setup)
    second = commands.migrate(config, batch_size=BATCH)
    for e in second.entities:
        d = e.to_dict()
        assert d["inserted"] == d["updated"] == d["quarantined"] == 0, d
        assert d["unchanged"] == d["rows_read"] == setup.counts[e.entity], d
    assert fingerprints(setup) == before
    said = setup.cli("migrate")
    assert said.returncode == 0, said.stderr
    assert "nothing new or changed in the source since the last run" in said.stdout
    assert fingerprints(setup) == before
    # each pass is its own completed checkpoint; none is left open
    cps = checkpoints(setup)
    assert len(cps) == 3 * len(DEMO_ENTITIES)
    assert {c["status"] for c in cps} == {"completed"}

    # 3. change the source: exactly those rows are written
    expected = change_source(source)
    third = setup.cli("--json", "migrate", "--batch-size", str(BATCH))
    assert third.returncode == 0, (
        third.stdout + third.stderr + setup.cli("quarantine", "list").stdout
    )
    doc = json.loads(third.stdout)
    counts = {name: len(ids(source, name)) for name in DEMO_ENTITIES}
    for e in doc["entities"]:
        name = e["entity"]
        inserted, updated = expected[name]
        assert (e["inserted"], e["updated"], e["quarantined"]) == (inserted, updated, 0), e
        assert e["rows_read"] == counts[name]
        assert e["unchanged"] == counts[name] - inserted - updated, e
    assert check_equal(config).rows == counts
    latest = checkpoints(setup)[-len(DEMO_ENTITIES) :]
    assert [c["status"] for c in latest] == ["completed"] * len(DEMO_ENTITIES)
    assert all(c["records_processed"] == c["records_total"] for c in latest)


def test_a_row_the_target_refuses_is_quarantined_and_the_rest_go_in(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """Changed rows are applied through a staging table; one the target refuses is isolated
    (its batch split until it is found), the others of its batch are still updated, and the
    next run after a fix in the source puts it in and resolves its quarantine entry."""
    setup = make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=1)
    config = setup.config
    assert commands.migrate(config).exit_code == 0
    with setup.target_conn() as conn:
        conn.execute(
            "ALTER TABLE public.patients ADD CONSTRAINT no_refused CHECK (notes <> 'refused')"
        )
    patients = ids(sqlite_url, "patients")
    refused, fine = patients[10], [patients[3], patients[40], patients[77]]
    run_sql(
        sqlite_url,
        [("UPDATE patients SET notes = 'refused' WHERE id = %s", [refused])]
        + [("UPDATE patients SET notes = %s WHERE id = %s", [f"fine {i}", i]) for i in fine]
        + [("UPDATE orders SET total = 1.5 WHERE id = %s", [ids(sqlite_url, "orders")[0]])],
    )
    second = commands.migrate(config)
    assert second.exit_code == 1 and second.open_quarantine == 1
    got = {e.entity: e.to_dict() for e in second.entities}
    assert (got["patients"]["updated"], got["patients"]["quarantined"]) == (3, 1)
    assert got["orders"]["updated"] == 1
    (entry,) = commands.quarantine_list(config)
    assert (entry.entity_type, entry.legacy_key, entry.kind) == (
        "patients",
        str(refused),
        "rejected",
    )
    assert "no_refused" in entry.reason, entry.reason
    with pytest.raises(AssertionError, match="patients: 1 rows differ"):
        check_equal(config)

    run_sql(sqlite_url, [("UPDATE patients SET notes = 'accepted now' WHERE id = %s", [refused])])
    third = commands.migrate(config)
    assert third.exit_code == 0 and third.open_quarantine == 0
    assert {e.entity: e.outcome.updated for e in third.entities}["patients"] == 1
    assert commands.quarantine_list(config) == []
    (healed,) = commands.quarantine_list(config, include_resolved=True)
    assert healed.resolved
    check_equal(config)
