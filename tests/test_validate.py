"""Validation reports against real databases: a clean migration passes all four types, and
each way of corrupting a migrated target is caught by the type that should catch it, with a
detail that names the row, the column or the mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diff_support import DIALECTS, migrated, source_url, target_one, uuid_of
from diff_support import ids as source_ids
from isthmus import commands
from isthmus.config import load_config
from isthmus.demo import generate_legacy
from isthmus.errors import UsageError
from isthmus.urls import DatabaseURL
from isthmus.validate_check import VALIDATION_TYPES
from migrate_support import DEMO_ENTITIES, Setup, write_config

MAP = "isthmus.legacy_id_mappings"  # the tests own every name here


def by_key(result: Any) -> dict[tuple[str, str], Any]:
    return {(c.entity, c.validation_type): c for c in result.checks}


def target_sql(setup: Setup, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    with setup.target_conn() as conn:
        for s in statements:
            if isinstance(s, tuple):
                conn.execute(s[0], s[1])
            else:
                conn.execute(s)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_clean_migration_passes_all_four(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path)
    said = setup.cli("--json", "validate")
    assert said.returncode == 0, said.stdout + said.stderr
    doc = json.loads(said.stdout)
    assert doc["passed"] is True
    pairs = [(r["entity"], r["validation_type"]) for r in doc["reports"]]
    assert pairs == [(e, t) for e in DEMO_ENTITIES for t in VALIDATION_TYPES]
    for r in doc["reports"]:
        assert r["discrepancies_found"] == 0, r
        assert r["records_validated"] > 0 or r["metadata"].get("skipped"), r
    sizes = {e: len(source_ids(setup.source, e)) for e in DEMO_ENTITIES}
    for r in doc["reports"]:
        if r["validation_type"] == "completeness_check":
            meta = r["metadata"]
            n = sizes[r["entity"]]
            assert meta["source_rows"] == meta["target_rows"] == meta["mappings"] == n, r
        if r["validation_type"] == "data_integrity":
            assert r["records_validated"] == sizes[r["entity"]], r
            assert r["metadata"]["rows_equal"] == sizes[r["entity"]], r
    # stored: one report each, linked to the run, not to a job
    with setup.target_conn() as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT metadata->>'run_id'), count(job_id)"
            " FROM isthmus.migration_validation_reports"
        ).fetchone()
    assert rows == (len(DEMO_ENTITIES) * 4, 1, 0)
    table = setup.cli("validate", "--type", "completeness_check", "--entity", "orders")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "orders" in table.stdout and "all 1 validation(s) passed" in table.stdout


@pytest.mark.parametrize("dialect", ["sqlite", "mysql"])
def test_each_corruption_is_caught_by_the_right_type(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path)
    patients = source_ids(setup.source, "patients")
    orders = source_ids(setup.source, "orders")
    products = source_ids(setup.source, "products")
    changed, dropped, copied = patients[3], products[5], products[6]
    repointed, new_parent = orders[7], patients[9]
    duplicated = products[11]  # a leaf: no reference reads through its mapping
    target_sql(
        setup,
        # a changed value
        (
            "UPDATE patients SET last_name = 'Tampered' WHERE id = %s",
            (uuid_of(setup, "patients", changed),),
        ),
        # a dropped row
        ("DELETE FROM products WHERE id = %s", (uuid_of(setup, "products", dropped),)),
        # an extra row (a copy of another, under a key no mapping knows)
        (
            "INSERT INTO products SELECT gen_random_uuid(), order_id, sku, name, quantity,"
            " unit_price, weight_g, created_at, updated_at FROM products WHERE id = %s",
            (uuid_of(setup, "products", copied),),
        ),
        # a re-pointed FK: the order now belongs to another patient
        (
            "UPDATE orders SET patient_id = %s WHERE id = %s",
            (uuid_of(setup, "patients", new_parent), uuid_of(setup, "orders", repointed)),
        ),
        # a duplicated mapping: a second legacy ID pointing at an order's UUID
        f"ALTER TABLE {MAP} DROP CONSTRAINT idx_legacy_mapping_entity_uuid",
        (
            f"INSERT INTO {MAP} (entity_type, legacy_id, uuid_id) VALUES ('products', 990001, %s)",  # noqa: S608
            (uuid_of(setup, "products", duplicated),),
        ),
        # a mapping to a row that does not exist
        f"INSERT INTO {MAP} (entity_type, legacy_id, uuid_id)"  # noqa: S608
        " VALUES ('products', 990002, gen_random_uuid())",
    )
    result = commands.validate(setup.config)
    assert result.exit_code == 1
    checks = by_key(result)

    data = checks[("patients", "data_integrity")]
    assert data.findings.counts == {"value_mismatch": 1}
    (sample,) = data.findings.samples["value_mismatch"]
    assert sample["legacy_id"] == changed
    assert list(sample["columns"]) == ["last_name"]
    assert sample["columns"]["last_name"]["target"] == "Tampered"
    assert data.extra_details["columns_differing"] == {"last_name": 1}

    complete = checks[("products", "completeness_check")]
    assert complete.findings.counts == {
        "missing_in_target": 1,
        "unmapped_target_row": 1,
        "mapping_to_missing_row": 1,
        "extra_in_target": 1,  # 990001 is no source row, and its UUID's row exists
        "duplicate_mapping": 1,
    }, complete.findings.samples
    assert complete.findings.samples["missing_in_target"][0]["legacy_id"] == dropped
    assert complete.findings.samples["mapping_to_missing_row"][0]["legacy_id"] == 990002
    (dup,) = complete.findings.samples["duplicate_mapping"]
    assert dup["mapped_from"] == [f"products:{n}" for n in sorted([duplicated, 990001])]

    relations = checks[("orders", "relationship_integrity")]
    assert relations.findings.counts == {"wrong_parent": 1}
    (wrong,) = relations.findings.samples["wrong_parent"]
    assert wrong == {
        "legacy_id": repointed,
        "column": "patient_id",
        "source_parent": str(_source_parent(setup, repointed)),
        "target_parent": str(new_parent),
    }

    # each type alone finds the same (its own pass over the databases, no shared comparison)
    for kind in ("completeness_check", "relationship_integrity"):
        alone = by_key(commands.validate(setup.config, [kind]))
        for key, check in alone.items():
            assert check.findings.counts == checks[key].findings.counts, key
            for name, samples in check.findings.samples.items():
                assert [x.get("legacy_id") for x in samples] == [
                    x.get("legacy_id") for x in checks[key].findings.samples[name]
                ], (key, name)

    # nothing else failed: each corruption is attributed where it belongs
    failing = sorted(k for k, c in checks.items() if not c.passed)
    assert failing == [
        ("orders", "data_integrity"),  # the re-pointed reference is a changed value too
        ("orders", "relationship_integrity"),
        ("patients", "data_integrity"),
        ("products", "completeness_check"),
    ]
    # the dropped row's absence is completeness's finding; data_integrity notes it
    notes = checks[("products", "data_integrity")].notes.counts
    # the dropped row and the second mapping of a row (a stale mapping holds no row at all)
    assert notes.get("not_on_both_sides") == 2, checks[("products", "data_integrity")].notes
    # stored as the specification says: failed, details bounded, criteria kept
    with setup.target_conn() as conn:
        stored = conn.execute(
            "SELECT validation_passed, discrepancies_found, discrepancy_details,"
            " validation_criteria, expires_at > generated_at FROM"
            " isthmus.migration_validation_reports WHERE source_entity = 'products'"
            " AND validation_type = 'completeness_check'"
        ).fetchone()
    assert stored is not None
    assert stored[0] is False and stored[1] == 5 and stored[4] is True
    assert stored[2]["counts"]["missing_in_target"] == 1 and stored[3]["compared"]


def _source_parent(setup: Setup, order: int) -> int:
    from diff_support import value

    return int(value(setup.source, "orders", "patient_id", order))


_REFERENCES = {
    "profiles": 'office_id = "offices"',
    "doctors": 'profile_id = "profiles"',
    "patients": 'doctor_id = "doctors"',
    "orders": 'patient_id = "patients"',
    "products": 'order_id = "orders"',
}


def _with_orphans(
    source: DatabaseURL, target: DatabaseURL, directory: Path, orphans: int, migration: str
) -> Setup:
    """The demo without FK constraints, ``orphans`` rows pointing at no parent, the
    references declared in the config (nothing else tells them)."""
    counts = generate_legacy(source, scale=2, foreign_keys=False, orphans=orphans)
    path = write_config(directory / "isthmus.toml", source, target, migration)
    with path.open("a", encoding="utf-8") as f:
        f.write("[entities.offices]\n")
        for entity, refs in _REFERENCES.items():
            f.write(f"[entities.{entity}]\nreferences = {{ {refs} }}\n")
    config = load_config(path)
    commands.init(config)
    commands.schema(config, apply=True)
    return Setup(source, target, path, counts)


def test_legacy_orphans_apart_from_orphans_in_the_target(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    # the legacy source already has orphans: the migration quarantines them (and the rows
    # below them); validation notes both, and passes
    setup = _with_orphans(sqlite_url, fresh_pg_url, tmp_path, 3, "")
    assert commands.migrate(setup.config).open_quarantine >= 3
    result = commands.validate(setup.config, ["completeness_check", "relationship_integrity"])
    assert result.exit_code == 0, [c.to_dict() for c in result.checks if not c.passed]
    quarantined = sum(c.notes.counts.get("quarantined", 0) for c in result.checks)
    with setup.target_conn() as conn:
        row = conn.execute("SELECT count(*) FROM isthmus.quarantined_rows").fetchone()
    assert row is not None and quarantined == row[0]
    legacy = {
        c.entity: c.notes.counts.get("legacy_orphan", 0)
        for c in result.checks
        if c.validation_type == "relationship_integrity"
    }
    assert sum(legacy.values()) == 3, legacy

    # an orphan the migration made: a product pointing at no order
    product = source_ids(setup.source, "products")[-1]
    with setup.target_conn() as conn:
        conn.execute("SET session_replication_role = replica")  # FK triggers off
        conn.execute(
            "UPDATE products SET order_id = gen_random_uuid() WHERE id = %s",
            (uuid_of(setup, "products", product),),
        )
    broken = commands.validate(setup.config, ["relationship_integrity"], ["products"])
    (check,) = broken.checks
    assert check.findings.counts == {"orphan_in_target": 1}, check.findings.samples
    (sample,) = check.findings.samples["orphan_in_target"]
    assert sample["legacy_id"] == product and sample["column"] == "order_id"
    assert sample["parent"] == "public.orders"
    assert check.notes.counts.get("legacy_orphan", 0) == legacy["products"]


def test_a_sample_states_its_confidence(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    result = commands.validate(setup.config, ["data_integrity"], ["patients"], sample_rows=40)
    (check,) = result.checks
    assert check.passed and check.records_validated == 40
    sample = check.metadata["sample"]
    assert sample["rows"] == 40 and sample["confidence"] == 0.95
    assert "at 95% confidence, fewer than" in sample["statement"]
    # every row changed: any sample sees it
    target_sql(setup, "UPDATE patients SET phone = phone || '0'")
    result = commands.validate(setup.config, ["data_integrity"], ["patients"], sample_rows=40)
    (check,) = result.checks
    assert check.findings.counts == {"value_mismatch": 40}
    assert "40 of 40 sampled rows differ" in check.metadata["sample"]["statement"]


def test_reports_list_show_and_stale(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    target_sql(setup, "UPDATE offices SET city = 'Nowhere'")
    said = setup.cli("--json", "validate", "--type", "data_integrity,completeness_check")
    assert said.returncode == 1, said.stdout + said.stderr
    doc = json.loads(said.stdout)
    run_id = doc["run_id"]
    failing = [r for r in doc["reports"] if not r["passed"]]
    assert [(r["entity"], r["validation_type"]) for r in failing] == [("offices", "data_integrity")]

    listed = setup.cli("--json", "reports", "list", "--failed")
    assert listed.returncode == 0, listed.stderr
    (only,) = json.loads(listed.stdout)["reports"]
    assert only["id"] == failing[0]["id"] and only["stale"] is False

    shown = setup.cli("--json", "reports", "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["reports"]) == len(DEMO_ENTITIES) * 2
    table = setup.cli("reports", "show", only["id"])
    assert table.returncode == 0 and "value_mismatch" in table.stdout, table.stdout
    assert "city" in table.stdout
    html = tmp_path / "report.html"
    out = setup.cli("reports", "show", "latest", "--format", "html", "--output", str(html))
    assert out.returncode == 0, out.stderr
    assert html.read_text().startswith("<!DOCTYPE html>")
    bad = setup.cli("reports", "show", "nope")
    assert bad.returncode == 2 and "not a report ID" in bad.stderr

    # an expired report is shown as stale
    target_sql(
        setup,
        "UPDATE isthmus.migration_validation_reports SET generated_at = generated_at"
        " - interval '30 days', expires_at = generated_at - interval '29 days'",
    )
    listed = setup.cli("--json", "reports", "list")
    assert all(r["stale"] for r in json.loads(listed.stdout)["reports"])
    assert "stale" in setup.cli("reports", "list").stdout


def test_unknown_type_is_a_usage_error(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    with pytest.raises(UsageError, match="unknown validation type 'speed'"):
        commands.validate(setup.config, ["speed"])
    said = setup.cli("validate", "--type", "speed")
    assert said.returncode == 2 and "completeness_check" in said.stderr
    assert target_one(setup, "SELECT count(*) FROM isthmus.migration_validation_reports") == 0


def test_a_job_validates_after_each_run(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    said = setup.cli(
        "jobs", "create", "nightly", "--type", "manual_sync", "--entities", "offices,doctors",
        "--validate", "completeness_check,data_integrity",
    )  # fmt: skip
    assert said.returncode == 0, said.stdout + said.stderr
    ran = setup.cli("--json", "jobs", "run", "nightly")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    validation = json.loads(ran.stdout)["validation"]
    assert validation["passed"] is True and validation["reports"] == 4
    with setup.target_conn() as conn:
        rows = conn.execute(
            "SELECT r.source_entity, r.validation_type::text FROM"
            " isthmus.migration_validation_reports r JOIN isthmus.synchronization_jobs j"
            " ON j.id = r.job_id WHERE j.job_name = 'nightly' ORDER BY 1, 2"
        ).fetchall()
    assert rows == [
        ("doctors", "completeness_check"),
        ("doctors", "data_integrity"),
        ("offices", "completeness_check"),
        ("offices", "data_integrity"),
    ]
    # a target changed behind the sync's back, in a column the one-way sync re-applies: the
    # next run repairs it and validates clean; a target-only row it leaves makes it fail
    target_sql(
        setup,
        "INSERT INTO offices SELECT gen_random_uuid(), name, address, city, phone, timezone,"
        " is_active, created_at, updated_at FROM offices LIMIT 1",
    )
    ran = setup.cli("jobs", "run", "nightly")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "validation FAILED (offices:completeness_check)" in ran.stdout
    bad = setup.cli("jobs", "create", "x", "--type", "manual_sync", "--validate", "speed")
    assert bad.returncode == 2 and "unknown validation type 'speed'" in bad.stderr
