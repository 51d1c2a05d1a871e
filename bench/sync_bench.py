"""A bidirectional sync run after 1,000 source changes and 1,000 target changes, timed.

    .venv/bin/python bench/sync_bench.py [--scale 1000] [--sources mysql,postgresql]
                                         [--changes 1000] [--seed 11]

For each source (MariaDB/MySQL at ISTHMUS_BENCH_MYSQL, PostgreSQL at ISTHMUS_BENCH_PG):

1. a working copy of the cached legacy database (diff_bench's, ``updated_at`` indexed; a
   PostgreSQL source gets a key sequence on ``products`` as a legacy application would have);
2. migrated by the CLI into a fresh target ``isthmus_bench_synctgt_<source>_<scale>`` with
   ``updated_at`` cursors on every entity;
3. a bidirectional ``manual_sync`` job (conflict rule source_wins), run once: there are no
   cursor marks yet, so this run compares whole tables (timed, reported apart);
4. ``--changes`` changes in the source and as many in the target, on rows of their own:
   80 % updates spread over patients, orders and products (with ``updated_at`` moved), 10 %
   inserts and 10 % deletes of products;
5. ``isthmus jobs run`` timed (wall clock, CLI start-up included): target < 5 s; every change
   must be applied (records_synced = 2 × changes, none failed);
6. then ``isthmus diff``: no difference may remain, and a second run of the job must apply
   nothing (no echo).

Results go to bench/out/sync_<source>_<scale>.json. Exit 1 when a check fails.
"""

# ruff: noqa: S608  (SQL from the demo's own table and column names and integer keys only)
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import psycopg  # noqa: E402

import isthmus  # noqa: E402,F401  (before psycopg: see mysql_driver.preload_c_extension)
from diff_bench import OUT, migrate, run, working_copy, write_config  # noqa: E402
from diff_plant import SourceDb  # noqa: E402
from isthmus.demo import expected_counts  # noqa: E402
from migrate_bench import ISTHMUS, fresh_pg, source_url  # noqa: E402

UPDATED = {"patients": "first_name", "orders": "order_no", "products": "name"}


def job_run(config: Path) -> tuple[float, dict[str, Any]]:
    seconds, _, out, _ = run([ISTHMUS, "--config", str(config), "--json", "jobs", "run", "bench"])
    return seconds, json.loads(out)


def give_products_a_sequence(source: str) -> None:
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS products_id_seq OWNED BY products.id")
        conn.execute("SELECT setval('products_id_seq', (SELECT max(id) FROM products))")
        conn.execute("ALTER TABLE products ALTER COLUMN id SET DEFAULT nextval('products_id_seq')")


def pick(rng: random.Random, ids: list[int], n: int, taken: set[int]) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        i = ids[rng.randrange(len(ids))]
        if i not in taken:
            taken.add(i)
            out.append(i)
    return out


