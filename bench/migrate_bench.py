"""End-to-end migration throughput: isthmus vs pgloader vs a plain COPY, in one run.

    .venv/bin/python bench/migrate_bench.py [--scale 1000] [--sources mysql,postgresql]

For each source (MariaDB/MySQL at ISTHMUS_BENCH_MYSQL, PostgreSQL at ISTHMUS_BENCH_PG) it
generates the demo dental database (1,209 rows per unit of scale; 1000 → 1.2M rows; kept
between runs as ``isthmus_bench_src_<scale>``), then, each into a fresh PostgreSQL database:

1. isthmus: ``init``, ``schema --apply``, ``migrate`` (UUIDs, FK translation, mappings,
   checkpoints, deferred keys/indexes/FKs), timed end to end as the CLI, peak RSS measured;
2. pgloader (Debian's package) moving the same tables;
3. the limit: ``COPY ... FROM`` files holding the rows isthmus wrote (already transformed)
   into the same target tables created the same way, then the same keys/indexes/FKs.

It prints rows/s of each and the ratios isthmus/pgloader and isthmus/COPY. Rows are checked:
every run must leave as many target rows as the source has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import psycopg  # noqa: E402

import isthmus  # noqa: E402,F401  (before psycopg: see mysql_driver.preload_c_extension)
from isthmus.demo import DEMO_TABLES, expected_counts, generate_legacy  # noqa: E402
from isthmus.demo_writers import mysql_connect  # noqa: E402
from isthmus.urls import parse_url  # noqa: E402

PG = os.environ.get("ISTHMUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL = os.environ.get("ISTHMUS_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/mysql")
ISTHMUS = str(Path(sys.executable).parent / "isthmus")


def pg_admin(sql: str) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql)


def fresh_pg(name: str) -> str:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{name}"')
    return str(parse_url(PG).with_database(name).raw)


def source_url(dialect: str, scale: int) -> str:
    """The benchmark's legacy database at ``scale``, generated when missing."""
    name = f"isthmus_bench_src_{scale}"
    if dialect == "postgresql":
        url = parse_url(PG).with_database(name)
        with psycopg.connect(PG, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        if not exists or not _complete(url.raw, scale):
            fresh_pg(name)
            print(f"generating {name} in PostgreSQL …", flush=True)
            generate_legacy(url, scale=scale, replace=True)
        return str(url.raw)
    server = parse_url(MYSQL)
    conn = mysql_connect(server)
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
    exists = cur.fetchone()
    if not exists:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    url = server.with_database(name)
    if not exists or not _complete_mysql(url, scale):
        print(f"generating {name} in MariaDB …", flush=True)
        generate_legacy(url, scale=scale, replace=True)
    return str(url.raw)


def _complete(raw: str, scale: int) -> bool:
    try:
        with psycopg.connect(raw) as conn:
            row = conn.execute("SELECT count(*) FROM products").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0] == expected_counts(scale)["products"])


def _complete_mysql(url: Any, scale: int) -> bool:
    conn = mysql_connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM products")
        row = cur.fetchone()
        return bool(row and row[0] == expected_counts(scale)["products"])
    except Exception:
        return False
    finally:
        conn.close()


