"""Which MySQL/MariaDB driver that installs with pip alone reads a table fastest?

    .venv/bin/python bench/mysql_drivers.py [--rows N] [--runs R]

Creates a database of its own (dropped after) on ``ISTHMUS_BENCH_MYSQL`` (default
root@127.0.0.1:3306) holding a table of N rows (default 500,000) with typical columns, then
times one full unbuffered ``SELECT ... ORDER BY id`` read with ``fetchmany`` for each driver:

- ``pymysql``: PyMySQL (pure Python), ``SSCursor``;
- ``connector-c``: mysql-connector-python's C extension, ``buffered=False, raw=False``;
- ``connector-pure``: mysql-connector-python with ``use_pure=True``, ``buffered=False``.

Each read runs in a fresh interpreter, so no driver warms another's caches, and so that the C
extension is imported before Python's ``ssl`` module (its wheel vendors an OpenSSL 3.2+
``libssl.so.3`` that clashes with an older system one once ``ssl`` has loaded it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SELECT = (
    "SELECT id, account_id, code, email, amount, created_at, notes, active, ratio "
    "FROM bench_rows ORDER BY id"
)
DRIVERS = ("pymysql", "connector-c", "connector-pure")


def read_all(driver: str, server: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child: stream the whole table once and report rows and seconds."""
    if driver == "connector-c":
        import _mysql_connector  # noqa: F401  (before anything imports ssl)
    conn: Any
    if driver == "pymysql":
        import pymysql
        import pymysql.cursors

        conn = pymysql.connect(**server, cursorclass=pymysql.cursors.SSCursor)
        cur = conn.cursor()
    else:
        import mysql.connector

        conn = mysql.connector.connect(**server, use_pure=(driver == "connector-pure"))
        cur = conn.cursor(buffered=False, raw=False)
    started = time.perf_counter()
    cur.execute(SELECT)
    rows = 0
    sample: Any = None
    while batch := cur.fetchmany(10_000):
        sample = sample or batch[0]
        rows += len(batch)
    seconds = time.perf_counter() - started
    cur.close()
    conn.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "class": type(conn).__module__ + "." + type(conn).__name__,
        "types": [type(v).__name__ for v in sample],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3, help="reads per driver (best kept)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from read_bench import MysqlScratch, load_mysql

    with MysqlScratch("isthmus_driver_bench") as url:
        started = time.perf_counter()
        load_mysql(url, args.rows)
        print(f"loaded {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        server = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
            "database": url.database,
        }
        rates: dict[str, float] = {}
        for driver in DRIVERS:
            best = float("inf")
            report: dict[str, Any] = {}
            for _ in range(args.runs):
                cmd = [sys.executable, __file__, "--child", driver, json.dumps(server)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{driver:<15} failed: {done.stderr.strip().splitlines()[-1]}")
                    break
                report = json.loads(done.stdout)
                if report["rows"] != args.rows:
                    raise SystemExit(f"{driver}: read {report['rows']} rows, expected {args.rows}")
                best = min(best, report["seconds"])
            else:
                rates[driver] = args.rows / best
                print(
                    f"{driver:<15} {best:6.2f} s  {rates[driver]:>10,.0f} rows/s"
                    f"  ({report['class']}; {', '.join(report['types'])})",
                    flush=True,
                )
        if rates:
            print(f"fastest: {max(rates, key=lambda d: rates[d])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(read_all(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        main()
