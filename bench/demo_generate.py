"""Time ``generate_legacy`` into a throw-away database of each kind, and its peak memory.

    .venv/bin/python bench/demo_generate.py [--scale 1000] [--only sqlite,postgresql,mysql]

Servers: ISTHMUS_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres) and
ISTHMUS_BENCH_MYSQL (default mysql://root@127.0.0.1:3306/mysql); each run creates a
database, fills it, prints the figures and drops it. Each dialect runs in its own process
so that peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

PG = os.environ.get("ISTHMUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL = os.environ.get("ISTHMUS_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/mysql")


def run_one(dialect: str, scale: int) -> dict[str, object]:
    from isthmus.demo import generate_legacy
    from isthmus.urls import parse_url

    name = f"isthmus_bench_{uuid.uuid4().hex[:8]}"
    scratch = tempfile.TemporaryDirectory()
    if dialect == "sqlite":
        url = parse_url(f"sqlite:///{scratch.name}/legacy.db")
        drop = scratch.cleanup
    elif dialect == "postgresql":
        import psycopg

        admin = PG
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = parse_url(admin).with_database(name)

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    else:
        from isthmus.demo_writers import mysql_connect

        server = parse_url(MYSQL)
        conn = mysql_connect(server)
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
        url = server.with_database(name)

        def drop() -> None:
            conn = mysql_connect(server)
            conn.cursor().execute(f"DROP DATABASE `{name}`")
            conn.close()

    try:
        started = time.perf_counter()
        counts = generate_legacy(url, scale=scale)
        seconds = time.perf_counter() - started
    finally:
        drop()
    rows = sum(counts.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "dialect": dialect,
        "scale": scale,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(peak_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--only", default="sqlite,postgresql,mysql")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: one dialect
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.scale)))
        return
    for dialect in args.only.split(","):
        cmd = [sys.executable, __file__, "--scale", str(args.scale), "--one", dialect]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print(done.stdout.strip() or f"{dialect}: failed: {done.stderr.strip().splitlines()[-1:]}")


if __name__ == "__main__":
    main()