def run_measured(argv: list[str], **kwargs: Any) -> tuple[float, int, str]:
    """(seconds, peak RSS in MB, stdout) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} … failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss // 1024, out


def target_rows(url: str, schema: str = "public") -> int:
    with psycopg.connect(url) as conn:
        return sum(
            int(conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()[0])  # type: ignore[index]  # noqa: S608
            for t in DEMO_TABLES
        )


def bench_isthmus(src: str, scale: int, workdir: Path) -> dict[str, Any]:
    target = fresh_pg(f"isthmus_bench_tgt_{scale}")
    config = workdir / "isthmus.toml"
    config.write_text(
        f'[source]\nurl = "{src}"\n[target]\nurl = "{target}"\n[migration]\nbatch_size = 10000\n',
        encoding="utf-8",
    )
    base = [ISTHMUS, "--config", str(config)]
    run_measured([*base, "init"])
    run_measured([*base, "schema", "--apply"])
    seconds, rss, out = run_measured([*base, "--json", "migrate"])
    result = json.loads(out)
    rows = target_rows(target)
    return {"seconds": seconds, "rss_mb": rss, "rows": rows, "target": target, "result": result}


def bench_pgloader(src: str, scale: int, dialect: str) -> dict[str, Any] | None:
    if shutil.which("pgloader") is None:
        print("pgloader is not installed (apt-get install pgloader): skipped", flush=True)
        return None
    target = fresh_pg(f"isthmus_bench_pgl_{scale}")
    into = target.replace("postgresql://", "pgsql://", 1)
    if dialect == "mysql":
        argv = ["pgloader", "--no-ssl-cert-verification", src, into]
    else:
        # pgloader 3.6 writes "timestamp without time zone(6)", which PostgreSQL refuses:
        # the CAST drops the typemod (the values keep their microseconds).
        load = Path(tempfile.mkdtemp()) / "pg.load"
        load.write_text(
            f"LOAD DATABASE FROM {src.replace('postgresql://', 'pgsql://', 1)} INTO {into}\n"
            ' CAST type "timestamp without time zone" to "timestamp" drop typemod;\n',
            encoding="utf-8",
        )
        argv = ["pgloader", "--no-ssl-cert-verification", str(load)]
    seconds, rss, _ = run_measured(argv)
    schema = "public"
    if dialect == "mysql":  # pgloader puts MySQL tables in a schema named after the database
        schema = parse_url(src).database or "public"
    return {"seconds": seconds, "rss_mb": rss, "rows": target_rows(target, schema)}


def bench_copy(isthmus_target: str, src: str, scale: int, workdir: Path) -> dict[str, Any]:
    """COPY the rows isthmus wrote (already transformed) into fresh copies of the same tables."""
    files = {}
    with psycopg.connect(isthmus_target) as conn:
        for table in [*DEMO_TABLES, "isthmus.legacy_id_mappings"]:
            path = workdir / f"{table}.copy"
            name = f'public."{table}"' if "." not in table else table
            with path.open("wb") as out, conn.cursor().copy(f"COPY {name} TO STDOUT") as copy:
                for chunk in copy:
                    out.write(chunk)
            files[table] = path
    target = fresh_pg(f"isthmus_bench_copy_{scale}")
    config = workdir / "copy.toml"
    config.write_text(f'[source]\nurl = "{src}"\n[target]\nurl = "{target}"\n', encoding="utf-8")
    run_measured([ISTHMUS, "--config", str(config), "init"])
    run_measured([ISTHMUS, "--config", str(config), "schema", "--apply"])
    with psycopg.connect(target) as conn:
        pending = conn.execute(
            "SELECT statement FROM isthmus.pending_ddl ORDER BY"
            " array_position(ARRAY['primary_key','unique','index','foreign_key'], kind), id"
        ).fetchall()
    started = time.perf_counter()
    with psycopg.connect(target) as conn:
        conn.execute("SET synchronous_commit = off")
        for table in DEMO_TABLES:
            with (
                files[table].open("rb") as data,
                conn.cursor().copy(f'COPY public."{table}" FROM STDIN') as copy,
            ):
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
            conn.commit()
        copy_seconds = time.perf_counter() - started
        for (statement,) in pending:
            conn.execute(statement)
        conn.commit()
        seconds = time.perf_counter() - started
        # What any tool that also keeps the ID map must write besides: the mapping rows,
        # into the mapping table with its three unique indexes.
        started = time.perf_counter()
        with (
            files["isthmus.legacy_id_mappings"].open("rb") as data,
            conn.cursor().copy("COPY isthmus.legacy_id_mappings FROM STDIN") as copy,
        ):
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        mapping_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "copy_only_seconds": copy_seconds,
        "mapping_seconds": mapping_seconds,
        "rows": target_rows(target),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--sources", default="mysql,postgresql")
    parser.add_argument("--skip-pgloader", action="store_true")
    args = parser.parse_args()
    expected = sum(expected_counts(args.scale).values())
    for dialect in args.sources.split(","):
        src = source_url(dialect, args.scale)
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            print(f"\n== {dialect} → PostgreSQL, {expected:,} rows ==", flush=True)
            mine = bench_isthmus(src, args.scale, work)
            peer = None if args.skip_pgloader else bench_pgloader(src, args.scale, dialect)
            limit = bench_copy(mine["target"], src, args.scale, work)
        for name, res in (("isthmus", mine), ("pgloader", peer), ("COPY limit", limit)):
            if res is None:
                continue
            if res["rows"] != expected:
                raise SystemExit(f"{name}: {res['rows']:,} target rows, expected {expected:,}")
            extra = f", peak RSS {res['rss_mb']} MB" if "rss_mb" in res else ""
            print(
                f"{name:>10}: {res['seconds']:7.2f} s  {expected / res['seconds']:>10,.0f} rows/s{extra}",
                flush=True,
            )
        with_map = limit["seconds"] + limit["mapping_seconds"]
        print(
            f"{'+ mappings':>10}: {with_map:7.2f} s  {expected / with_map:>10,.0f} rows/s"
            f"  (the COPY limit plus a COPY of the {expected:,} mapping rows)"
        )
        print(f"   isthmus/COPY limit  = {limit['seconds'] / mine['seconds']:.2f}  (target ≥ 0.60)")
        print(f"   isthmus/(COPY limit + mappings) = {with_map / mine['seconds']:.2f}")
        if peer:
            print(
                f"   isthmus/pgloader    = {peer['seconds'] / mine['seconds']:.2f}  (target ≥ 1.50)"
            )
        entities = mine["result"]["entities"]
        print(
            "   per entity: "
            + ", ".join(f"{e['entity']} {e['rows_per_second']:,.0f}/s" for e in entities)
        )


if __name__ == "__main__":
    main()