def plant(source: str, target: str, n: int, seed: int) -> dict[str, int]:
    """``n`` changes on each side, on rows of their own; returns what was done."""
    rng = random.Random(seed)
    src = SourceDb(source)
    done = {"source": 0, "target": 0}
    try:
        ids = {t: [int(r[0]) for r in src.rows(f"SELECT id FROM {t}")] for t in UPDATED}
        # products with no children: deletes never break a foreign key
        taken: dict[str, set[int]] = {t: set() for t in UPDATED}
        updates, inserts, deletes = int(n * 0.8), n // 10, n - int(n * 0.8) - n // 10
        per_table = [updates // 3, updates // 3, updates - 2 * (updates // 3)]
        q = "`" if src.dialect == "mysql" else '"'
        for table, count in zip(UPDATED, per_table, strict=True):
            column = UPDATED[table]
            for key in pick(rng, ids[table], count, taken[table]):
                src.execute(
                    f"UPDATE {q}{table}{q} SET {q}{column}{q} = %s, updated_at = {src.now}"
                    f" WHERE id = %s",
                    (f"source change {key}", key),
                )
                done["source"] += 1
        cols = [c for c in src.columns("products") if c != "id"]
        listed = ", ".join(f"{q}{c}{q}" for c in cols)
        for key in pick(rng, ids["products"], inserts, taken["products"]):
            src.execute(
                f"INSERT INTO products ({listed}) SELECT {listed} FROM products WHERE id = %s",
                (key,),
            )
            done["source"] += 1
        for key in pick(rng, ids["products"], deletes, taken["products"]):
            src.execute("DELETE FROM products WHERE id = %s", (key,))
            done["source"] += 1
        src.commit()
        with psycopg.connect(target) as conn:
            for table, count in zip(UPDATED, per_table, strict=True):
                column = UPDATED[table]
                keys = pick(rng, ids[table], count, taken[table])
                conn.execute(
                    f'UPDATE public."{table}" AS t SET "{column}" = %s || m.legacy_id,'
                    " updated_at = now() FROM isthmus.legacy_id_mappings m"
                    " WHERE m.entity_type = %s AND m.legacy_id = ANY(%s) AND t.id = m.uuid_id",
                    ("target change ", table, keys),
                )
                done["target"] += len(keys)
            keys = pick(rng, ids["products"], inserts, taken["products"])
            conn.execute(
                "INSERT INTO public.products SELECT (%s::uuid[])[i], order_id, sku, 'made in the"
                " target', quantity, unit_price, weight_g, now(), now() FROM ("
                " SELECT row_number() OVER () AS i, p.* FROM public.products p"
                " JOIN isthmus.legacy_id_mappings m ON m.uuid_id = p.id"
                " AND m.entity_type = 'products' WHERE m.legacy_id = ANY(%s)) AS x",
                ([uuid.uuid4() for _ in keys], keys),
            )
            done["target"] += len(keys)
            keys = pick(rng, ids["products"], deletes, taken["products"])
            conn.execute(
                "DELETE FROM public.products p USING isthmus.legacy_id_mappings m"
                " WHERE m.entity_type = 'products' AND m.legacy_id = ANY(%s) AND p.id = m.uuid_id",
                (keys,),
            )
            done["target"] += len(keys)
    finally:
        src.close()
    return done


def bench_source(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    scale, n = args.scale, args.changes
    rows = sum(expected_counts(scale).values())
    print(f"\n== {dialect} → PostgreSQL, {rows:,} rows, {n:,} changes on each side ==", flush=True)
    result: dict[str, Any] = {"source": dialect, "scale": scale, "rows": rows, "changes": n}
    source = working_copy(dialect, source_url(dialect, scale), scale)
    if dialect == "postgresql":
        give_products_a_sequence(source)
    target = fresh_pg(f"isthmus_bench_synctgt_{dialect}_{scale}")
    OUT.mkdir(exist_ok=True)
    config = OUT / f"sync_{dialect}_{scale}.toml"
    write_config(config, source, target)
    result["migrate_seconds"] = migrate(config, target)
    print(f"   migrated: {result['migrate_seconds']:.1f} s  (config {config})", flush=True)
    base = [ISTHMUS, "--config", str(config)]
    run([*base, "jobs", "create", "bench", "--type", "manual_sync", "--direction",
         "bidirectional", "--conflict", "source_wins"])  # fmt: skip
    first, doc = job_run(config)
    result["first_run"] = {"seconds": first, "records_synced": doc["records_synced"]}
    print(f"   first run (no cursor marks yet, whole tables): {first:.2f} s", flush=True)

    planted = plant(source, target, n, args.seed)
    print(f"   planted {planted['source']:,} source and {planted['target']:,} target changes")
    seconds, doc = job_run(config)
    methods = sorted({e["method"] for e in doc["entities"]})
    print(
        f"   sync run: {seconds:.2f} s wall ({doc['seconds']:.2f} s inside), methods {methods},"
        f" {doc['records_synced']:,} applied, {doc['records_failed']:,} failed",
        flush=True,
    )
    _, code, out, _ = run([*base, "--json", "diff"], ok=(0, 1))
    left = json.loads(out)["total_differences"]
    again, doc2 = job_run(config)
    checks = {
        "every change applied": doc["records_synced"] == planted["source"] + planted["target"],
        "nothing failed": doc["records_failed"] == 0,
        "no difference left": code == 0 and left == 0,
        "no echo (second run applies nothing)": doc2["records_synced"] == 0,
        "sync run under 5 s": seconds < 5,
    }
    result.update(
        {
            "sync_seconds": seconds,
            "sync_inside_seconds": doc["seconds"],
            "methods": methods,
            "records_synced": doc["records_synced"],
            "left_after": left,
            "second_run_seconds": again,
            "checks": checks,
            "load_average": os.getloadavg(),
        }
    )
    for name, ok in checks.items():
        print(f"   {'ok  ' if ok else 'FAIL'} {name}")
    (OUT / f"sync_{dialect}_{scale}.json").write_text(
        json.dumps(result, indent=2, default=str), encoding="utf-8"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--sources", default="mysql,postgresql")
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    results = [bench_source(d, args) for d in args.sources.split(",")]
    print("\n== summary ==")
    for r in results:
        print(
            f"   {r['source']:<10} {r['rows']:>10,} rows: sync after {r['changes']:,}+"
            f"{r['changes']:,} changes {r['sync_seconds']:.2f} s (target < 5 s)"
        )
    sys.exit(0 if all(all(r["checks"].values()) for r in results) else 1)


if __name__ == "__main__":
    main()
