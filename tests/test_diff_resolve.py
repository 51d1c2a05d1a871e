"""``isthmus differentials resolve``: each strategy applied to every planted kind of
difference, against real databases, and what a resolution leaves behind (resolved_at, the
next diff, idempotence)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialect_support import quote, run_sql
from diff_support import (
    CONFLICTED,
    DELETED,
    DIALECTS,
    MISSING,
    Plantation,
    entities_config,
    legacy_of,
    mapped_ids,
    migrated,
    plant_everything,
    run_target,
    source_fingerprint,
    source_url,
    stored_differentials,
    target_fingerprint,
    target_one,
    uuid_of,
)
from diff_support import ids as source_ids
from isthmus import commands
from isthmus.urls import DatabaseURL
from migrate_support import DEMO_ENTITIES, Setup, check_equal, fetch, make_setup


def diff_ids(setup: Setup) -> list[str]:
    """Run a diff; the ids of the differentials it stored."""
    result = commands.diff(setup.config)
    return [d["id"] for e in result.entities for d in e.differentials]


def assert_no_differences(setup: Setup) -> None:
    result = commands.diff(setup.config)
    assert result.exit_code == 0 and result.total == 0, {
        e.entity: e.to_dict()["counts"] for e in result.entities
    }


def resolutions(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["differential_id"]: r for r in json.loads(stdout)["resolutions"]}


def assert_all_resolved(setup: Setup, strategy: str) -> None:
    for d in stored_differentials(setup):
        assert d["resolved"] is True and d["resolved_at"] is not None, d
        resolution = d["metadata"]["resolution"]
        assert resolution["strategy"] == strategy, d
        assert resolution["already_resolved"] is False, d


def expected_work(planted: Plantation) -> dict[tuple[str, str], tuple[int, int]]:
    """(entity, comparison type) → (written, deleted) for source_wins."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for (entity, kind), sides in planted.expected().items():
        n = sum(len(v) for v in sides.values())
        out[(entity, kind)] = (0, n) if kind == DELETED else (n, 0)
    for entity, created in planted.created.items():
        written, deleted = out.get((entity, DELETED), (0, 0))
        out[(entity, DELETED)] = (written, deleted + len(created))
    return out


# -- source_wins -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_wins_makes_the_target_equal_the_source(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(source_url(request, dialect), fresh_pg_url, tmp_path)
    planted = plant_everything(setup, stale=False)
    created = planted.created["products"][0]
    stored = {d: None for d in diff_ids(setup)}
    before = source_fingerprint(setup.source)

    said = setup.cli("--json", "differentials", "resolve", "--all")
    assert said.returncode == 0, said.stdout + said.stderr
    done = resolutions(said.stdout)
    assert set(done) == set(stored)
    rows = {d["id"]: d for d in stored_differentials(setup)}
    work = {
        (rows[i]["cp_entity"], rows[i]["comparison_type"]): (r["written"], r["deleted"])
        for i, r in done.items()
    }
    assert work == expected_work(planted)
    assert all(r["strategy"] == "source_wins" and r["quarantined"] == 0 for r in done.values())
    assert_all_resolved(setup, "source_wins")

    assert source_fingerprint(setup.source) == before  # the source is not touched
    assert_no_differences(setup)
    check_equal(setup.config)
    assert target_one(setup, "SELECT count(*) FROM public.products WHERE id = %s", (created,)) == 0
    # nothing open any more: --all finds nothing to do
    again = setup.cli("differentials", "resolve", "--all")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to resolve" in again.stdout


