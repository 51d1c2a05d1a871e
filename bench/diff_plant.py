"""Planting known differences between a legacy source and its migrated target, for diff_bench.

A ``Planter`` samples candidate rows of the big tables (patients, orders, products) once, in
the source, ordered by ``md5(concat(id, ':', seed))`` so MariaDB and PostgreSQL pick the same
rows, and hands out disjoint rows to each kind of change. Each change is one SQL statement per
group of rows (no table is read into Python), sets ``updated_at`` to now (UTC) on the side it
touches, and is recorded with the classification ``isthmus diff`` must give it:

    kind            change                                              expected
    source_insert   new legacy row (copy of a row, fresh id above max)  missing_records/source
    source_update   a value column (text, decimal, int, float, date,    conflicted_records/source
                    timestamp, enum, NULL<->value)
    source_fk       the FK re-pointed to another existing parent        conflicted_records/source
    source_delete   a product, or an order/patient with its children    deleted_records/source
    target_insert   new target row (fresh uuid, valid FK uuids, no map) deleted_records/created_in_target
    target_update   a value column                                      conflicted_records/target
    target_delete   a product, or an order/patient with its children    missing_records/target
    both_update     both sides change the same row differently          conflicted_records/both

Truth entries: ``{"phase", "kind", "entity", "id" (legacy id, or the target uuid of a
target_insert), "expect": [comparison_type, side], "column"}``.
"""

# ruff: noqa: S608  (SQL from the demo's own table and column names and integer keys only)
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from isthmus.demo_schema import TABLES
from isthmus.demo_writers import mysql_connect
from isthmus.urls import parse_url

BIG = ("patients", "orders", "products")
PARENT = {t.name: (t.ref.name, t.ref.parent) for t in TABLES if t.ref is not None}
CHILD = {parent: (child, col) for child, (col, parent) in PARENT.items()}  # one child per table

EXPECT = {
    "source_insert": ("missing_records", "source"),
    "source_update": ("conflicted_records", "source"),
    "source_fk": ("conflicted_records", "source"),
    "source_delete": ("deleted_records", "source"),
    "target_insert": ("deleted_records", "created_in_target"),
    "target_update": ("conflicted_records", "target"),
    "target_delete": ("missing_records", "target"),
    "both_update": ("conflicted_records", "both"),
}
KINDS = tuple(EXPECT)

# Value columns changed by the update kinds, cycling per table: every column type of the demo.
MUTATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "patients": (
        ("first_name", "text"),
        ("balance", "decimal"),
        ("birth_date", "date"),
        ("email", "null_toggle"),
        ("notes", "null_toggle"),
        ("created_at", "ts"),
        ("phone", "text"),
    ),
    "orders": (
        ("status", "enum"),
        ("total", "decimal"),
        ("placed_at", "ts_nullable"),
        ("order_no", "text"),
        ("created_at", "ts"),
    ),
    "products": (
        ("unit_price", "decimal"),
        ("weight_g", "float"),
        ("name", "text"),
        ("quantity", "int"),
        ("sku", "text"),
    ),
}
_ENUM_CYCLE = ("draft", "placed", "shipped", "delivered", "cancelled")


def mutation_sql(column: str, kind: str, variant: int) -> str:
    """An expression giving ``column`` a new value, the same SQL for MariaDB and PostgreSQL.

    ``variant`` 1 and 2 give different new values (the source and the target side of a
    both_update), each different from the old value."""
    v = variant
    if kind == "text":
        return f"CONCAT({column}, ' ✎{v}')"
    if kind == "decimal":
        return f"{column} + {1.25 * v:.2f}"
    if kind == "int":
        return f"{column} + {v}"
    if kind == "float":
        return f"CASE WHEN {column} IS NULL THEN {100.5 * v} ELSE {column} * 2 + {0.5 * v} END"
    if kind == "date":
        return (
            f"CASE WHEN {column} IS NULL THEN DATE '200{v}-02-0{v}'"
            f" ELSE {column} + INTERVAL '{v}' DAY END"
        )
    if kind == "ts":
        return f"{column} + INTERVAL '{v}' HOUR"
    if kind == "ts_nullable":
        return (
            f"CASE WHEN {column} IS NULL THEN TIMESTAMP '2020-01-0{v} 10:00:00'"
            f" ELSE {column} + INTERVAL '{v}' HOUR END"
        )
    if kind == "null_toggle":  # value -> NULL (variant 1) or changed, NULL -> value
        other = "NULL" if v == 1 else f"CONCAT({column}, ' ✎{v}')"
        return f"CASE WHEN {column} IS NULL THEN 'was NULL ✎{v}' ELSE {other} END"
    if kind == "enum":
        cases = " ".join(
            f"WHEN '{s}' THEN '{_ENUM_CYCLE[(i + v) % len(_ENUM_CYCLE)]}'"
            for i, s in enumerate(_ENUM_CYCLE)
        )
        return f"CASE {column} {cases} END"
    raise ValueError(kind)


