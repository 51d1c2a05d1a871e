"""Helpers for the diff and resolve tests: a migrated demo database in any source dialect,
every kind of difference planted in it with the verdict ``isthmus diff`` must give, and
readers of what a diff stored (differentials, validation checkpoints, fingerprints).

Each planted change touches a row of its own, so each is expected exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import quote, run_sql
from isthmus import commands
from isthmus.demo_schema import TABLES
from isthmus.urls import DatabaseURL
from migrate_support import DEMO_ENTITIES, STATE, Setup, fetch, make_setup

SCALE = 2  # 2,418 rows: each setup takes well under a second
DIALECTS = ["sqlite", "mysql", "postgresql"]
MISSING, CONFLICTED, DELETED = "missing_records", "conflicted_records", "deleted_records"
TYPES = (MISSING, CONFLICTED, DELETED)


class Differs:
    """A conflict value that is only known to differ from the other side's."""

    def __repr__(self) -> str:
        return "<differs>"


DIFFERS = Differs()


def source_url(request: pytest.FixtureRequest, dialect: str) -> DatabaseURL:
    """A fresh empty legacy database of ``dialect`` (MariaDB skips when none answers)."""
    if dialect == "sqlite":
        url: DatabaseURL = request.getfixturevalue("sqlite_url")
        return url
    if dialect == "mysql":
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        return mysql.create("isthmus_diff")
    pg: PgDatabases = request.getfixturevalue("pg_databases")
    return pg.create("isthmus_diff_src")


def migrated(
    source: DatabaseURL, target: DatabaseURL, directory: Path, *, extra_config: str = ""
) -> Setup:
    """The demo legacy database in ``source``, migrated into ``target`` (exit 0)."""
    setup = make_setup(source, target, directory, scale=SCALE)
    if extra_config:
        with setup.config_path.open("a", encoding="utf-8") as f:
            f.write("\n" + extra_config + "\n")
    result = commands.migrate(setup.config)
    assert result.exit_code == 0 and result.open_quarantine == 0
    return setup


def entities_config(**soft_delete: str) -> str:
    """``[entities.X]`` for every demo table (naming one names them all), with the given
    ``soft_delete`` columns."""
    out = []
    for name in DEMO_ENTITIES:
        out.append(f"[entities.{name}]")
        if name in soft_delete:
            out.append(f'soft_delete = "{soft_delete[name]}"')
    return "\n".join(out) + "\n"


# -- reading the databases ---------------------------------------------------------------------


def ids(url: DatabaseURL, table: str, where: str = "") -> list[int]:
    """Legacy keys of ``table`` (optionally only rows matching ``where``), ascending."""
    clause = f" WHERE {where}" if where else ""
    rows = fetch(url, f"SELECT id FROM {quote(url, table)}{clause} ORDER BY id")  # noqa: S608
    return [int(r[0]) for r in rows]


def value(url: DatabaseURL, table: str, column: str, key: int) -> Any:
    query = f"SELECT {quote(url, column)} FROM {quote(url, table)} WHERE id = %s"  # noqa: S608
    ((found,),) = fetch(url, query, (key,))
    return found