def test_source_wins_with_soft_delete_marks_rows_instead_of_deleting(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = make_setup(sqlite_url, fresh_pg_url, tmp_path, scale=2)
    run_target(setup, [("ALTER TABLE public.products ADD COLUMN deleted_at timestamptz", ())])
    with setup.config_path.open("a", encoding="utf-8") as f:
        f.write("\n" + entities_config(products="deleted_at"))
    assert commands.migrate(setup.config).exit_code == 0
    products = source_ids(sqlite_url, "products")
    gone = products[3]
    run_sql(sqlite_url, [("DELETE FROM products WHERE id = %s", [gone])])
    gone_uuid = uuid_of(setup, "products", gone)
    created = str(
        target_one(
            setup,
            "INSERT INTO public.products (id, order_id, sku, name, quantity, unit_price,"
            " weight_g, created_at, updated_at) SELECT gen_random_uuid(), order_id, sku, name,"
            " quantity, unit_price, weight_g, created_at, updated_at FROM public.products"
            " WHERE id = %s RETURNING id",
            (uuid_of(setup, "products", products[4]),),
        )
    )
    (only,) = diff_ids(setup)
    result = commands.differentials_resolve(setup.config, [only])
    (r,) = result.resolutions
    assert (r.comparison_type, r.deleted, r.written) == (DELETED, 2, 0)
    with setup.target_conn() as conn:
        marked = dict(
            conn.execute(
                "SELECT id::text, deleted_at IS NOT NULL FROM public.products"
                " WHERE id = ANY(%s::uuid[])",
                ([gone_uuid, created],),
            ).fetchall()
        )
    assert marked == {gone_uuid: True, created: True}  # kept, marked
    assert gone in mapped_ids(setup, "products")  # a marked row keeps its mapping
    result_after = commands.diff(setup.config)
    assert result_after.total == 0, [e.to_dict()["counts"] for e in result_after.entities]


# -- target_wins -------------------------------------------------------------------------------


def give_products_a_sequence(source: DatabaseURL) -> None:
    """The demo's PostgreSQL legacy keys have no generator; a legacy app's would (serial)."""
    run_sql(
        source,
        [
            "CREATE SEQUENCE products_id_seq OWNED BY products.id",
            "SELECT setval('products_id_seq', (SELECT max(id) FROM products))",
            "ALTER TABLE products ALTER COLUMN id SET DEFAULT nextval('products_id_seq')",
        ],
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_target_wins_makes_the_source_equal_the_target(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    planted = plant_everything(setup, stale=False)
    (created,) = planted.created["products"]
    mapped_before = set(mapped_ids(setup, "products"))
    target_before = target_fingerprint(setup)
    stored = diff_ids(setup)
    if dialect == "postgresql":
        give_products_a_sequence(source)

    said = setup.cli("--json", "differentials", "resolve", "--all", "--strategy", "target_wins")
    assert said.returncode == 0, said.stdout + said.stderr
    done = resolutions(said.stdout)
    assert set(done) == set(stored)
    assert all(r["strategy"] == "target_wins" for r in done.values())
    assert_all_resolved(setup, "target_wins")

    # the target's rows are as they were; only mapping checksums (and the new mapping) change
    after = target_fingerprint(setup)
    for name in DEMO_ENTITIES:
        assert after[name] == target_before[name], name
    assert_no_differences(setup)
    check_equal(setup.config)

    # the row created in the target now has a legacy key of the source's and a mapping
    new_key = legacy_of(setup, "products", created)
    assert new_key is not None and new_key not in mapped_before
    ((sku, name),) = fetch(
        source,
        f"SELECT sku, name FROM {quote(source, 'products')} WHERE id = %s",  # noqa: S608
        (new_key,),
    )
    assert (sku, name) == ("TARGET-SKU", "made in the target")
    # each planted row is now the target's version in the source
    for p in planted.planted:
        in_source = p.legacy_id in source_ids(source, p.entity)
        if p.kind == MISSING:  # not (any more) in the target: deleted from the source
            assert not in_source, p
        else:
            assert in_source, p
        if p.kind == CONFLICTED and p.column and p.side in ("target", "both"):
            got = fetch(
                source,
                f"SELECT {quote(source, p.column)} FROM {quote(source, p.entity)}"  # noqa: S608
                " WHERE id = %s",
                (p.legacy_id,),
            )[0][0]
            assert str(got) == p.values[1], (p, got)


# -- skip and manual_review --------------------------------------------------------------------


def one_difference(sqlite_url: DatabaseURL, setup: Setup) -> int:
    patient = source_ids(sqlite_url, "patients")[3]
    run_sql(sqlite_url, [("UPDATE patients SET notes = 'changed' WHERE id = %s", [patient])])
    return patient


def test_skip_closes_the_differential_and_changes_nothing(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    patient = one_difference(sqlite_url, setup)
    (only,) = diff_ids(setup)
    source_before, target_before = source_fingerprint(sqlite_url), target_fingerprint(setup)

    said = setup.cli("--json", "differentials", "resolve", only, "--strategy", "skip")
    assert said.returncode == 0, said.stdout + said.stderr
    (r,) = resolutions(said.stdout).values()
    assert (r["strategy"], r["written"], r["deleted"], r["already_resolved"]) == (
        "skip",
        0,
        0,
        False,
    )
    (d,) = stored_differentials(setup)
    assert d["resolved"] is True and d["resolved_at"] is not None
    assert d["metadata"]["resolution"]["strategy"] == "skip"
    assert source_fingerprint(sqlite_url) == source_before
    assert target_fingerprint(setup) == target_before
    # still different: the next diff finds it again, in a new differential
    (again,) = diff_ids(setup)
    assert again != only
    (row,) = [d for d in stored_differentials(setup) if d["id"] == again]
    assert row["legacy_ids"] == [patient] and row["resolved"] is False


def test_skip_as_the_configured_strategy(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path, extra_config='[diff]\nresolution = "skip"')
    one_difference(sqlite_url, setup)
    (only,) = diff_ids(setup)
    (d,) = stored_differentials(setup)
    assert d["resolution_strategy"] == "skip"
    target_before = target_fingerprint(setup)
    (r,) = commands.differentials_resolve(setup.config, [only]).resolutions
    assert r.strategy == "skip" and r.written == r.deleted == 0
    assert target_fingerprint(setup) == target_before


def test_manual_review_is_refused_without_a_strategy(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(
        sqlite_url, fresh_pg_url, tmp_path, extra_config='[diff]\nresolution = "manual_review"'
    )
    one_difference(sqlite_url, setup)
    (only,) = diff_ids(setup)
    (d,) = stored_differentials(setup)
    assert d["resolution_strategy"] == "manual_review"
    target_before = target_fingerprint(setup)

    said = setup.cli("differentials", "resolve", only)
    assert said.returncode == 2, said.stdout + said.stderr
    assert "manual review" in said.stderr and "--strategy" in said.stderr
    # --all leaves it for a person, and says so
    said = setup.cli("differentials", "resolve", "--all")
    assert said.returncode == 0, said.stdout + said.stderr
    assert "1 differential(s) with strategy manual_review left" in said.stdout
    (d,) = stored_differentials(setup)
    assert d["resolved"] is False and d["resolved_at"] is None
    assert target_fingerprint(setup) == target_before
    # --strategy manual_review is no way out either
    said = setup.cli("differentials", "resolve", only, "--strategy", "manual_review")
    assert said.returncode == 2, said.stdout + said.stderr

    said = setup.cli("differentials", "resolve", only, "--strategy", "source_wins")
    assert said.returncode == 0, said.stdout + said.stderr
    (d,) = stored_differentials(setup)
    assert d["resolved"] is True and d["resolved_at"] is not None
    assert d["metadata"]["resolution"]["strategy"] == "source_wins"
    assert_no_differences(setup)
    check_equal(setup.config)


# -- idempotence and selection -----------------------------------------------------------------


def test_resolving_a_resolved_differential_changes_nothing(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    one_difference(sqlite_url, setup)
    (only,) = diff_ids(setup)
    (first,) = commands.differentials_resolve(setup.config, [only]).resolutions
    assert (first.already_resolved, first.written) == (False, 1)
    (d1,) = stored_differentials(setup)
    target_before, source_before = target_fingerprint(setup), source_fingerprint(sqlite_url)

    for strategy in (None, "target_wins", "skip"):
        (again,) = commands.differentials_resolve(setup.config, [only], strategy).resolutions
        assert again.already_resolved is True
        assert (again.written, again.deleted, again.quarantined) == (0, 0, 0)
    said = setup.cli("differentials", "resolve", only)
    assert said.returncode == 0, said.stdout + said.stderr
    assert "already resolved" in said.stdout
    (d2,) = stored_differentials(setup)
    assert d2["resolved_at"] == d1["resolved_at"]
    assert d2["metadata"] == d1["metadata"]
    assert target_fingerprint(setup) == target_before
    assert source_fingerprint(sqlite_url) == source_before
    # resolved ones are listed only with --all
    assert commands.differentials_list(setup.config) == []
    assert [str(d.id) for d in commands.differentials_list(setup.config, None, True)] == [only]


def test_resolve_selects_by_entity_and_refuses_bad_requests(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    plant_everything(setup, stale=False)
    diff_ids(setup)
    said = setup.cli("--json", "differentials", "resolve", "--all", "--entity", "orders")
    assert said.returncode == 0, said.stdout + said.stderr
    assert {r["entity"] for r in resolutions(said.stdout).values()} == {"orders"}
    open_ones = {d["cp_entity"] for d in stored_differentials(setup) if not d["resolved"]}
    assert open_ones == {"offices", "patients", "products"}
    check_equal(setup.config, ["orders"])

    for args in ([], ["not-a-uuid"], ["00000000-0000-0000-0000-000000000000"]):
        said = setup.cli("differentials", "resolve", *args)
        assert said.returncode == 2, (args, said.stdout, said.stderr)
    said = setup.cli("differentials", "resolve", "--all", "--strategy", "nope")
    assert said.returncode == 2, said.stdout + said.stderr


def test_target_wins_without_a_key_generator_stops_and_converges_when_run_again(
    pg_databases: Any, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """A PostgreSQL legacy key with no sequence cannot number a row created in the target:
    a clear error (exit 3), that differential left open; once the key has a generator the
    same command finishes the work."""
    source = pg_databases.create("isthmus_diff_src")
    setup = migrated(source, fresh_pg_url, tmp_path)
    products = source_ids(source, "products")
    changed = products[5]
    run_target(
        setup,
        [
            (
                "UPDATE public.products SET name = 'target name' WHERE id = %s",
                (uuid_of(setup, "products", changed),),
            ),
            (
                "INSERT INTO public.products (id, order_id, sku, name, quantity, unit_price,"
                " weight_g, created_at, updated_at) SELECT gen_random_uuid(), order_id, 'NEW',"
                " name, quantity, unit_price, weight_g, created_at, updated_at"
                " FROM public.products WHERE id = %s",
                (uuid_of(setup, "products", products[6]),),
            ),
        ],
    )
    assert len(diff_ids(setup)) == 2
    said = setup.cli("differentials", "resolve", "--all", "--strategy", "target_wins")
    assert said.returncode == 3, said.stdout + said.stderr
    assert "products" in said.stderr and "no sequence" in said.stderr
    state = {d["comparison_type"]: d["resolved"] for d in stored_differentials(setup)}
    assert state == {CONFLICTED: True, DELETED: False}

    give_products_a_sequence(source)
    said = setup.cli("differentials", "resolve", "--all", "--strategy", "target_wins")
    assert said.returncode == 0, said.stdout + said.stderr
    assert_no_differences(setup)
    check_equal(setup.config)


# -- parents and children ----------------------------------------------------------------------


def delete_order_with_products(setup: Setup, source_side: bool, order: int) -> list[int]:
    """Delete an order and its products on one side; the products' legacy ids."""
    source = setup.source
    products = source_ids(source, "products", f"order_id = {int(order)}")
    assert products
    if source_side:
        run_sql(
            source,
            [
                (f"DELETE FROM {quote(source, 'products')} WHERE order_id = %s", [order]),  # noqa: S608
                (f"DELETE FROM {quote(source, 'orders')} WHERE id = %s", [order]),  # noqa: S608
            ],
        )
    else:
        run_target(
            setup,
            [
                (
                    "DELETE FROM public.products WHERE order_id = %s",
                    (uuid_of(setup, "orders", order),),
                ),
                ("DELETE FROM public.orders WHERE id = %s", (uuid_of(setup, "orders", order),)),
            ],
        )
    return products


@pytest.mark.parametrize("strategy", ["source_wins", "target_wins"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_parent_deleted_with_its_children_on_either_side(
    dialect: str,
    strategy: str,
    request: pytest.FixtureRequest,
    fresh_pg_url: DatabaseURL,
    tmp_path: Path,
) -> None:
    """Deleting on the losing side must go children first, writing parents first, whichever
    side the rows went from (the legacy databases enforce their foreign keys)."""
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    orders = source_ids(source, "orders")
    in_source = delete_order_with_products(setup, True, orders[3])
    in_target = delete_order_with_products(setup, False, orders[4])
    result = commands.diff(setup.config)
    counts = {e.entity: e.to_dict()["counts"] for e in result.entities}
    assert counts["orders"] == {
        MISSING: {"target": 1},
        CONFLICTED: {},
        DELETED: {"source": 1},
    }
    assert counts["products"] == {
        MISSING: {"target": len(in_target)},
        CONFLICTED: {},
        DELETED: {"source": len(in_source)},
    }
    said = setup.cli("differentials", "resolve", "--all", "--strategy", strategy)
    assert said.returncode == 0, said.stdout + said.stderr
    assert_no_differences(setup)
    check_equal(setup.config)
    left = set(source_ids(source, "orders"))
    if strategy == "source_wins":
        assert orders[3] not in left and orders[4] in left
    else:
        assert orders[3] in left and orders[4] not in left


@pytest.mark.parametrize("dialect", DIALECTS)
def test_target_wins_numbers_a_parent_and_its_child_created_in_the_target(
    dialect: str, request: pytest.FixtureRequest, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    source = source_url(request, dialect)
    setup = migrated(source, fresh_pg_url, tmp_path)
    model = source_ids(source, "products")[0]
    order_model = source_ids(source, "orders")[0]
    with setup.target_conn() as conn:
        order = conn.execute(
            "INSERT INTO public.orders SELECT gen_random_uuid(), patient_id, 'NEW-ORDER', status,"
            " total, placed_at, created_at, updated_at FROM public.orders WHERE id = %s"
            " RETURNING id::text",
            (uuid_of(setup, "orders", order_model),),
        ).fetchone()[0]  # type: ignore[index]
        product = conn.execute(
            "INSERT INTO public.products SELECT gen_random_uuid(), %s, 'NEW-SKU', name,"
            " quantity, unit_price, weight_g, created_at, updated_at FROM public.products"
            " WHERE id = %s RETURNING id::text",
            (order, uuid_of(setup, "products", model)),
        ).fetchone()[0]  # type: ignore[index]
    assert len(diff_ids(setup)) == 2
    if dialect == "postgresql":
        give_products_a_sequence(source)
        run_sql(
            source,
            [
                "CREATE SEQUENCE orders_id_seq OWNED BY orders.id",
                "SELECT setval('orders_id_seq', (SELECT max(id) FROM orders))",
                "ALTER TABLE orders ALTER COLUMN id SET DEFAULT nextval('orders_id_seq')",
            ],
        )
    said = setup.cli("--json", "differentials", "resolve", "--all", "--strategy", "target_wins")
    assert said.returncode == 0, said.stdout + said.stderr
    assert all(
        not r["notes"] or "skipped" not in " ".join(r["notes"])
        for r in resolutions(said.stdout).values()
    ), said.stdout
    new_order, new_product = (
        legacy_of(setup, "orders", order),
        legacy_of(setup, "products", product),
    )
    assert new_order is not None and new_product is not None
    ((parent, sku),) = fetch(
        source,
        f"SELECT order_id, sku FROM {quote(source, 'products')} WHERE id = %s",  # noqa: S608
        (new_product,),
    )
    assert (int(parent), sku) == (new_order, "NEW-SKU")
    assert_no_differences(setup)
    check_equal(setup.config)


def test_target_wins_leaves_open_what_it_could_not_apply(
    sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL, tmp_path: Path
) -> None:
    """A product created in the target under an order also created there, resolved alone:
    its parent has no legacy id yet, so it cannot go into the source. It is skipped with a
    note; its differential must stay open (it was not applied)."""
    setup = migrated(sqlite_url, fresh_pg_url, tmp_path)
    with setup.target_conn() as conn:
        order = conn.execute(
            "INSERT INTO public.orders SELECT gen_random_uuid(), patient_id, 'NEW-ORDER', status,"
            " total, placed_at, created_at, updated_at FROM public.orders WHERE id = %s"
            " RETURNING id::text",
            (uuid_of(setup, "orders", source_ids(sqlite_url, "orders")[0]),),
        ).fetchone()[0]  # type: ignore[index]
        product = conn.execute(
            "INSERT INTO public.products SELECT gen_random_uuid(), %s, 'NEW-SKU', name,"
            " quantity, unit_price, weight_g, created_at, updated_at FROM public.products"
            " WHERE id = %s RETURNING id::text",
            (order, uuid_of(setup, "products", source_ids(sqlite_url, "products")[0])),
        ).fetchone()[0]  # type: ignore[index]
    diff_ids(setup)
    result = commands.differentials_resolve(
        setup.config, strategy="target_wins", every_open=True, entities=["products"]
    )
    (r,) = result.resolutions
    assert r.written == 0 and len(r.notes) == 1
    assert product in r.notes[0], r.notes
    (d,) = [d for d in stored_differentials(setup) if d["cp_entity"] == "products"]
    assert d["resolved"] is False
