"""performance_check against a real migration: a small SQLite legacy database migrated into
PostgreSQL, then timed. Thresholds are set absurdly tight (or loose) to see each finding."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import PgDatabases
from isthmus import commands, validate_performance
from isthmus.config import Config, ValidationConfig, config_from_dict
from isthmus.loadplan import build_load
from isthmus.target import reflect_table
from isthmus.validate_check import PERFORMANCE, Check
from isthmus.validate_performance import check_performance
from isthmus.workspace import Workspace

STATE = "isthmus"
ODD = 'odd "Table" é'  # a hostile table (and entity) name
ODD_KEY = "the id"
ODD_REF = 'cust\'omer "ref"'
CUSTOMERS, ORDERS = 40, 300


def _legacy(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY,"
        " customer_id INTEGER REFERENCES customers(id), total REAL);"
        "CREATE TABLE codes (code TEXT PRIMARY KEY, customer_id INTEGER REFERENCES customers(id));"
        'CREATE TABLE "odd ""Table"" é" ("the id" INTEGER PRIMARY KEY,'
        ' "cust\'omer ""ref""" INTEGER REFERENCES customers(id), "va lue" TEXT);'
    )
    db.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}") for i in range(1, 41)])
    orders = [(i, 1 + i % CUSTOMERS, i * 1.5) for i in range(1, ORDERS + 1)]
    db.executemany("INSERT INTO orders VALUES (?, ?, ?)", orders)
    db.executemany("INSERT INTO codes VALUES (?, ?)", [(f"k{i}", 1 + i % 7) for i in range(30)])
    odd = [(i * 3, 1 + i % 5, f"v {i}") for i in range(1, 60)]
    db.executemany('INSERT INTO "odd ""Table"" é" VALUES (?, ?, ?)', odd)
    db.commit()
    db.close()


@dataclass
class Migrated:
    config: Config
    target: str  # libpq URI of the target database

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target, autocommit=True)


def _migrated(databases: PgDatabases, directory: Path, *, run: bool = True) -> Migrated:
    _legacy(directory / "legacy.db")
    target = databases.create("isthmus_perf")
    config = config_from_dict(
        {
            "source": {"url": f"sqlite:///{directory / 'legacy.db'}"},
            "target": {"url": target.raw, "state_schema": STATE},
        }
    )
    commands.init(config)
    commands.schema(config, apply=True)
    if run:
        commands.migrate(config)
    return Migrated(config, target.raw)


