"""`isthmus migrate` and `isthmus quarantine list` through the installed command line."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dialect_support import run_sql
from isthmus.urls import DatabaseURL
from migrate_support import DEMO_ENTITIES, Setup, check_equal, fetch, make_setup


@pytest.fixture
def setup(sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path) -> Setup:
    return make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=1)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_json_migrate_prints_one_document_with_counts_per_entity(setup: Setup) -> None:
    done = setup.cli("--json", "migrate", "--batch-size", "100")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bars or logs when piped
    doc = json.loads(done.stdout)  # the whole of stdout is one document
    assert [e["entity"] for e in doc["entities"]] == DEMO_ENTITIES
    for e in doc["entities"]:
        n = setup.counts[e["entity"]]
        assert (e["rows_read"], e["inserted"], e["updated"], e["unchanged"]) == (n, n, 0, 0)
        assert e["quarantined"] == 0 and e["status"] == "completed"
        assert e["source_table"] == e["entity"] and e["target_table"] == f"public.{e['entity']}"
        assert e["checkpoint_id"] and e["resumed_after"] is None
    assert doc["rows_read"] == sum(setup.counts.values())
    assert doc["open_quarantine"] == 0
    assert doc["pending_ddl"] and all(p["applied"] for p in doc["pending_ddl"])
    check_equal(setup.config)

    only = setup.cli("--json", "migrate", "--entity", "doctors", "--entity", "offices")
    assert only.returncode == 0, only.stderr
    again = json.loads(only.stdout)
    assert [e["entity"] for e in again["entities"]] == ["offices", "doctors"]  # plan order
    assert all(e["inserted"] == e["updated"] == 0 for e in again["entities"])


def test_unknown_entity_exits_2_naming_it(setup: Setup) -> None:
    result = setup.cli("migrate", "--entity", "nope")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nope" in one_error_line(result.stderr)
    as_json = setup.cli("--json", "migrate", "--entity", "nope")
    assert as_json.returncode == 2
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and "nope" in doc["error"]


def test_missing_target_table_exits_2_and_says_to_create_it(setup: Setup) -> None:
    with setup.target_conn() as conn:
        conn.execute("DROP TABLE public.patients CASCADE")
    result = setup.cli("migrate")
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_error_line(result.stderr)
    assert "patients" in line and "isthmus schema --apply" in line, line
    with setup.target_conn() as conn:  # checked before a single row moved
        row = conn.execute("SELECT count(*) FROM public.offices").fetchone()
        assert row == (0,)


def broken_chains(url: DatabaseURL) -> dict[str, set[str]]:
    """Per table, the legacy ids whose parent (or an ancestor) is not in the source."""
    parents = {
        "profiles": ("office_id", "offices"),
        "doctors": ("profile_id", "profiles"),
        "patients": ("doctor_id", "doctors"),
        "orders": ("patient_id", "patients"),
        "products": ("order_id", "orders"),
    }
    present: dict[str, set[int]] = {"offices": {r[0] for r in fetch(url, "SELECT id FROM offices")}}
    broken: dict[str, set[str]] = {}
    for table, (column, parent) in parents.items():
        rows = fetch(url, f"SELECT id, {column} FROM {table}")  # noqa: S608
        broken[table] = {str(i) for i, p in rows if p not in present[parent]}
        present[table] = {i for i, p in rows if p in present[parent]}
    return broken


def test_orphans_are_quarantined_and_listed(setup: Setup) -> None:
    # SQLite does not enforce its foreign keys unless asked: point a few rows nowhere
    run_sql(
        setup.source,
        [
            "UPDATE profiles SET office_id = 999999 WHERE id = (SELECT min(id) + 1 FROM profiles)",
            "UPDATE patients SET doctor_id = 999999 WHERE id = (SELECT max(id) FROM patients)",
            "UPDATE products SET order_id = 999999 WHERE id = (SELECT min(id) + 5 FROM products)",
        ],
    )
    expected = broken_chains(setup.source)
    # the profile's doctor, its patients, their orders and products are cut off with it
    assert all(expected[t] for t in DEMO_ENTITIES[1:])

    done = setup.cli("--json", "migrate", "--batch-size", "50")
    assert done.returncode == 1, done.stderr  # rows remain outside the target
    doc = json.loads(done.stdout)
    quarantined = {e["entity"]: e["quarantined"] for e in doc["entities"]}
    assert quarantined == {t: len(expected.get(t, ())) for t in DEMO_ENTITIES}
    assert doc["open_quarantine"] == sum(quarantined.values())

    listed = setup.cli("--json", "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert {(e["entity"], e["legacy_key"]) for e in entries} == {
        (t, k) for t, keys in expected.items() for k in keys
    }
    for e in entries:
        assert e["kind"] == "orphan" and e["resolved"] is False and e["attempts"] == 1
        assert e["column"] and e["column"] in e["reason"], e
        assert e["source_table"] == e["entity"]
    with psycopg.connect(setup.target.raw) as conn:
        for table in DEMO_ENTITIES:
            query = f"SELECT count(*) FROM public.{table}"  # noqa: S608
            row = conn.execute(query).fetchone()
            assert row == (setup.counts[table] - len(expected.get(table, ())),), table

    one = setup.cli("--json", "quarantine", "list", "--entity", "products")
    assert {e["legacy_key"] for e in json.loads(one.stdout)} == expected["products"]
    shown = setup.cli("quarantine", "list", "--entity", "products")
    assert shown.returncode == 0 and "products" in shown.stdout and "orphan" in shown.stdout

    # a second run tries them again: still orphans, counted as another attempt
    again = setup.cli("--json", "migrate")
    assert again.returncode == 1
    entries = json.loads(setup.cli("--json", "quarantine", "list").stdout)
    assert {e["attempts"] for e in entries} == {2}