def target_one(setup: Setup, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    with setup.target_conn() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def uuid_of(setup: Setup, entity: str, legacy_id: int) -> str:
    return str(
        target_one(
            setup,
            "SELECT uuid_id FROM isthmus.legacy_id_mappings"
            " WHERE entity_type = %s AND legacy_id = %s",
            (entity, legacy_id),
        )
    )


def legacy_of(setup: Setup, entity: str, uuid: str) -> int | None:
    with setup.target_conn() as conn:
        row = conn.execute(
            "SELECT legacy_id FROM isthmus.legacy_id_mappings"
            " WHERE entity_type = %s AND uuid_id = %s",
            (entity, uuid),
        ).fetchone()
    return None if row is None else int(row[0])


def mapped_ids(setup: Setup, entity: str) -> list[int]:
    with setup.target_conn() as conn:
        rows = conn.execute(
            "SELECT legacy_id FROM isthmus.legacy_id_mappings WHERE entity_type = %s"
            " ORDER BY legacy_id",
            (entity,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def run_target(setup: Setup, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    with setup.target_conn() as conn:
        for statement, params in statements:
            conn.execute(statement, params)


def source_fingerprint(url: DatabaseURL) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every demo table of the source, in key order."""
    return {
        t: fetch(url, f"SELECT * FROM {quote(url, t)} ORDER BY id")  # noqa: S608
        for t in DEMO_ENTITIES
    }


def target_fingerprint(setup: Setup) -> dict[str, list[tuple[Any, ...]]]:
    """Every target row and every mapping, in a stable order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with setup.target_conn() as conn:
        for t in DEMO_ENTITIES:
            query = sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier("public", t))
            out[t] = [tuple(r) for r in conn.execute(query)]
        out["mappings"] = [
            tuple(r)
            for r in conn.execute(
                "SELECT entity_type, legacy_id, uuid_id, checksum"
                " FROM isthmus.legacy_id_mappings ORDER BY 1, 2"
            )
        ]
    return out


# -- what a diff stored ------------------------------------------------------------------------


def stored_differentials(
    setup: Setup, checkpoint_ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """Rows of isthmus.data_differentials (of these checkpoints), with their checkpoint's
    operation type, status and entity, oldest first."""
    with setup.target_conn() as conn:
        cur = conn.execute(
            sql.SQL(
                "SELECT d.id::text AS id, d.checkpoint_id::text AS checkpoint_id, d.source_table,"
                " d.target_table, d.comparison_type, d.legacy_ids, d.record_count,"
                " d.comparison_criteria, d.resolution_strategy, d.resolved, d.resolved_at,"
                " d.metadata, c.operation_type AS cp_operation, c.status AS cp_status,"
                " c.entity_type AS cp_entity"
                " FROM {d} d LEFT JOIN {c} c ON c.id = d.checkpoint_id"
                " WHERE %s::text[] IS NULL OR d.checkpoint_id::text = ANY(%s::text[])"
                " ORDER BY d.created_at, d.id"
            ).format(
                d=sql.Identifier(STATE, "data_differentials"),
                c=sql.Identifier(STATE, "migration_checkpoints"),
            ),
            (checkpoint_ids, checkpoint_ids),
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def validation_checkpoints(setup: Setup) -> list[dict[str, Any]]:
    with setup.target_conn() as conn:
        cur = conn.execute(
            sql.SQL(
                "SELECT id::text AS id, entity_type, status, operation_type, records_processed,"
                " records_total, metadata FROM {} WHERE operation_type = 'validation'"
                " ORDER BY created_at, id"
            ).format(sql.Identifier(STATE, "migration_checkpoints"))
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def json_entities(stdout: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(stdout)
    return {e["entity"]: e for e in doc["entities"]}


# -- planting differences ----------------------------------------------------------------------


@dataclass
class Planted:
    """One planted difference: the verdict diff must give, and for a conflict, the column
    that differs with its canonical (source, target) values."""

    what: str
    entity: str
    kind: str  # comparison type
    side: str
    legacy_id: int
    column: str | None = None
    values: tuple[Any, Any] = (DIFFERS, DIFFERS)


@dataclass
class Plantation:
    planted: list[Planted] = field(default_factory=list)
    created: dict[str, list[str]] = field(default_factory=dict)  # entity → target uuids
    stale: dict[str, list[int]] = field(default_factory=dict)  # gone from both sides

    def add(self, *items: Planted) -> None:
        self.planted.extend(items)

    def expected(self) -> dict[tuple[str, str], dict[str, list[int]]]:
        """(entity, comparison type) → side → legacy ids, ascending."""
        out: dict[tuple[str, str], dict[str, list[int]]] = {}
        for p in self.planted:
            out.setdefault((p.entity, p.kind), {}).setdefault(p.side, []).append(p.legacy_id)
        for sides in out.values():
            for found in sides.values():
                found.sort()
        return out

    def counts(self, entity: str) -> dict[str, dict[str, int]]:
        """What ``EntityDiff.to_dict()['counts']`` must say for ``entity``."""
        out: dict[str, dict[str, int]] = {t: {} for t in TYPES}
        for (name, kind), sides in self.expected().items():
            if name == entity:
                out[kind] = {s: len(v) for s, v in sides.items()}
        if self.created.get(entity):
            out[DELETED]["target"] = out[DELETED].get("target", 0) + len(self.created[entity])
        return out

    def of(self, entity: str, kind: str) -> list[Planted]:
        return [p for p in self.planted if p.entity == entity and p.kind == kind]


class _Picker:
    """Hands out source rows, never the same one twice."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.used: dict[str, set[int]] = {}

    def __call__(self, table: str, where: str = "") -> int:
        used = self.used.setdefault(table, set())
        for key in ids(self.url, table, where):
            if key not in used:
                used.add(key)
                return key
        raise AssertionError(f"no unused {table} row matching {where!r}")


def _update(
    url: DatabaseURL, table: str, column: str, expr: str, key: int, *params: Any
) -> tuple[str, list[Any]]:
    c = quote(url, column)
    statement = f"UPDATE {quote(url, table)} SET {c} = {expr} WHERE id = %s"  # noqa: S608
    return statement, [*params, key]


def _copy_row(url: DatabaseURL, table: str, from_id: int, **changes: Any) -> None:
    names = next(t.column_names for t in TABLES if t.name == table)
    cols = ", ".join(quote(url, n) for n in names)
    select = f"SELECT {cols} FROM {quote(url, table)} WHERE id = %s"  # noqa: S608
    (row,) = fetch(url, select, (from_id,))
    values = [changes.get(n, v) for n, v in zip(names, row, strict=True)]
    marks = ", ".join(["%s"] * len(names))
    run_sql(url, [(f"INSERT INTO {quote(url, table)} ({cols}) VALUES ({marks})", values)])  # noqa: S608


TEXT = 'Zoë "changed"\ttab\\back'


def plant_everything(setup: Setup, *, stale: bool = True) -> Plantation:
    """Every kind of difference, each in a row of its own, in a freshly migrated demo (and,
    with ``stale``, a row deleted on both sides: no difference, a stale mapping)."""
    url = setup.source
    pick = _Picker(url)
    out = Plantation()
    src: list[tuple[str, list[Any]]] = []
    tgt: list[tuple[str, tuple[Any, ...]]] = []

    # -- source inserts: a new product
    new_product = ids(url, "products")[-1] + 7
    _copy_row(url, "products", ids(url, "products")[3], id=new_product, sku="NEW-SKU")
    out.add(Planted("source insert", "products", MISSING, "source", new_product))

    # -- source updates, one column type each
    p = pick("patients")
    old = value(url, "patients", "first_name", p)
    src.append(_update(url, "patients", "first_name", "%s", p, TEXT))
    out.add(Planted("text", "patients", CONFLICTED, "source", p, "first_name", (TEXT, old)))

    p = pick("patients")
    src.append(_update(url, "patients", "balance", "%s", p, "98765.43"))
    out.add(
        Planted("decimal", "patients", CONFLICTED, "source", p, "balance", ("98765.43", DIFFERS))
    )

    o = pick("orders", "placed_at IS NOT NULL")
    stamp = "2022-02-03 04:05:06.654321"
    src.append(_update(url, "orders", "placed_at", "%s", o, stamp))
    out.add(Planted("timestamp", "orders", CONFLICTED, "source", o, "placed_at", (stamp, DIFFERS)))

    p = pick("patients", "birth_date IS NOT NULL")
    src.append(_update(url, "patients", "birth_date", "%s", p, "1999-12-31"))
    out.add(
        Planted("date", "patients", CONFLICTED, "source", p, "birth_date", ("1999-12-31", DIFFERS))
    )

    office = pick("offices")
    active = bool(value(url, "offices", "is_active", office))
    src.append(_update(url, "offices", "is_active", f"NOT {quote(url, 'is_active')}", office))
    flipped = ("f", "t") if active else ("t", "f")
    out.add(Planted("boolean", "offices", CONFLICTED, "source", office, "is_active", flipped))

    pr = pick("products", "weight_g IS NOT NULL AND weight_g <> 12.5")
    src.append(_update(url, "products", "weight_g", "%s", pr, 12.5))
    out.add(Planted("float", "products", CONFLICTED, "source", pr, "weight_g", ("12.5", DIFFERS)))

    pr = pick("products")
    qty = int(value(url, "products", "quantity", pr))
    src.append(_update(url, "products", "quantity", "%s", pr, qty + 1))
    out.add(
        Planted(
            "integer", "products", CONFLICTED, "source", pr, "quantity", (str(qty + 1), str(qty))
        )
    )

    o = pick("orders")
    status = str(value(url, "orders", "status", o))
    other = "cancelled" if status != "cancelled" else "draft"
    src.append(_update(url, "orders", "status", "%s", o, other))
    out.add(Planted("enum", "orders", CONFLICTED, "source", o, "status", (other, status)))

    p = pick("patients", "notes IS NULL")
    src.append(_update(url, "patients", "notes", "%s", p, "a note now"))
    out.add(
        Planted("NULL→value", "patients", CONFLICTED, "source", p, "notes", ("a note now", None))
    )

    p = pick("patients", "email IS NOT NULL")
    email = str(value(url, "patients", "email", p))
    src.append(_update(url, "patients", "email", "NULL", p))
    out.add(Planted("value→NULL", "patients", CONFLICTED, "source", p, "email", (None, email)))

    # -- a foreign key re-pointed in the source
    p = pick("patients")
    doctor = int(value(url, "patients", "doctor_id", p))
    other_doctor = next(d for d in ids(url, "doctors") if d != doctor)
    src.append(_update(url, "patients", "doctor_id", "%s", p, other_doctor))
    out.add(
        Planted(
            "source FK",
            "patients",
            CONFLICTED,
            "source",
            p,
            "doctor_id",
            (str(other_doctor), str(doctor)),
        )
    )

    # -- a source delete (a leaf row)
    pr = pick("products")
    src.append((f"DELETE FROM {quote(url, 'products')} WHERE id = %s", [pr]))  # noqa: S608
    out.add(Planted("source delete", "products", DELETED, "source", pr))

    # -- both sides update the same row
    p = pick("patients")
    src.append(_update(url, "patients", "phone", "%s", p, "source phone"))
    tgt.append(
        (
            "UPDATE public.patients SET phone = %s WHERE id = %s",
            ("target phone", uuid_of(setup, "patients", p)),
        )
    )
    out.add(
        Planted(
            "both update",
            "patients",
            CONFLICTED,
            "both",
            p,
            "phone",
            ("source phone", "target phone"),
        )
    )

    # -- deleted on one side, changed on the other
    pr = pick("products")
    src.append(_update(url, "products", "name", "%s", pr, "changed in the source"))
    tgt.append(("DELETE FROM public.products WHERE id = %s", (uuid_of(setup, "products", pr),)))
    out.add(Planted("target delete, source update", "products", MISSING, "both", pr))

    pr = pick("products")
    tgt.append(
        (
            "UPDATE public.products SET name = 'changed in the target' WHERE id = %s",
            (uuid_of(setup, "products", pr),),
        )
    )
    src.append((f"DELETE FROM {quote(url, 'products')} WHERE id = %s", [pr]))  # noqa: S608
    out.add(Planted("source delete, target update", "products", DELETED, "both", pr))

    # -- gone from both sides: no difference (a stale mapping)
    if stale:
        pr = pick("products")
        gone = uuid_of(setup, "products", pr)
        tgt.append(("DELETE FROM public.products WHERE id = %s", (gone,)))
        src.append((f"DELETE FROM {quote(url, 'products')} WHERE id = %s", [pr]))  # noqa: S608
        out.stale["products"] = [pr]

    # -- target update
    o = pick("orders")
    order_no = str(value(url, "orders", "order_no", o))
    tgt.append(
        (
            "UPDATE public.orders SET order_no = 'TARGET-CHANGED' WHERE id = %s",
            (uuid_of(setup, "orders", o),),
        )
    )
    out.add(
        Planted(
            "target update",
            "orders",
            CONFLICTED,
            "target",
            o,
            "order_no",
            (order_no, "TARGET-CHANGED"),
        )
    )

    # -- a foreign key re-pointed in the target (to another existing parent's UUID)
    pr = pick("products")
    order = int(value(url, "products", "order_id", pr))
    other_order = next(x for x in ids(url, "orders") if x != order)
    tgt.append(
        (
            "UPDATE public.products SET order_id = %s WHERE id = %s",
            (uuid_of(setup, "orders", other_order), uuid_of(setup, "products", pr)),
        )
    )
    out.add(
        Planted(
            "target FK",
            "products",
            CONFLICTED,
            "target",
            pr,
            "order_id",
            (str(order), str(other_order)),
        )
    )

    # -- target delete
    pr = pick("products")
    tgt.append(("DELETE FROM public.products WHERE id = %s", (uuid_of(setup, "products", pr),)))
    out.add(Planted("target delete", "products", MISSING, "target", pr))

    run_sql(url, src)
    run_target(setup, tgt)

    # -- target insert: a row with a new UUID that no mapping points at
    model = uuid_of(setup, "products", pick("products"))  # a row nothing else touches
    created = str(
        target_one(
            setup,
            "INSERT INTO public.products (id, order_id, sku, name, quantity, unit_price,"
            " weight_g, created_at, updated_at) SELECT gen_random_uuid(), order_id,"
            " 'TARGET-SKU', 'made in the target', quantity, unit_price, weight_g, created_at,"
            " updated_at FROM public.products WHERE id = %s RETURNING id",
            (model,),
        )
    )
    out.created["products"] = [created]
    return out


def touch(setup: Setup, planted: Plantation, stamp: str = "2030-01-01 00:00:00") -> None:
    """Set ``updated_at`` to ``stamp`` (later than any demo row's) on each side where a
    planted row was inserted or changed and still is, as a legacy app and the target's
    writers would: what a cursor diff goes by."""
    url = setup.source

    def source_touch(entity: str) -> str:
        return f"UPDATE {quote(url, entity)} SET updated_at = %s WHERE id = %s"  # noqa: S608

    def target_touch(entity: str) -> str:
        return f"UPDATE public.{entity} SET updated_at = %s WHERE id = %s"  # noqa: S608

    src: list[tuple[str, list[Any]]] = []
    tgt: list[tuple[str, tuple[Any, ...]]] = []
    for p in planted.planted:
        in_source = p.kind != DELETED and (p.kind != MISSING or p.side != "target")
        in_target = p.kind != MISSING and (p.kind != DELETED or p.side == "both")
        if in_source and (p.kind == MISSING or p.side in ("source", "both")):
            src.append((source_touch(p.entity), [stamp, p.legacy_id]))
        if in_target and p.side in ("target", "both"):
            tgt.append((target_touch(p.entity), (stamp, uuid_of(setup, p.entity, p.legacy_id))))
    for entity, created in planted.created.items():
        tgt.extend((target_touch(entity), (stamp, uuid)) for uuid in created)
    run_sql(url, src)
    run_target(setup, tgt)


def cursor_config() -> str:
    """Every demo entity with its ``updated_at`` cursor on both sides."""
    return "\n".join(
        f'[entities.{e}]\nupdated_at = "updated_at"\ntarget_updated_at = "updated_at"'
        for e in DEMO_ENTITIES
    )
