"""The ID map at the specification's scale: import, export, bulk resolve, cache memory.

    .venv/bin/python bench/mapping_bench.py [--rows 1200000] [--keep-csv]

Against the PostgreSQL at ``ISTHMUS_BENCH_PG`` (default postgres@127.0.0.1:5432), in a
database of its own that is dropped afterwards: writes a CSV of N mappings (default
1,200,000) spread over the six demo entities, then times ``import_mappings`` (and the
idempotent re-import), ``export_mappings``, ``resolve`` of 100k legacy IDs, ``assign`` of new
IDs in 10k batches, the uuid7 generator, and the MappingCache (tracemalloc bytes for N
entries, bulk ``get_many`` of 10k). Prints one table.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import psycopg
import sqlalchemy as sa
from psycopg import sql

from isthmus import mapping
from isthmus.dialects.pgconn import conninfo, sqlalchemy_url
from isthmus.mapping_cache import MappingCache
from isthmus.mapping_io import export_mappings, import_mappings
from isthmus.state.tables import build_metadata
from isthmus.urls import DatabaseURL, parse_url
from isthmus.uuids import uuid4_many, uuid7_many

PG_SERVER = os.environ.get("ISTHMUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SCHEMA = "isthmus"
# offices → profiles → doctors → patients → orders → products, children outnumbering parents
SHARES = {
    "offices": 0.005,
    "profiles": 0.025,
    "doctors": 0.07,
    "patients": 0.20,
    "orders": 0.30,
    "products": 0.40,
}
T = TypeVar("T")


def entity_sizes(rows: int) -> dict[str, int]:
    sizes = {entity: int(rows * share) for entity, share in SHARES.items()}
    sizes["products"] += rows - sum(sizes.values())
    return sizes


def write_csv(path: Path, sizes: dict[str, int]) -> None:
    """Legacy IDs with gaps (about 3% deleted rows), existing UUIDs random (uuid4)."""
    rng = random.Random(2)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("entity_type,legacy_id,uuid_id\n")
        for entity, n in sizes.items():
            ids = [i for i in range(1, int(n * 1.04) + 10) if rng.random() > 0.03][:n]
            out.writelines(
                f"{entity},{i},{u}\n" for i, u in zip(ids, uuid4_many(len(ids)), strict=True)
            )


def timed(label: str, results: list[tuple[str, str]], fn: Callable[[], T], unit: str = "") -> T:
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    results.append((label, f"{seconds:8.2f} s{unit and '  ' + unit}"))
    return value


def create_database(admin: str) -> DatabaseURL:
    name = f"isthmus_mapping_bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = parse_url(admin).with_database(name)
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{SCHEMA}"'))
        build_metadata(SCHEMA).create_all(engine)
    finally:
        engine.dispose()
    return url


def drop_database(admin: str, url: DatabaseURL) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(url.database or "")
            )
        )


def bench_database(url: DatabaseURL, csv_path: Path, rows: int, out: list[tuple[str, str]]) -> None:
    result = timed(
        f"import {rows:,} mappings (binary COPY)",
        out,
        lambda: import_mappings(url, SCHEMA, csv_path),
    )
    out.append(("  rows/s", f"{result.lines / result.seconds:10,.0f}"))
    again = timed(
        "re-import same file (no-op)", out, lambda: import_mappings(url, SCHEMA, csv_path)
    )
    assert again.new == 0 and again.already_present == rows, again
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(mapping.table(SCHEMA)))
        conn.commit()
        exported = Path(str(csv_path) + ".export")
        count = timed(
            "export all (COPY TO STDOUT)", out, lambda: export_mappings(conn, SCHEMA, exported)
        )
        assert count == rows
        exported.unlink()
        ids = list(range(1, int(entity_sizes(rows)["products"] * 1.03)))
        random.Random(3).shuffle(ids)
        wanted = ids[:100_000]
        found = timed(
            "resolve 100k random products ids",
            out,
            lambda: mapping.resolve(conn, SCHEMA, "products", wanted),
        )
        out.append(("  found", f"{len(found):10,}"))
        cache = MappingCache()
        timed(
            "cache.resolve_many 100k, cold",
            out,
            lambda: cache.resolve_many(conn, SCHEMA, "products", wanted),
        )
        timed(
            "cache.resolve_many 100k, warm",
            out,
            lambda: cache.resolve_many(conn, SCHEMA, "products", wanted),
        )
        conn.rollback()
        bench_assign(conn, out)


def bench_assign(conn: psycopg.Connection[Any], out: list[tuple[str, str]]) -> None:
    generator = mapping.make_generator("uuid7")
    batches, size = 20, 10_000

    def run() -> None:
        for b in range(batches):
            ids = list(range(b * size + 1, (b + 1) * size + 1))
            mapping.assign(
                conn,
                SCHEMA,
                "bench_new",
                ids,
                generator=generator,
                checksums=["0" * 32] * size,
                batch_id=f"bench:{b}",
            )
            conn.commit()

    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    out.append((f"assign {batches * size:,} new ids, 10k/batch+commit", f"{seconds:8.2f} s"))
    out.append(("  rows/s", f"{batches * size / seconds:10,.0f}"))
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    out.append(("assign again (all mapped)", f"{seconds:8.2f} s"))


def bench_memory(rows: int, out: list[tuple[str, str]]) -> None:
    generated = timed("uuid7 generate 1,000,000", out, lambda: uuid7_many(1_000_000))
    del generated
    sizes = entity_sizes(rows)
    values = {entity: uuid4_many(n) for entity, n in sizes.items()}
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cache = MappingCache()
    for entity, n in sizes.items():
        uuids = values[entity]
        for first in range(0, n, 10_000):
            chunk = range(first + 1, min(first + 10_001, n + 1))
            cache.put_many(entity, zip(chunk, uuids[first : first + 10_000], strict=False))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out.append((f"cache memory, {len(cache):,} mappings", f"{(current - base) / 1e6:8.1f} MB"))
    out.append(("  peak while loading", f"{(peak - base) / 1e6:8.1f} MB"))
    sample = values[max(sizes, key=lambda e: sizes[e])][:200_000]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    copy: dict[int, UUID] = {i + 10**9: UUID(int=u.int) for i, u in enumerate(sample)}
    per_entry = (tracemalloc.get_traced_memory()[0] - base) / len(copy)
    tracemalloc.stop()
    del copy
    out.append(
        (f"  (dict of int → UUID: {per_entry:.0f} B/entry)", f"{per_entry * rows / 1e6:8.1f} MB")
    )
    big = max(sizes, key=lambda e: sizes[e])
    rng = random.Random(4)
    batches = [[rng.randint(1, sizes[big]) for _ in range(10_000)] for _ in range(20)]
    start = time.perf_counter()
    for batch in batches:
        _found, missing = cache.get_many(big, batch)
        assert not missing
    seconds = (time.perf_counter() - start) / len(batches)
    out.append(("cache.get_many, batch of 10k random ids", f"{seconds * 1000:8.1f} ms"))
    out.append(("  lookups/s", f"{10_000 / seconds:10,.0f}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_200_000)
    parser.add_argument("--keep-csv", action="store_true", help="leave the generated CSV in /tmp")
    args = parser.parse_args()
    out: list[tuple[str, str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="isthmus_mapping_bench_"))
    csv_path = workdir / "mappings.csv"
    timed(
        f"write CSV of {args.rows:,} mappings",
        out,
        lambda: write_csv(csv_path, entity_sizes(args.rows)),
    )
    out.append(("  file size", f"{csv_path.stat().st_size / 1e6:8.1f} MB"))
    url = create_database(PG_SERVER)
    try:
        bench_database(url, csv_path, args.rows, out)
    finally:
        drop_database(PG_SERVER, url)
        if not args.keep_csv:
            csv_path.unlink(missing_ok=True)
            workdir.rmdir()
    bench_memory(args.rows, out)
    width = max(len(label) for label, _ in out)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for label, value in out:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