@pytest.fixture(scope="module")
def shared(pg_databases: PgDatabases, tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    """One migration the read-only tests share."""
    return _migrated(pg_databases, tmp_path_factory.mktemp("perf"))


@pytest.fixture
def own(pg_databases: PgDatabases, tmp_path: Path) -> Migrated:
    """A migration of the test's own, to change."""
    return _migrated(pg_databases, tmp_path)


@pytest.fixture
def not_migrated(pg_databases: PgDatabases, tmp_path: Path) -> Migrated:
    return _migrated(pg_databases, tmp_path, run=False)


@pytest.fixture
def judge_every_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny runs judged like large ones (the tests' runs move a few hundred rows)."""
    monkeypatch.setattr(validate_performance, "JUDGE_MIN_ROWS", 1)
    yield


def run_check(m: Migrated, entity: str, **settings: Any) -> Check:
    validation = ValidationConfig(**{"query_samples": 10, **settings})
    with Workspace(m.config) as ws, ws.connect_target() as conn:
        planned = ws.plan[entity]
        table = reflect_table(conn, ws.config.target.schema_, planned.entity.target_table)
        conn.commit()
        load = build_load(planned, table, ws.plan, ws.source.capabilities)
        check = Check(
            PERFORMANCE,
            entity,
            load.source_table,
            f"{load.target.schema}.{load.target.name}",
            limit=validation.samples,
        )
        done = check_performance(ws, conn, load, validation, check)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return done


def query_names(check: Check) -> list[str]:
    return [q["name"] for q in check.metadata["queries"]]


# -- a normal migration passes ------------------------------------------------------------------


def test_a_normal_migration_passes_with_every_measurement_recorded(shared: Migrated) -> None:
    check = run_check(shared, "orders")
    assert check.passed, check.to_dict()
    throughput = check.metadata["throughput"]
    assert throughput["operation"] == "differential_migration"
    assert throughput["rows"] == ORDERS and throughput["checkpoints"] == 1
    assert throughput["seconds"] > 0 and throughput["rows_per_second"] > 0
    assert throughput["judged"] is False  # 300 rows: latency, not throughput
    lookups = check.metadata["lookups"]
    assert 1 <= lookups["samples"] // 2 <= 10  # both directions, up to query_samples each
    assert lookups["legacy_to_uuid"]["samples"] == lookups["uuid_to_legacy"]["samples"]
    assert 0 < lookups["p50_ms"] <= lookups["p95_ms"]
    assert query_names(check) == ["primary_key", "parent:customer_id", "children:customer_id"]
    for q in check.metadata["queries"]:
        assert q["samples"] == 10 and 0 < q["p50_ms"] <= q["p95_ms"], q
        assert "stopped_early" not in q
    assert '"public"."orders"' in check.metadata["queries"][0]["sql"]
    assert check.metadata["unindexed_foreign_keys"] == []  # schema --apply indexed the FK
    assert check.records_validated == lookups["samples"] + 30
    assert check.criteria["max_query_ms"] == 250.0 and check.criteria["judge_min_rows"] == 10_000
    report = check.to_dict()
    assert report["passed"] and report["discrepancy_details"] is None


def test_an_entity_with_a_hostile_name_and_columns_is_timed(shared: Migrated) -> None:
    check = run_check(shared, ODD)
    assert check.passed, check.to_dict()
    assert check.metadata["throughput"]["rows"] == 59
    assert query_names(check) == ["primary_key", f"parent:{ODD_REF}", f"children:{ODD_REF}"]
    assert all(q["samples"] == 10 for q in check.metadata["queries"])
    parent = check.metadata["queries"][1]["sql"]
    assert '"public"."odd ""Table"" é" AS c' in parent, parent
    assert 'p."id" = c."cust\'omer ""ref"""' in parent, parent
    assert check.metadata["lookups"]["samples"] > 0


def test_an_entity_that_keeps_its_key_is_queried_by_that_key_without_lookups(
    shared: Migrated,
) -> None:
    check = run_check(shared, "codes")
    assert check.passed, check.to_dict()
    lookups = check.metadata["lookups"]
    assert lookups["samples"] == 0 and "ID map" in lookups["note"]
    assert query_names(check) == ["primary_key", "parent:customer_id", "children:customer_id"]
    assert '"code" = %s' in check.metadata["queries"][0]["sql"]
    assert check.records_validated == 30


def test_a_parent_without_references_has_its_key_lookup_only(shared: Migrated) -> None:
    check = run_check(shared, "customers")
    assert check.passed
    assert query_names(check) == ["primary_key"]
    assert check.metadata["queries"][0]["samples"] == 10


# -- thresholds -----------------------------------------------------------------------------------


def test_tight_thresholds_give_findings_with_their_samples(
    shared: Migrated, judge_every_run: None
) -> None:
    check = run_check(
        shared, "orders", max_query_ms=0.000001, max_lookup_ms=0.000001, min_rows_per_second=1e12
    )
    assert not check.passed
    counts = check.findings.counts
    assert counts == {"slow_throughput": 1, "slow_lookup": 2, "slow_query": 3}, counts
    (slow,) = check.findings.samples["slow_throughput"]
    assert slow["threshold"] == 1e12 and 0 < slow["rows_per_second"] < 1e12
    assert slow["rows"] == ORDERS
    directions = {s["direction"] for s in check.findings.samples["slow_lookup"]}
    assert directions == {"legacy_to_uuid", "uuid_to_legacy"}
    names = [s["name"] for s in check.findings.samples["slow_query"]]
    assert names == ["primary_key", "parent:customer_id", "children:customer_id"]
    for s in check.findings.samples["slow_query"]:
        assert s["p95_ms"] > s["threshold"] == 0.000001
    # every sample over the limit: each series stopped after its first
    assert all(q["stopped_early"] and q["samples"] == 1 for q in check.metadata["queries"])
    assert check.records_validated > 0


def test_a_tiny_run_is_recorded_but_not_judged(shared: Migrated) -> None:
    check = run_check(shared, "orders", min_rows_per_second=1e12)
    assert check.passed, check.to_dict()
    assert check.metadata["throughput"]["judged"] is False
    assert check.metadata["throughput"]["rows_per_second"] < 1e12


# -- what the check finds in the target ----------------------------------------------------------


def test_a_foreign_key_without_an_index_is_listed(own: Migrated) -> None:
    with own.connect() as conn:
        rows = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = %s::regclass AND a.attname = %s",
            ('public."odd ""Table"" é"', ODD_REF),
        ).fetchall()
        assert rows, "schema --apply indexes the FK column"
        for (index,) in rows:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    check = run_check(own, ODD)
    assert check.passed  # advice, not a finding
    (unindexed,) = check.metadata["unindexed_foreign_keys"]
    assert unindexed["column"] == ODD_REF and unindexed["parent_table"] == "customers"
    assert unindexed["constraint"]  # the FK constraint schema --apply made


def test_without_a_checkpoint_there_is_no_throughput_finding_but_a_note(
    own: Migrated, judge_every_run: None
) -> None:
    with own.connect() as conn:
        table = sql.Identifier(STATE, "migration_checkpoints")
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
    check = run_check(own, "orders", min_rows_per_second=1e12)
    assert check.passed, check.to_dict()
    throughput = check.metadata["throughput"]
    assert throughput["rows_per_second"] is None and throughput["checkpoints"] == 0
    assert "no completed" in throughput["note"]


def test_an_empty_target_times_nothing_but_says_why(not_migrated: Migrated) -> None:
    check = run_check(not_migrated, "orders", min_rows_per_second=1e12)
    assert check.passed
    assert check.metadata["queries"] == [] and "no target row" in check.metadata["queries_note"]
    assert check.metadata["lookups"]["samples"] == 0
    assert check.metadata["throughput"]["rows_per_second"] is None
    assert check.records_validated == 0


def test_a_sync_run_is_measured_by_its_apply_batches(own: Migrated, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "legacy.db")
    db.execute("UPDATE orders SET total = total + 1 WHERE id <= 5")
    db.executemany("INSERT INTO orders VALUES (?, 1, 0)", [(i,) for i in range(1001, 1008)])
    db.commit()
    db.close()
    commands.jobs_create(own.config, "often", "manual_sync", batch_size=4)
    assert commands.jobs_run(own.config, "often").status == "completed"
    check = run_check(own, "orders")
    throughput = check.metadata["throughput"]
    # 12 rows moved in batches of 4 (5 changed, 7 new); the comparison's 307 rows left out
    assert throughput["operation"] == "sync_operation", throughput
    assert throughput["rows"] == 12 and throughput["checkpoints"] >= 3, throughput
    assert throughput["judged"] is False and check.passed


def test_a_chunked_pass_is_measured_from_its_first_chunk_to_its_last(
    own: Migrated, judge_every_run: None
) -> None:
    table = sql.Identifier(STATE, "migration_checkpoints")
    insert = sql.SQL(
        "INSERT INTO {} (operation_type, entity_type, batch_size, records_processed, status,"
        " started_at, completed_at, metadata) VALUES ('differential_migration', 'orders', 10,"
        " %s, 'completed', %s::timestamptz, %s::timestamptz, %s::jsonb) RETURNING id"
    ).format(table)
    with own.connect() as conn:  # two chunks side by side, 5 s from first start to last end

        def chunk(start: str, end: str, lo: int, hi: int) -> str:
            found = conn.execute(insert, (500, start, end, f'{{"chunk": [{lo}, {hi}]}}'))
            row = found.fetchone()
            assert row is not None
            return str(row[0])

        at = "2100-01-01 00:00:{:02}+00".format  # later than the real migration's
        ids = [chunk(at(0), at(4), 1, 150), chunk(at(1), at(5), 151, 300)]
        summary = f'{{"chunk_checkpoints": ["{ids[0]}", "{ids[1]}"]}}'
        conn.execute(insert, (1000, at(6), at(7), summary))
    check = run_check(own, "orders", min_rows_per_second=300)
    throughput = check.metadata["throughput"]
    assert throughput["operation"] == "differential_migration"
    assert (throughput["checkpoints"], throughput["rows"], throughput["seconds"]) == (2, 1000, 5.0)
    assert throughput["rows_per_second"] == 200.0
    (slow,) = check.findings.samples["slow_throughput"]
    assert slow == {
        "rows_per_second": 200.0,
        "rows": 1000,
        "seconds": 5.0,
        "operation": "differential_migration",
        "threshold": 300,
    }
