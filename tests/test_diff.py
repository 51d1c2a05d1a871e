"""``isthmus diff`` against real databases: nothing after a clean migration; every planted
kind of difference found exactly once, in the right comparison type and side, and stored
with its legacy IDs, sides and conflict values under a completed validation checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialect_support import run_sql
from diff_support import (
    CONFLICTED,
    DELETED,
    DIALECTS,
    DIFFERS,
    MISSING,
    TYPES,
    Plantation,
    cursor_config,
    entities_config,
    json_entities,
    mapped_ids,
    migrated,
    plant_everything,
    run_target,
    source_url,
    stored_differentials,
    target_one,
    touch,
    uuid_of,
    validation_checkpoints,
)
from diff_support import ids as source_ids
from isthmus import commands
from isthmus.diff import DiffResult
from isthmus.urls import DatabaseURL
from migrate_support import DEMO_ENTITIES, Setup, make_setup

NOTHING: dict[str, dict[str, int]] = {t: {} for t in TYPES}


def assert_clean(setup: Setup, result: DiffResult, entities: list[str] = DEMO_ENTITIES) -> None:
    assert result.exit_code == 0 and result.total == 0, result.to_dict()
    assert [e.entity for e in result.entities] == entities
    for e in result.entities:
        d = e.to_dict()
        assert d["counts"] == NOTHING, d
        assert d["differentials"] == [] and d["differences"] == 0, d
        assert d["rows_compared"] == d["equal"] == len(source_ids(setup.source, e.entity)), d
        assert d["stale_mappings"] == 0 and d["skipped"] is None, d
        assert d["method"] == whole_table_method(setup), d


def whole_table_method(setup: Setup) -> str:
    """Without cursors: segment checksums where the source computes them, else full."""
    return "full" if setup.source.dialect == "sqlite" else "segments"


def compared(setup: Setup, entity: str) -> int:
    """Legacy IDs a full diff looks at: the source's and the mappings' together."""
    return len(set(source_ids(setup.source, entity)) | set(mapped_ids(setup, entity)))


def check_found(
    setup: Setup, planted: Plantation, result: DiffResult, method: str | None = None
) -> None:
    """The result and what it stored say exactly what was planted."""
    method = method or whole_table_method(setup)
    assert result.exit_code == 1
    expected_total = len(planted.planted) + sum(len(v) for v in planted.created.values())
    assert result.total == expected_total, result.to_dict()
    by_entity = {e.entity: e.to_dict() for e in result.entities}
    assert list(by_entity) == DEMO_ENTITIES
    for name, d in by_entity.items():
        assert d["counts"] == planted.counts(name), (name, d["counts"])
        assert d["stale_mappings"] == len(planted.stale.get(name, [])), (name, d)
        assert d["method"] == method, (name, d)
        if method == "full":
            assert d["rows_compared"] == compared(setup, name), (name, d)
        assert (
            d["equal"]
            + d["stale_mappings"]
            + sum(n for sides in d["counts"].values() for n in sides.values())
            - len(planted.created.get(name, []))
            == d["rows_compared"]
        ), d

    checkpoint_ids = [str(e.checkpoint_id) for e in result.entities]
    stored = stored_differentials(setup, checkpoint_ids)
    expected = planted.expected()
    for name in DEMO_ENTITIES:
        if planted.created.get(name):
            expected.setdefault((name, DELETED), {})
    assert sorted((d["cp_entity"], d["comparison_type"]) for d in stored) == sorted(expected)
    # each planted id is stored exactly once
    seen: dict[tuple[str, int], int] = {}
    for d in stored:
        for legacy_id in d["legacy_ids"]:
            key = (d["cp_entity"], int(legacy_id))
            seen[key] = seen.get(key, 0) + 1
    assert seen == {(p.entity, p.legacy_id): 1 for p in planted.planted}

    reported = {x["id"]: x for e in by_entity.values() for x in e["differentials"]}
    assert set(reported) == {d["id"] for d in stored}
    for d in stored:
        entity, kind = d["cp_entity"], d["comparison_type"]
        where = f"{entity} {kind}"
        sides = expected[(entity, kind)]
        assert d["cp_operation"] == "validation" and d["cp_status"] == "completed", where
        assert (d["source_table"], d["target_table"]) == (entity, f"public.{entity}"), where
        assert d["legacy_ids"] == sorted(i for v in sides.values() for i in v), where
        assert d["record_count"] == len(d["legacy_ids"]), where
        assert reported[d["id"]]["record_count"] == d["record_count"], where
        assert reported[d["id"]]["comparison_type"] == kind, where
        assert d["resolution_strategy"] == "source_wins" and d["resolved"] is False, where
        assert d["resolved_at"] is None, where
        meta = d["metadata"]
        assert meta["entity"] == entity, where
        assert meta["sides"] == sides, where
        created = planted.created.get(entity, []) if kind == DELETED else []
        assert sorted(meta.get("created_in_target", [])) == sorted(created), where
        assert reported[d["id"]]["created_in_target"] == len(created), where
        criteria = d["comparison_criteria"]
        assert criteria["method"] == method and criteria["columns"], where
        assert "id" not in criteria["columns"], where
        if kind == CONFLICTED:
            # touched rows (cursor) differ in updated_at too
            check_conflicts(planted, entity, meta, {"updated_at"} if method == "cursor" else set())
        else:
            assert "conflicts" not in meta, where


def check_conflicts(
    planted: Plantation, entity: str, meta: dict[str, Any], touched: set[str]
) -> None:
    wanted = {p.legacy_id: p for p in planted.of(entity, CONFLICTED)}
    conflicts = {c["legacy_id"]: c for c in meta["conflicts"]}
    assert set(conflicts) == set(wanted), (entity, meta["conflicts"])
    assert meta["conflicts_total"] == meta["conflicts_sampled"] == len(wanted), meta
    for legacy_id, p in wanted.items():
        c = conflicts[legacy_id]
        assert c["side"] == p.side, (p.what, c)
        assert p.column is not None
        assert [x for x in c["columns"] if x not in touched] == [p.column], (p.what, c)
        got = c["columns"][p.column]
        assert got["source"] != got["target"], (p.what, got)
        want_source, want_target = p.values
        if want_source is not DIFFERS:
            assert_value(got["source"], want_source, p.what)
        if want_target is not DIFFERS:
            assert_value(got["target"], want_target, p.what)
    columns = {p.column: 0 for p in wanted.values()}
    for p in wanted.values():
        columns[p.column] += 1
    differing = {k: v for k, v in meta["columns_differing"].items() if k not in touched}
    assert differing == columns, meta["columns_differing"]


def assert_value(got: Any, want: Any, what: str) -> None:
    if want is None or got is None:
        assert got == want, (what, got, want)
    else:
        # a timestamp's canonical text carries its six fractional digits
        assert got == want or got.startswith(want), (what, got, want)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_diff_finds_each_planted_difference_once(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path)
    config = setup.config

    # a clean migration: nothing differs, nothing is stored, one completed checkpoint each
    clean = commands.diff(config)
    assert_clean(setup, clean)
    assert stored_differentials(setup) == []
    said = setup.cli("diff")
    assert said.returncode == 0, said.stdout + said.stderr
    assert "no differences" in said.stdout
    cps = validation_checkpoints(setup)
    assert [c["entity_type"] for c in cps] == DEMO_ENTITIES * 2
    for cp in cps:
        assert cp["status"] == "completed" and cp["metadata"]["command"] == "diff", cp
        assert cp["records_processed"] == len(source_ids(setup.source, cp["entity_type"])), cp

    planted = plant_everything(setup)
    result = commands.diff(config)
    check_found(setup, planted, result)
    for e in result.entities:
        (cp,) = [c for c in validation_checkpoints(setup) if c["id"] == str(e.checkpoint_id)]
        assert (cp["entity_type"], cp["status"]) == (e.entity, "completed"), cp
        assert cp["records_processed"] == cp["records_total"] == e.found.compared, cp

    # the CLI: exit 1, the same counts in JSON, and a second set of differentials stored
    said = setup.cli("--json", "diff")
    assert said.returncode == 1, said.stdout + said.stderr
    doc = json.loads(said.stdout)
    assert doc["total_differences"] == result.total
    again = json_entities(said.stdout)
    for name in DEMO_ENTITIES:
        assert again[name]["counts"] == planted.counts(name), (name, again[name]["counts"])
        assert again[name]["checkpoint_id"] != str(
            next(e.checkpoint_id for e in result.entities if e.entity == name)
        )
    first_set = stored_differentials(setup, [str(e.checkpoint_id) for e in result.entities])
    second_set = stored_differentials(setup, [e["checkpoint_id"] for e in again.values()])

    def content(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                r["cp_entity"],
                r["comparison_type"],
                r["legacy_ids"],
                json.dumps({k: v for k, v in r["metadata"].items() if k != "superseded_by"}),
            )
            for r in rows
        )

    assert content(second_set) == content(first_set)
    assert not {r["id"] for r in first_set} & {r["id"] for r in second_set}
    assert len(stored_differentials(setup)) == 2 * len(first_set)
    assert len(validation_checkpoints(setup)) == 4 * len(DEMO_ENTITIES)
    # the second comparison superseded the first: only its differentials are listed open
    assert all(r["metadata"].get("superseded_by") for r in first_set)
    listed = setup.cli("--json", "differentials", "list")
    assert listed.returncode == 0, listed.stderr
    assert {d["id"] for d in json.loads(listed.stdout)} == {r["id"] for r in second_set}
    table = setup.cli("diff")
    assert table.returncode == 1, table.stderr
    assert "difference(s) stored" in table.stdout


def soft_delete_setup(source: DatabaseURL, target: DatabaseURL, directory: Path) -> Setup:
    """The demo with a timestamptz soft-delete column on products and a boolean one on orders."""
    setup = make_setup(source, target, directory, scale=2)
    run_target(
        setup,
        [
            ("ALTER TABLE public.products ADD COLUMN deleted_at timestamptz", ()),
            ("ALTER TABLE public.orders ADD COLUMN is_deleted boolean NOT NULL DEFAULT false", ()),
        ],
    )
    with setup.config_path.open("a", encoding="utf-8") as f:
        f.write("\n" + entities_config(products="deleted_at", orders="is_deleted"))
    assert commands.migrate(setup.config).exit_code == 0
    return setup


def test_soft_deleted_target_rows_count_as_deleted(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = soft_delete_setup(sqlite_url, fresh_pg_url, tmp_path)
    config = setup.config
    assert_clean(setup, commands.diff(config))

    products, orders = source_ids(sqlite_url, "products"), source_ids(sqlite_url, "orders")
    marked, both_gone, source_gone = products[5], products[6], products[7]
    order = orders[8]
    run_target(
        setup,
        [
            (
                "UPDATE public.products SET deleted_at = now() WHERE id = ANY(%s::uuid[])",
                ([uuid_of(setup, "products", marked), uuid_of(setup, "products", both_gone)],),
            ),
            (
                "UPDATE public.orders SET is_deleted = true WHERE id = %s",
                (uuid_of(setup, "orders", order),),
            ),
        ],
    )
    run_sql(sqlite_url, [("DELETE FROM products WHERE id IN (%s, %s)", [both_gone, source_gone])])
    insert = (
        "INSERT INTO public.products (id, order_id, sku, name, quantity, unit_price, weight_g,"
        " created_at, updated_at, deleted_at) SELECT gen_random_uuid(), order_id, sku, name,"
        " quantity, unit_price, weight_g, created_at, updated_at, {} FROM public.products"
        " WHERE id = %s RETURNING id::text"
    )
    model = uuid_of(setup, "products", products[9])
    created = target_one(setup, insert.format("NULL"), (model,))
    target_one(setup, insert.format("now()"), (model,))  # created and soft-deleted: nothing

    result = commands.diff(config)
    by_entity = {e.entity: e.to_dict() for e in result.entities}
    assert by_entity["products"]["counts"] == {
        MISSING: {"target": 1},
        CONFLICTED: {},
        DELETED: {"source": 1, "target": 1},
    }, by_entity["products"]
    assert by_entity["products"]["stale_mappings"] == 1
    assert by_entity["orders"]["counts"] == {MISSING: {"target": 1}, CONFLICTED: {}, DELETED: {}}
    assert result.total == 4
    stored = {
        (d["cp_entity"], d["comparison_type"]): d
        for d in stored_differentials(setup, [str(e.checkpoint_id) for e in result.entities])
    }
    assert set(stored) == {("products", MISSING), ("products", DELETED), ("orders", MISSING)}
    assert stored[("products", MISSING)]["legacy_ids"] == [marked]
    assert stored[("products", DELETED)]["legacy_ids"] == [source_gone]
    assert stored[("products", DELETED)]["metadata"]["created_in_target"] == [created]
    assert stored[("orders", MISSING)]["legacy_ids"] == [order]
    assert stored[("orders", MISSING)]["metadata"]["sides"] == {"target": [order]}


def test_soft_delete_column_must_exist(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(
        sqlite_url, fresh_pg_url, tmp_path, extra_config=entities_config(products="gone")
    )
    said = setup.cli("diff")
    assert said.returncode == 2, said.stdout + said.stderr
    assert "soft_delete" in said.stderr and "gone" in said.stderr


def test_diff_of_selected_entities(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    planted = plant_everything(setup)
    said = setup.cli("--json", "diff", "--entity", "products", "--entity", "offices")
    assert said.returncode == 1, said.stdout + said.stderr
    found = json_entities(said.stdout)
    assert list(found) == ["offices", "products"]  # plan order, whatever the order given
    for name, e in found.items():
        assert e["counts"] == planted.counts(name), (name, e)
    assert {c["entity_type"] for c in validation_checkpoints(setup)} == {"offices", "products"}
    assert {d["cp_entity"] for d in stored_differentials(setup)} == {"offices", "products"}

    # an entity with nothing planted: exit 0, though other entities differ
    said = setup.cli("--json", "diff", "--entity", "doctors")
    assert said.returncode == 0, said.stdout + said.stderr
    assert list(json_entities(said.stdout)) == ["doctors"]

    unknown = setup.cli("diff", "--entity", "nope")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "nope" in unknown.stderr


def test_diff_twice_stores_two_sets(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    patient = source_ids(sqlite_url, "patients")[3]
    run_sql(
        sqlite_url,
        [("UPDATE patients SET notes = 'x' WHERE id = %s", [patient])],
    )
    first = commands.diff(setup.config, ["patients"])
    second = commands.diff(setup.config, ["patients"])
    assert first.exit_code == second.exit_code == 1
    assert first.entities[0].checkpoint_id != second.entities[0].checkpoint_id
    stored = stored_differentials(setup)
    assert len(stored) == 2
    assert [d["checkpoint_id"] for d in stored] == [
        str(first.entities[0].checkpoint_id),
        str(second.entities[0].checkpoint_id),
    ]
    assert all(d["legacy_ids"] == [patient] for d in stored)
    assert all(d["metadata"]["sides"] == {"source": [patient]} for d in stored)
    # the second comparison superseded the first: only its verdict is open
    listed = commands.differentials_list(setup.config, "patients")
    assert [str(d.id) for d in listed] == [stored[1]["id"]]
    everything = commands.differentials_list(setup.config, "patients", include_resolved=True)
    (old,) = [d for d in everything if str(d.id) == stored[0]["id"]]
    assert old.resolved and old.resolved_at is not None
    assert old.metadata["superseded_by"] == str(second.entities[0].checkpoint_id)


def test_mappings_without_a_base_checksum(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """Imported mappings carry no checksum: a conflict's side is then unknown, an equal row
    is still equal, and a row gone from one side is taken as deleted there."""
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    orders = source_ids(sqlite_url, "orders")
    conflicted, equal, target_gone, source_gone = orders[2], orders[3], orders[4], orders[5]
    products = source_ids(sqlite_url, "products", f"order_id IN ({target_gone}, {source_gone})")
    run_target(
        setup,
        [
            (
                "UPDATE isthmus.legacy_id_mappings SET checksum = NULL"
                " WHERE entity_type = 'orders' AND legacy_id = ANY(%s)",
                ([conflicted, equal, target_gone, source_gone],),
            ),
            (
                "UPDATE public.orders SET order_no = 'T' WHERE id = %s",
                (uuid_of(setup, "orders", conflicted),),
            ),
            (
                "DELETE FROM public.products WHERE order_id = %s",
                (uuid_of(setup, "orders", target_gone),),
            ),
            ("DELETE FROM public.orders WHERE id = %s", (uuid_of(setup, "orders", target_gone),)),
        ],
    )
    run_sql(
        sqlite_url,
        [
            ("DELETE FROM products WHERE order_id = %s", [source_gone]),
            ("DELETE FROM orders WHERE id = %s", [source_gone]),
        ],
    )
    result = commands.diff(setup.config, ["orders"])
    (e,) = result.entities
    assert e.to_dict()["counts"] == {
        MISSING: {"target": 1},
        CONFLICTED: {"unknown": 1},
        DELETED: {"source": 1},
    }
    assert (e.found.ids[MISSING], e.found.ids[CONFLICTED], e.found.ids[DELETED]) == (
        {"target": [target_gone]},
        {"unknown": [conflicted]},
        {"source": [source_gone]},
    )
    (stored,) = [d for d in stored_differentials(setup) if d["comparison_type"] == CONFLICTED]
    (conflict,) = stored["metadata"]["conflicts"]
    assert conflict["side"] == "unknown"
    assert conflict["columns"] == {"order_no": {"source": f"ORD-{conflicted:08d}", "target": "T"}}
    assert len(products) > 0


def test_the_conflict_sample_is_bounded(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(
        sqlite_url, fresh_pg_url, tmp_path, extra_config="[diff]\nsample_conflicts = 2"
    )
    patients = source_ids(sqlite_url, "patients")[10:15]
    run_sql(sqlite_url, [("UPDATE patients SET phone = 'x' WHERE id = %s", [p]) for p in patients])
    commands.diff(setup.config, ["patients"])
    (d,) = stored_differentials(setup)
    meta = d["metadata"]
    assert d["legacy_ids"] == patients and d["record_count"] == 5
    assert (meta["conflicts_sampled"], meta["conflicts_total"]) == (2, 5)
    assert [c["legacy_id"] for c in meta["conflicts"]] == patients[:2]
    assert meta["columns_differing"] == {"phone": 2}


def test_rows_created_only_in_the_target(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """A deleted_records differential with no legacy id at all: only target keys."""
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    office = uuid_of(setup, "offices", source_ids(sqlite_url, "offices")[0])
    created = str(
        target_one(
            setup,
            "INSERT INTO public.offices SELECT gen_random_uuid(), 'New', address, city, phone,"
            " timezone, is_active, created_at, updated_at FROM public.offices WHERE id = %s"
            " RETURNING id",
            (office,),
        )
    )
    said = setup.cli("--json", "diff", "--entity", "offices")
    assert said.returncode == 1, said.stdout + said.stderr
    (e,) = json_entities(said.stdout).values()
    assert e["counts"] == {MISSING: {}, CONFLICTED: {}, DELETED: {"target": 1}}
    assert [
        (x["comparison_type"], x["record_count"], x["created_in_target"])
        for x in e["differentials"]
    ] == [(DELETED, 0, 1)]
    (d,) = stored_differentials(setup)
    assert (d["legacy_ids"], d["record_count"]) == ([], 0)
    assert d["metadata"]["created_in_target"] == [created]
    assert d["metadata"]["sides"] == {}
    listed = setup.cli("--json", "differentials", "list")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)
    assert item["metadata"]["created_in_target"] == [created] and item["record_count"] == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_cursor_diff_finds_what_a_full_diff_finds(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """With ``updated_at`` cursors, the first diff is full and leaves marks; the next ones
    look only at rows changed since (and open differences, and deletes), and find the same."""
    setup = migrated(
        source_url(request, dialect), fresh_pg_url, tmp_path, extra_config=cursor_config()
    )
    first = commands.diff(setup.config)
    assert [e.method for e in first.entities] == [whole_table_method(setup)] * len(DEMO_ENTITIES)
    assert first.total == 0
    for cp in validation_checkpoints(setup):
        assert cp["metadata"]["cursor"]["source_column"] == "updated_at", cp
    planted = plant_everything(setup)
    touch(setup, planted)
    for _ in range(2):  # the second time nothing is newer: the open differences still are
        result = commands.diff(setup.config)
        assert [e.method for e in result.entities] == ["cursor"] * len(DEMO_ENTITIES)
        for e in result.entities:
            assert e.to_dict()["counts"] == planted.counts(e.entity), e.entity
            assert e.found.stale_mappings == len(planted.stale.get(e.entity, [])), e.entity
            # far fewer rows than the table are looked at
            assert e.found.compared < len(source_ids(setup.source, e.entity)) or e.entity in (
                "offices",
                "profiles",
                "doctors",
            )
        check_found(setup, planted, result, method="cursor")


@pytest.mark.parametrize("dialect", ["mysql", "postgresql"])
def test_segment_streams_merged_and_compared_in_small_batches(
    dialect: str,
    request: pytest.FixtureRequest,
    fresh_pg_url: DatabaseURL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Disagreeing buckets compared one at a time (memory follows the differences, and the
    two bucket streams are merged while they flow) find exactly what was planted."""
    from isthmus import diff_segments

    monkeypatch.setattr(diff_segments, "DIRTY_BATCH", 1)
    batches: list[int] = []
    compare_rows = diff_segments._compare_rows

    def counted(run: Any, buckets: list[int], found: Any) -> None:
        batches.append(len(buckets))
        compare_rows(run, buckets, found)

    monkeypatch.setattr(diff_segments, "_compare_rows", counted)
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path)
    assert_clean(setup, commands.diff(setup.config))
    assert batches == []
    planted = plant_everything(setup)
    check_found(setup, planted, commands.diff(setup.config, []), "segments")
    assert len(batches) >= 4 and set(batches) == {1}