def ids_sql(ids: Iterable[int]) -> str:
    return ", ".join(str(int(i)) for i in ids)


def chunks(items: Sequence[Any], size: int = 1000) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SourceDb:
    """A small DB-API front over the legacy source (MariaDB/MySQL or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = parse_url(url)
        self.dialect = self.url.dialect
        if self.dialect == "mysql":
            self.conn = mysql_connect(self.url)
            self.now = "UTC_TIMESTAMP(6)"
        else:
            self.conn = psycopg.connect(url)
            self.now = "(now() AT TIME ZONE 'UTC')"

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        out = list(cur.fetchall())
        cur.close()
        return out

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        count = cur.rowcount
        cur.close()
        return int(count)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        cur.executemany(sql, params)
        cur.close()

    def columns(self, table: str) -> list[str]:
        if self.dialect == "mysql":
            sql = (
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position"
            )
        else:
            sql = (
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position"
            )
        return [str(r[0]) for r in self.rows(sql, (table,))]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


@dataclass
class Planter:
    """Plants changes in ``source`` (legacy) and ``target`` (PostgreSQL, UUID keys, mapping
    table in ``state``), never touching a row twice, and records what it did."""

    source_url: str
    target_url: str
    seed: int = 7
    state: str = "isthmus"
    target_schema: str = "public"
    truth: list[dict[str, Any]] = field(default_factory=list)
    pools: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (id, fk)
    used: dict[str, set[int]] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.src = SourceDb(self.source_url)
        self.tgt = psycopg.connect(self.target_url)

    def close(self) -> None:
        self.src.close()
        self.tgt.close()

    # -- candidates ---------------------------------------------------------------------------

    def sample(self, per_table: int) -> None:
        """Candidate rows of each big table (and doctors, as new parents), in a stable
        pseudo-random order that both source dialects agree on."""
        for table in ("doctors", *BIG):
            fk = PARENT[table][0]
            rows = self.src.rows(
                f"SELECT id, {fk} FROM {table} ORDER BY md5(concat(id, ':', '{self.seed}'))"
                f" LIMIT {int(per_table)}"
            )
            self.pools[table] = [(int(i), int(f)) for i, f in rows]
            self.used[table] = set()
            self.next_id[table] = int(self.src.rows(f"SELECT max(id) FROM {table}")[0][0]) + 1

    def take(self, table: str, n: int) -> list[tuple[int, int]]:
        """``n`` untouched candidate rows of ``table``, marked as used."""
        pool, used = self.pools[table], self.used[table]
        out: list[tuple[int, int]] = []
        while len(out) < n:
            if not pool:
                raise SystemExit(f"diff_plant: ran out of candidate rows of {table}")
            row = pool.pop()
            if row[0] not in used:
                used.add(row[0])
                out.append(row)
        return out

    def parent_for(self, table: str, current: int) -> int:
        """An existing, never deleted parent of ``table`` other than ``current``."""
        parent = str(PARENT[table][1])
        pool = self.pools[parent]
        while True:
            pid = pool[self.rng.randrange(len(pool) // 2)][0]  # from the half taken last
            if pid != current and pid not in self.used[parent]:
                return pid

    def record(
        self, phase: int, kind: str, entity: str, key: Any, column: str | None = None
    ) -> None:
        ctype, side = EXPECT[kind]
        self.truth.append(
            {
                "phase": phase,
                "kind": kind,
                "entity": entity,
                "id": key,
                "expect": [ctype, side],
                "column": column,
            }
        )

    # -- target helpers -----------------------------------------------------------------------

    def _uuids(self, entity: str, legacy_ids: Sequence[int]) -> list[Any]:
        rows = self.tgt.execute(
            f"SELECT uuid_id FROM {self.state}.legacy_id_mappings"
            " WHERE entity_type = %s AND legacy_id = ANY(%s)",
            (entity, list(legacy_ids)),
        ).fetchall()
        if len(rows) != len(legacy_ids):
            raise SystemExit(
                f"diff_plant: {len(legacy_ids) - len(rows)} of {len(legacy_ids)} {entity} rows have no mapping"
            )
        return [r[0] for r in rows]

    def _target_columns(self, table: str) -> list[str]:
        return [
            str(r[0])
            for r in self.tgt.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (self.target_schema, table),
            ).fetchall()
        ]

    # -- the kinds ----------------------------------------------------------------------------

    def source_insert(self, phase: int, table: str, n: int) -> None:
        cols = [c for c in self.src.columns(table) if c not in ("id", "created_at", "updated_at")]
        listed = ", ".join(cols)
        sql = (
            f"INSERT INTO {table} (id, {listed}, created_at, updated_at)"
            f" SELECT %s, {listed}, {self.src.now}, {self.src.now} FROM {table} WHERE id = %s"
        )
        params = []
        for template, _ in self.take(table, n):
            new = self.next_id[table]
            self.next_id[table] += 1
            params.append((new, template))
            self.record(phase, "source_insert", table, new)
        self.src.executemany(sql, params)

    def _mutation_groups(
        self, table: str, rows: list[tuple[int, int]], offset: int = 0
    ) -> dict[tuple[str, str], list[int]]:
        muts = MUTATIONS[table]
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (key, _) in enumerate(rows):
            groups.setdefault(muts[(i + offset) % len(muts)], []).append(key)
        return groups

    def _source_update(self, groups: dict[tuple[str, str], list[int]], table: str, v: int) -> None:
        for (column, kind), keys in groups.items():
            self.src.execute(
                f"UPDATE {table} SET {column} = {mutation_sql(column, kind, v)},"
                f" updated_at = {self.src.now} WHERE id IN ({ids_sql(keys)})"
            )

    def _target_update(self, groups: dict[tuple[str, str], list[int]], table: str, v: int) -> None:
        for (column, kind), keys in groups.items():
            expr = mutation_sql(column, kind, v)
            self.tgt.execute(
                f"UPDATE {self.target_schema}.{table} SET {column} = {expr}, updated_at = now()"
                f" WHERE id = ANY(%s)",
                (self._uuids(table, keys),),
            )

    def source_update(self, phase: int, table: str, n: int) -> None:
        rows = self.take(table, n)
        groups = self._mutation_groups(table, rows)
        self._source_update(groups, table, 1)
        for (column, _), keys in groups.items():
            for key in keys:
                self.record(phase, "source_update", table, key, column)

    def target_update(self, phase: int, table: str, n: int) -> None:
        rows = self.take(table, n)
        groups = self._mutation_groups(table, rows, offset=1)
        self._target_update(groups, table, 2)
        for (column, _), keys in groups.items():
            for key in keys:
                self.record(phase, "target_update", table, key, column)

    def both_update(self, phase: int, table: str, n: int) -> None:
        """Even rows: the same column, different values; odd rows: different columns."""
        rows = self.take(table, n)
        muts = MUTATIONS[table]
        src_groups: dict[tuple[str, str], list[int]] = {}
        tgt_groups: dict[tuple[str, str], list[int]] = {}
        for i, (key, _) in enumerate(rows):
            m = muts[(i // 2) % len(muts)]
            t = m if i % 2 == 0 else muts[((i // 2) + 1) % len(muts)]
            src_groups.setdefault(m, []).append(key)
            tgt_groups.setdefault(t, []).append(key)
            self.record(phase, "both_update", table, key, m[0] if m == t else f"{m[0]}|{t[0]}")
        self._source_update(src_groups, table, 1)
        self._target_update(tgt_groups, table, 2)

    def source_fk(self, phase: int, table: str, n: int) -> None:
        fk = PARENT[table][0]
        params = []
        for key, current in self.take(table, n):
            params.append((self.parent_for(table, current), key))
            self.record(phase, "source_fk", table, key, fk)
        self.src.executemany(
            f"UPDATE {table} SET {fk} = %s, updated_at = {self.src.now} WHERE id = %s", params
        )

    def target_insert(self, phase: int, table: str, n: int) -> None:
        cols = [
            c for c in self._target_columns(table) if c not in ("id", "created_at", "updated_at")
        ]
        listed = ", ".join(cols)
        templates = self._uuids(table, [key for key, _ in self.take(table, n)])
        rows = self.tgt.execute(
            f"INSERT INTO {self.target_schema}.{table} (id, {listed}, created_at, updated_at)"
            f" SELECT gen_random_uuid(), {listed}, now(), now()"
            f" FROM {self.target_schema}.{table} WHERE id = ANY(%s) RETURNING id",
            (templates,),
        ).fetchall()
        for (uuid,) in rows:
            self.record(phase, "target_insert", table, str(uuid))

    def _subtree(self, table: str, key: int) -> dict[str, list[int]]:
        """``table``'s row ``key`` and its descendants, children first (as in the source)."""
        out: dict[str, list[int]] = {table: [key]}
        keys, parent = [key], table
        while parent in CHILD and keys:
            child, col = CHILD[parent]
            keys = [
                int(r[0])
                for r in self.src.rows(f"SELECT id FROM {child} WHERE {col} IN ({ids_sql(keys)})")
            ]
            out[child] = keys
            parent = child
        return out

    def deletes(
        self, phase: int, side: str, total: int, shares: Sequence[tuple[str, float]]
    ) -> None:
        """``total`` deleted rows on ``side``: subtrees rooted in each (table, share of the
        total) first, then single products up to ``total``."""
        chosen: dict[str, list[int]] = {t: [] for t in BIG}
        count, quota = 0, 0.0
        for root_table, share in shares:
            quota += share * total
            pool = self.pools[root_table]
            while count < quota:
                key = None
                while key is None:
                    key = pool.pop()[0]
                    if key in self.used[root_table]:
                        key = None
                tree = self._subtree(root_table, key)
                size = sum(len(v) for v in tree.values())
                if count + size > total or any(
                    k in self.used[t] for t, keys in tree.items() for k in keys
                ):
                    continue  # too big, or touches a row already given out
                for t, keys in tree.items():
                    self.used[t].update(keys)
                    chosen[t].extend(keys)
                count += size
        chosen["products"].extend(k for k, _ in self.take("products", total - count))
        kind = f"{side}_delete"
        for table in reversed(BIG):  # children first
            keys = chosen[table]
            if not keys:
                continue
            for part in chunks(keys):
                if side == "source":
                    self.src.execute(f"DELETE FROM {table} WHERE id IN ({ids_sql(part)})")
                else:
                    self.tgt.execute(
                        f"DELETE FROM {self.target_schema}.{table} WHERE id = ANY(%s)",
                        (self._uuids(table, part),),
                    )
            for key in keys:
                self.record(phase, kind, table, key)

    # -- phases -------------------------------------------------------------------------------

    def plant(self, phase: int, per_kind: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply ``per_kind[kind][table]`` changes (deletes: ``per_kind[kind]["total"]`` and
        ``per_kind[kind]["roots"]`` shares), commit both sides, return this phase's truth."""
        start = len(self.truth)
        for kind in ("source_delete", "target_delete"):  # first: they take whole subtrees
            spec = per_kind.get(kind)
            if spec:
                self.deletes(phase, kind.split("_")[0], spec["total"], spec.get("roots", ()))
        for kind in KINDS:
            if kind.endswith("_delete") or kind not in per_kind:
                continue
            for table, n in per_kind[kind].items():
                if n:
                    getattr(self, kind)(phase, table, n)
        self.src.commit()
        self.tgt.commit()
        return self.truth[start:]


def split(n: int, parts: int = len(BIG)) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def phase_one(n: int) -> dict[str, Any]:
    """``n`` changes of every kind, spread over patients, orders and products."""
    spec: dict[str, Any] = {}
    for kind in KINDS:
        if kind.endswith("_delete"):
            spec[kind] = {"total": n, "roots": (("patients", 1 / 3), ("orders", 1 / 3))}
        else:
            spec[kind] = dict(zip(BIG, split(n), strict=True))
    return spec


CURSOR_SHARES = {  # of the cursor phase's changes
    "source_update": 0.2,
    "target_update": 0.2,
    "both_update": 0.1,
    "source_fk": 0.1,
    "source_insert": 0.1,
    "target_insert": 0.1,
    "source_delete": 0.1,
    "target_delete": 0.1,
}


def phase_two(n: int) -> dict[str, Any]:
    """``n`` more changes of all kinds (deletes: single products)."""
    spec: dict[str, Any] = {}
    for kind, share in CURSOR_SHARES.items():
        k = round(n * share)
        spec[kind] = (
            {"total": k} if kind.endswith("_delete") else dict(zip(BIG, split(k), strict=True))
        )
    return spec


def needed_per_table(n_phase_one: int, n_phase_two: int) -> int:
    """Candidates to sample per table: every kind may take from each table, plus slack for
    subtrees that do not fit and for rows that are someone's new parent."""
    return 3 * (len(KINDS) * n_phase_one + n_phase_two) // len(BIG) + 2000
