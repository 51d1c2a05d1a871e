"""``isthmus validate`` (all four types) on a migrated demo database, timed, and checked.

    .venv/bin/python bench/validate_bench.py [--scale 1000] [--sources mysql[,postgresql]]
                                             [--fresh] [--keep] [--types [T,...]] [--profile]

For each source (MariaDB/MySQL at ISTHMUS_BENCH_MYSQL, PostgreSQL at ISTHMUS_BENCH_PG):

1. the cached legacy database ``isthmus_bench_src_<scale>`` (migrate_bench's helper generates
   it when missing; never changed here) migrated by the CLI (``init``, ``schema --apply``,
   ``migrate``) into ``isthmus_bench_valtgt_<source>_<scale>``. That target is kept between
   runs: a marker (the database's comment) says the migration completed and whether the
   target is clean; a target without one, or ``--fresh``, is migrated again. The config is
   ``bench/out/validate_<source>_<scale>.toml``;
2. ``isthmus --json validate`` timed on the clean target (wall clock, CLI start-up
   included): it must exit 0 with every report passed, every row compared (completeness:
   source = target = mappings; data_integrity: every row); per entity × type its
   ``execution_time_ms``, the peak RSS and the CPU time of the isthmus process, and the CPU
   the database servers spent meanwhile (when their processes are visible in /proc);
3. four corruptions planted in the target (a changed ``patients.last_name``, a deleted
   ``products`` row, an extra ``products`` row no mapping knows, an ``orders.patient_id``
   re-pointed to another patient), ``isthmus validate`` again: exit 1, each corruption found
   by the type that should find it, naming the row, and nothing else failing (the re-pointed
   reference also fails ``orders`` data_integrity: it is a changed value too). The undo
   statements are kept in the marker while the target is dirty, and run at the end (or by
   the next run, if this one died); ``--keep`` leaves the corruptions for inspection;
4. a summary: rows, seconds, rows/s, the < 30 s target at 1.2M rows, Google's Data
   Validation Tool's published 43.5 s for a 1M-row row-hash validation (as issue 6 quotes
   it; also pro-rated to the same row count) and the ratio, peak RSS (and against the other
   scales already measured: validation streams, so RSS must not grow with the rows).

``--types`` (optionally a comma-separated list; all four when bare) also runs each type
alone, timed. ``--profile`` runs validate once more (the ``--types`` given, else all) under
py-spy (installed into the venv when missing), sampling idle threads too so that the time
spent waiting for the databases shows: ``bench/out/validate_<source>_<scale>.speedscope.json``
(open it at https://www.speedscope.app), with the top frames printed.

Results go to bench/out/validate_<source>_<scale>.json. Exit 1 when a check fails.
"""

# ruff: noqa: S608  (SQL from the demo's own table and column names and integer keys only)
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

import isthmus  # noqa: E402,F401  (before psycopg: see mysql_driver.preload_c_extension)
from diff_bench import OUT, run  # noqa: E402
from isthmus.demo import DEMO_TABLES, expected_counts  # noqa: E402
from isthmus.urls import parse_url  # noqa: E402
from migrate_bench import ISTHMUS, PG, fresh_pg, source_url, target_rows  # noqa: E402

TYPES = ("completeness_check", "data_integrity", "relationship_integrity", "performance_check")
SHORT = {
    "completeness_check": "complete",
    "data_integrity": "data",
    "relationship_integrity": "relations",
    "performance_check": "perf",
}
STATE = "isthmus"
MAP = f"{STATE}.legacy_id_mappings"
SAVE_SCHEMA = "validate_bench"  # in the target: the deleted row, kept for the undo
MARKER = "isthmus validate_bench"
TARGET_SECONDS = 30.0  # issue 6, at 1.2M rows
DVT_SECONDS, DVT_ROWS = 43.5, 1_000_000  # DVT's published row-hash validation, as quoted
PROFILE_RATE = 100  # py-spy samples per second


# -- running the CLI, measured ------------------------------------------------------------------


def _proc_ticks(names: tuple[str, ...]) -> int | None:
    """CPU clock ticks (user + system, of the processes and their reaped children) of every
    process whose name is one of ``names``; None when none is visible."""
    total, seen = 0, False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        if name not in names:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[11:15]: utime, stime, cutime, cstime (stat fields 14-17)
        total += sum(int(x) for x in fields[11:15])
        seen = True
    return total if seen else None


SERVERS = {"postgresql": ("postgres",), "mariadb": ("mariadbd", "mysqld")}


def server_cpu() -> dict[str, int | None]:
    return {name: _proc_ticks(procs) for name, procs in SERVERS.items()}


@dataclass
class Measured:
    argv: list[str]
    seconds: float
    code: int
    rss_mb: float
    cpu_seconds: float  # user + system of the command (and its waited-for children)
    server_cpu_seconds: dict[str, float | None]
    stdout: str
    stderr: str
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def doc(self) -> dict[str, Any]:
        try:
            out: dict[str, Any] = json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise SystemExit(
                f"{' '.join(self.argv[3:])}: no JSON on stdout ({exc}):\n"
                f"{self.stdout[:2000]}\n{self.stderr[-2000:]}"
            ) from None
        return out


def measured(argv: list[str], ok: tuple[int, ...] = (0,)) -> Measured:
    """Run ``argv`` (output to files: no pipe to fill), timing it; peak RSS and CPU from
    ``wait4``; an exit code not in ``ok`` stops the bench."""
    hz = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        servers_before = server_cpu()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        servers_after = server_cpu()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code not in ok:
        raise SystemExit(f"{' '.join(argv[3:])} … failed (exit {code}):\n{stderr[-3000:]}")
    servers: dict[str, float | None] = {}
    for name, before in servers_before.items():
        after = servers_after[name]
        servers[name] = None if before is None or after is None else (after - before) / hz
    return Measured(
        argv,
        seconds,
        code,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        servers,
        stdout,
        stderr,
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# -- the target, cached -------------------------------------------------------------------------


def marker(db: str) -> dict[str, Any] | None:
    with psycopg.connect(PG) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (db,),
        ).fetchone()
    if not row or not row[0]:
        return None
    try:
        doc = json.loads(row[0])
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and doc.get("bench") == MARKER else None


def set_marker(db: str, doc: dict[str, Any]) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(db), sql.Literal(json.dumps({"bench": MARKER, **doc}))
            )
        )


def write_config(path: Path, source: str, target: str) -> None:
    path.write_text(
        f'[source]\nurl = "{source}"\n\n[target]\nurl = "{target}"\nstate_schema = "{STATE}"\n\n'
        "[migration]\nbatch_size = 10000\n",
        encoding="utf-8",
    )


def prepare_target(
    dialect: str, source: str, scale: int, config: Path, fresh: bool
) -> tuple[str, dict[str, Any]]:
    """The migrated target (cached when its marker says clean and complete)."""
    db = f"isthmus_bench_valtgt_{dialect}_{scale}"
    target = str(parse_url(PG).with_database(db).raw)
    write_config(config, source, target)
    mark = None if fresh else marker(db)
    if mark and mark.get("state") == "dirty":
        print("   the cached target was left with corruptions: undoing them", flush=True)
        try:
            undo(target, mark.get("undo", []))
            mark = {**mark, "state": "clean", "undo": []}
            set_marker(db, mark)
        except psycopg.Error as exc:
            print(f"   undo failed ({exc}): migrating again", flush=True)
            mark = None
    if mark and mark.get("state") == "clean" and mark.get("source") == source:
        print(
            f"   cached target {db} (migrated {mark.get('migrated_at')},"
            f" {mark.get('migrate_seconds', 0):.1f} s; --fresh to redo)",
            flush=True,
        )
        return target, mark
    fresh_pg(db)
    base = [ISTHMUS, "--config", str(config)]
    run([*base, "init"])
    run([*base, "schema", "--apply"])
    started = time.perf_counter()
    seconds, _, _, _ = run([*base, "--json", "migrate"])
    rows = target_rows(target)
    expected = sum(expected_counts(scale).values())
    if rows != expected:
        raise SystemExit(f"migration left {rows:,} target rows, expected {expected:,}")
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as a migrated database would be before it is used
    mark = {
        "state": "clean",
        "source": source,
        "scale": scale,
        "rows": rows,
        "migrated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "migrate_seconds": seconds,
        "vacuum_seconds": time.perf_counter() - started - seconds,
    }
    set_marker(db, mark)
    print(f"   migrated into {db}: {seconds:.1f} s  (config {config})", flush=True)
    return target, mark


# -- 2. a validation run, shown ------------------------------------------------------------------


def validate(config: Path, *extra: str, ok: tuple[int, ...] = (0,)) -> Measured:
    return measured([ISTHMUS, "--config", str(config), "--json", "validate", *extra], ok=ok)


def per_cell(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["entity"], r["validation_type"]): r for r in doc.get("reports", [])}


def print_times(m: Measured, doc: dict[str, Any]) -> dict[str, Any]:
    """Entity × type execution_time_ms (in seconds) and the totals; returns them."""
    cells = per_cell(doc)
    entities = list(dict.fromkeys(e for e, _ in cells))
    types = [t for t in TYPES if any(t == ty for _, ty in cells)]
    print(
        f"     {'entity':>9} "
        + " ".join(f"{SHORT[t]:>10}" for t in types)
        + f" {'total':>9}  data/relations method",
        flush=True,
    )
    by_type: Counter[str] = Counter()
    by_entity: Counter[str] = Counter()
    for e in entities:
        row = []
        for t in types:
            r = cells.get((e, t))
            ms = r["execution_time_ms"] if r else 0
            by_type[t] += ms
            by_entity[e] += ms
            row.append(f"{ms / 1000:>10.2f}")
        methods = "/".join(
            str(cells[(e, t)]["metadata"].get("method", "-"))
            for t in ("data_integrity", "relationship_integrity")
            if (e, t) in cells
        )
        print(f"     {e:>9} " + " ".join(row) + f" {by_entity[e] / 1000:>9.2f}  {methods}")
    total_ms = sum(by_type.values())
    print(
        f"     {'total':>9} "
        + " ".join(f"{by_type[t] / 1000:>10.2f}" for t in types)
        + f" {total_ms / 1000:>9.2f}"
    )
    servers = ", ".join(
        f"{k} {v:.1f} s" if v is not None else f"{k} n/a" for k, v in m.server_cpu_seconds.items()
    )
    print(
        f"     wall {m.seconds:.2f} s (inside the command {doc.get('seconds', 0):.2f} s; checks"
        f" {total_ms / 1000:.2f} s; start-up, reflection and storing reports the rest),"
        f" peak RSS {m.rss_mb:.0f} MB, isthmus CPU {m.cpu_seconds:.1f} s,"
        f" server CPU meanwhile: {servers}; load {m.load[0]:.2f}",
        flush=True,
    )
    slowest = max(cells.values(), key=lambda r: r["execution_time_ms"], default=None)
    return {
        "wall_seconds": m.seconds,
        "inside_seconds": doc.get("seconds"),
        "checks_seconds": total_ms / 1000,
        "exit": m.code,
        "rss_mb": m.rss_mb,
        "cpu_seconds": m.cpu_seconds,
        "server_cpu_seconds": m.server_cpu_seconds,
        "load_average": m.load,
        "seconds_by_type": {t: by_type[t] / 1000 for t in types},
        "seconds_by_entity": {e: by_entity[e] / 1000 for e in entities},
        "slowest": (
            {
                "entity": slowest["entity"],
                "type": slowest["validation_type"],
                "seconds": slowest["execution_time_ms"] / 1000,
            }
            if slowest
            else None
        ),
        "ms": {f"{e}/{t}": r["execution_time_ms"] for (e, t), r in cells.items()},
    }


def clean_problems(doc: dict[str, Any], scale: int) -> list[tuple[str, dict[str, Any] | None]]:
    """What is wrong with a clean target's validation: (what, the report concerned)."""
    problems: list[tuple[str, dict[str, Any] | None]] = []
    if doc.get("passed") is not True:
        problems.append(("the run's passed is not true", None))
    counts = expected_counts(scale)
    cells = per_cell(doc)
    want = [(e, t) for e in DEMO_TABLES for t in TYPES]
    if sorted(cells) != sorted(want):
        problems.append((f"reports for {sorted(cells)}, expected every entity × type", None))
    for (e, t), r in cells.items():
        if not r.get("passed") or r.get("discrepancies_found"):
            problems.append((f"{e}/{t} failed on a clean migration", r))
            continue
        meta = r.get("metadata", {})
        n = counts.get(e)
        if t == "completeness_check" and not (
            meta.get("source_rows") == meta.get("target_rows") == meta.get("mappings") == n
        ):
            problems.append((f"{e}/{t}: source/target/mappings are not all {n:,}", r))
        if t == "data_integrity" and not (
            r.get("records_validated") == meta.get("rows_equal") == n
        ):
            problems.append((f"{e}/{t}: not every one of the {n:,} rows compared equal", r))
    return problems


# -- 3. corruptions -----------------------------------------------------------------------------


def one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise SystemExit(f"no row: {query} {params}")
    return row if len(row) > 1 else row[0]


def pick(conn: psycopg.Connection[Any], entity: str, rng: random.Random) -> tuple[int, str]:
    """(legacy ID, UUID) of a mapped row of ``entity`` drawn at random."""
    low, high = one(
        conn, f"SELECT min(legacy_id), max(legacy_id) FROM {MAP} WHERE entity_type = %s", (entity,)
    )
    legacy_id, uuid = one(
        conn,
        f"SELECT legacy_id, uuid_id::text FROM {MAP} WHERE entity_type = %s"
        " AND legacy_id >= %s ORDER BY legacy_id LIMIT 1",
        (entity, rng.randint(low, high)),
    )
    return int(legacy_id), str(uuid)


def plant(target: str, db: str, mark: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Plant the four corruptions (one transaction); the undo goes into the marker first."""
    rng = random.Random(seed)
    with psycopg.connect(target) as conn:

        def q(statement: str, *params: Any) -> str:
            return sql.SQL(statement).format(*(sql.Literal(x) for x in params)).as_string(conn)

        patient, patient_uuid = pick(conn, "patients", rng)
        old_name = one(conn, "SELECT last_name FROM public.patients WHERE id = %s", (patient_uuid,))
        dropped, dropped_uuid = pick(conn, "products", rng)
        copied, copied_uuid = pick(conn, "products", rng)
        while copied == dropped:
            copied, copied_uuid = pick(conn, "products", rng)
        order, order_uuid = pick(conn, "orders", rng)
        old_parent_uuid = str(
            one(conn, "SELECT patient_id FROM public.orders WHERE id = %s", (order_uuid,))
        )
        new_parent, new_parent_uuid = pick(conn, "patients", rng)
        while new_parent_uuid == old_parent_uuid:
            new_parent, new_parent_uuid = pick(conn, "patients", rng)
        extra_uuid = str(one(conn, "SELECT gen_random_uuid()"))
        planted: list[dict[str, Any]] = [
            {
                "name": "changed value: patients.last_name",
                "entity": "patients",
                "type": "data_integrity",
                "kind": "value_mismatch",
                "legacy_id": patient,
                "column": "last_name",
            },
            {
                "name": "dropped row: products",
                "entity": "products",
                "type": "completeness_check",
                "kind": "missing_in_target",
                "legacy_id": dropped,
            },
            {
                "name": "extra row: products (a copy under a new UUID, no mapping)",
                "entity": "products",
                "type": "completeness_check",
                "kind": "unmapped_target_row",
                "uuid": extra_uuid,
            },
            {
                "name": "re-pointed reference: orders.patient_id",
                "entity": "orders",
                "type": "relationship_integrity",
                "kind": "wrong_parent",
                "legacy_id": order,
                "column": "patient_id",
                "target_parent": str(new_parent),
            },
        ]
        undo_sql = [
            q("UPDATE public.patients SET last_name = {} WHERE id = {}", old_name, patient_uuid),
            f"INSERT INTO public.products SELECT * FROM {SAVE_SCHEMA}.dropped_product",
            f"DROP SCHEMA IF EXISTS {SAVE_SCHEMA} CASCADE",
            q("DELETE FROM public.products WHERE id = {}", extra_uuid),
            q(
                "UPDATE public.orders SET patient_id = {} WHERE id = {}",
                old_parent_uuid,
                order_uuid,
            ),
        ]
        set_marker(db, {**mark, "state": "dirty", "undo": undo_sql})
        conn.execute(
            "UPDATE public.patients SET last_name = 'Tampered by validate_bench' WHERE id = %s",
            (patient_uuid,),
        )
        conn.execute(f"CREATE SCHEMA {SAVE_SCHEMA}")
        conn.execute(
            f"CREATE TABLE {SAVE_SCHEMA}.dropped_product AS"
            " SELECT * FROM public.products WHERE id = %s",
            (dropped_uuid,),
        )
        conn.execute("DELETE FROM public.products WHERE id = %s", (dropped_uuid,))
        conn.execute(
            "INSERT INTO public.products SELECT %s, order_id, sku, name, quantity, unit_price,"
            " weight_g, created_at, updated_at FROM public.products WHERE id = %s",
            (extra_uuid, copied_uuid),
        )
        conn.execute(
            "UPDATE public.orders SET patient_id = %s WHERE id = %s", (new_parent_uuid, order_uuid)
        )
    return planted


def undo(target: str, statements: list[str]) -> None:
    with psycopg.connect(target) as conn:
        for s in statements:
            conn.execute(s.encode())


def judge(planted: list[dict[str, Any]], doc: dict[str, Any]) -> tuple[dict[str, bool], list[str]]:
    """Whether each corruption was caught by its type, naming the row; and whether anything
    else failed."""
    cells = per_cell(doc)
    checks: dict[str, bool] = {}
    lines: list[str] = []
    expected_counts_by_cell: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for p in planted:
        expected_counts_by_cell[(p["entity"], p["type"])][p["kind"]] += 1
        r = cells.get((p["entity"], p["type"]))
        details = (r or {}).get("discrepancy_details") or {}
        samples = (details.get("samples") or {}).get(p["kind"]) or []
        named = False
        for s in samples:
            if "uuid" in p:
                named = named or s.get("uuid") == p["uuid"]
            elif s.get("legacy_id") == p["legacy_id"]:
                if p["kind"] == "value_mismatch":
                    named = named or p["column"] in (s.get("columns") or {})
                elif p["kind"] == "wrong_parent":
                    named = named or (
                        s.get("column") == p["column"]
                        and str(s.get("target_parent")) == p["target_parent"]
                    )
                else:
                    named = True
        ok = r is not None and not r["passed"] and named
        checks[f"caught: {p['name']}"] = ok
        said = f"{p['kind']} {(details.get('counts') or {}).get(p['kind'], 0)}"
        lines.append(
            f"   {'ok  ' if ok else 'FAIL'} {p['name']}: {p['entity']}/{p['type']} {said}"
            + ("" if named else "  (no sample names the planted row)")
        )
    # the re-pointed reference is a changed value of orders too
    also = {("orders", "data_integrity"): Counter({"value_mismatch": 1})}
    for cell, kinds in {**expected_counts_by_cell, **also}.items():
        got = ((cells.get(cell) or {}).get("discrepancy_details") or {}).get("counts") or {}
        exact = dict(got) == dict(kinds)
        checks[f"exactly {dict(kinds)} in {cell[0]}/{cell[1]}"] = exact
        if not exact:
            lines.append(f"   FAIL {cell[0]}/{cell[1]}: counts {got}, expected {dict(kinds)}")
    others = sorted(
        f"{e}/{t}"
        for (e, t), r in cells.items()
        if not r["passed"] and (e, t) not in expected_counts_by_cell and (e, t) not in also
    )
    checks["nothing else fails"] = not others
    checks["exit 1"] = doc.get("passed") is False
    lines.append(
        f"   {'ok  ' if not others else 'FAIL'} nothing else fails"
        + (f": {', '.join(others)}" if others else "")
    )
    return checks, lines


# -- 5. profile ---------------------------------------------------------------------------------


def py_spy() -> Path:
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print("installing py-spy into the venv …", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return exe


def profile(config: Path, types: list[str] | None, out: Path) -> dict[str, Any]:
    argv = [
        str(py_spy()),
        "record",
        "--idle",
        "--rate",
        str(PROFILE_RATE),
        "--format",
        "speedscope",
        "--output",
        str(out),
        "--",
        ISTHMUS,
        "--config",
        str(config),
        "--json",
        "validate",
        *(["--type", ",".join(types)] if types else []),
    ]
    m = measured(argv)
    print(f"   profile: {out} ({m.seconds:.1f} s under py-spy, --idle)", flush=True)
    return {"file": str(out), "seconds": m.seconds, **summarise_profile(out)}


def _category(leaf_file: str, leaf_name: str) -> str:
    """Where a sample stood, broadly: in a database driver (waiting for its server, mostly),
    idle (a pool thread waiting for work), importing, or running Python."""
    if "/psycopg/" in leaf_file or "/psycopg_c/" in leaf_file:
        return "PostgreSQL driver (psycopg: mostly waiting for the server)"
    if "/mysql/connector/" in leaf_file or "/pymysql/" in leaf_file:
        return "MariaDB driver (mostly waiting for the server)"
    if leaf_name in ("_worker", "Condition.wait", "Thread.join", "Event.wait") or (
        "threading.py" in leaf_file
    ):
        return "idle (waiting for a thread or for work)"
    if "importlib" in leaf_file:
        return "importing modules"
    return "Python (isthmus and libraries)"


def summarise_profile(path: Path, top: int = 8) -> dict[str, Any]:
    """Per thread: seconds sampled by category, each split by the innermost isthmus function
    the sample was under (a function's lines merged); and the isthmus functions holding the
    most of the main thread's time (inclusive)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    frames = doc["shared"]["frames"]
    names = [
        f"{f['name']} ({_short_path(f['file'])})" if f.get("file") else f["name"] for f in frames
    ]
    ours = [bool(f.get("file")) and "/isthmus/" in f["file"] for f in frames]
    threads: dict[str, Any] = {}
    for prof in doc["profiles"]:
        total = 0.0
        by_cat: dict[str, Counter[str]] = defaultdict(Counter)
        inclusive: Counter[str] = Counter()
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            total += weight
            if not stack:
                continue
            leaf = frames[stack[-1]]
            cat = _category(str(leaf.get("file") or ""), str(leaf.get("name")))
            mine = next((names[i] for i in reversed(stack) if ours[i]), "(outside isthmus)")
            by_cat[cat][mine] += weight
            for name in {names[i] for i in stack if ours[i]}:
                inclusive[name] += weight
        label = prof.get("name", "?")
        print(f"     thread {label}: {total:.1f} s sampled")
        for cat, callers in sorted(by_cat.items(), key=lambda kv: -sum(kv[1].values())):
            seconds = sum(callers.values())
            print(f"       {seconds:6.2f} s {seconds / total:6.1%}  {cat}, under:")
            for name, w in callers.most_common(top):
                print(f"         {w:6.2f} s  {name}")
        threads[label] = {
            "seconds": total,
            "by_category": {
                cat: {"seconds": sum(c.values()), "under": dict(c.most_common(20))}
                for cat, c in by_cat.items()
            },
            "isthmus_inclusive": dict(inclusive.most_common(40)),
        }
    main = max(threads.values(), key=lambda t: t["seconds"], default=None)
    if main:
        print("     main thread, isthmus functions by inclusive seconds:")
        for name, w in list(main["isthmus_inclusive"].items())[: top * 3]:
            print(f"       {w:6.2f} s {w / main['seconds']:6.1%}  {name}")
    return {"threads": threads}


def _short_path(path: str) -> str:
    for anchor in ("/site-packages/", "/src/", "/lib/python"):
        if anchor in path:
            return path.split(anchor, 1)[1]
    return Path(path).name


# -- one source ---------------------------------------------------------------------------------


def bench_source(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    scale = args.scale
    rows = sum(expected_counts(scale).values())
    print(f"\n== {dialect} → PostgreSQL, {rows:,} rows ==", flush=True)
    print(f"   {uptime()}", flush=True)
    result: dict[str, Any] = {
        "source": dialect,
        "scale": scale,
        "rows": rows,
        "cpus": os.cpu_count(),
        "uptime_at_start": uptime(),
    }
    checks: dict[str, bool] = {}
    source = source_url(dialect, scale)
    OUT.mkdir(exist_ok=True)
    config = OUT / f"validate_{dialect}_{scale}.toml"
    target, mark = prepare_target(dialect, source, scale, config, args.fresh)
    db = parse_url(target).database or ""
    result["migration"] = {k: v for k, v in mark.items() if k != "undo"}

    # 2. the clean run
    m = validate(config, ok=(0, 1))
    doc = m.doc()
    print(f"   isthmus validate (all four types), clean target: exit {m.code}", flush=True)
    clean = print_times(m, doc)
    problems = clean_problems(doc, scale)
    for what, report in problems:
        print(f"   FAIL {what}")
        if report is not None:
            print(json.dumps(report, indent=2, ensure_ascii=False))
    checks["clean: exit 0"] = m.code == 0
    checks["clean: every report passed, every row compared"] = not problems
    result["clean"] = {**clean, "problems": [w for w, _ in problems], "doc": doc}

    # 5. one type at a time, and the profile
    if args.types is not None:
        print("   one type at a time:", flush=True)
        result["types"] = {}
        for t in args.types:
            mt = validate(config, "--type", t, ok=(0, 1))
            dt = mt.doc()
            print(
                f"     {t:<23} wall {mt.seconds:6.2f} s, checks"
                f" {sum(r['execution_time_ms'] for r in dt['reports']) / 1000:6.2f} s,"
                f" RSS {mt.rss_mb:4.0f} MB, CPU {mt.cpu_seconds:5.1f} s, exit {mt.code}",
                flush=True,
            )
            result["types"][t] = {
                "wall_seconds": mt.seconds,
                "rss_mb": mt.rss_mb,
                "cpu_seconds": mt.cpu_seconds,
                "server_cpu_seconds": mt.server_cpu_seconds,
                "exit": mt.code,
                "ms": {r["entity"]: r["execution_time_ms"] for r in dt["reports"]},
            }
    if args.profile:
        suffix = "" if args.types is None else "_" + "_".join(SHORT[t] for t in args.types)
        out = OUT / f"validate_{dialect}_{scale}{suffix}.speedscope.json"
        result["profile"] = profile(config, args.types, out)

    # 3. corruptions
    if not args.skip_corruptions:
        planted = plant(target, db, mark, args.seed)
        print(f"   planted {len(planted)} corruptions; validate again:", flush=True)
        try:
            mc = validate(config, ok=(0, 1))
            dc = mc.doc()
            failing = sorted(
                f"{r['entity']}/{r['validation_type']}" for r in dc["reports"] if not r["passed"]
            )
            print(
                f"     exit {mc.code}, {mc.seconds:.2f} s wall; failing: {', '.join(failing)}",
                flush=True,
            )
            found, lines = judge(planted, dc)
            checks["corrupted: exit 1"] = mc.code == 1
            checks.update(found)
            for line in lines:
                print(line)
            result["corrupted"] = {
                "wall_seconds": mc.seconds,
                "exit": mc.code,
                "planted": planted,
                "failing": failing,
                "failing_reports": [r for r in dc["reports"] if not r["passed"]],
            }
        finally:
            if args.keep:
                print(
                    f"   --keep: the corruptions stay in {db} (marked dirty: the next run undoes"
                    " them)"
                )
            else:
                current = marker(db) or mark
                undo(target, current.get("undo", []))
                set_marker(db, {**mark, "state": "clean"})
                print("   corruptions undone: the cached target is clean again", flush=True)

    # 4. summary
    wall = clean["wall_seconds"]
    prorated = DVT_SECONDS * rows / DVT_ROWS
    summary = {
        "rows": rows,
        "seconds": wall,
        "rows_per_second": rows / wall,
        "target_seconds": TARGET_SECONDS if scale == 1000 else None,
        "target_met": wall < TARGET_SECONDS if scale == 1000 else None,
        "dvt_seconds_1m": DVT_SECONDS,
        "dvt_prorated_seconds": prorated,
        "dvt_ratio_1m": DVT_SECONDS / wall,
        "dvt_ratio_prorated": prorated / wall,
        "rss_mb": clean["rss_mb"],
        "slowest": clean["slowest"],
    }
    result["summary"] = summary
    result["checks"] = checks
    result["uptime_at_end"] = uptime()
    print("   summary:")
    print(
        f"     {rows:,} rows validated (4 types) in {wall:.2f} s wall: {rows / wall:,.0f} rows/s"
        + (
            f"; target < {TARGET_SECONDS:.0f} s at 1.2M rows: {'met' if wall < TARGET_SECONDS else 'MISSED'}"
            if scale == 1000
            else ""
        )
    )
    print(
        f"     DVT's published 43.5 s for 1M rows (row hash): {DVT_SECONDS / wall:.2f}× this run;"
        f" pro-rated to {rows:,} rows {prorated:.1f} s: {prorated / wall:.2f}×"
    )
    by_type = ", ".join(f"{SHORT[t]} {s:.1f} s" for t, s in clean["seconds_by_type"].items())
    print(f"     by type (summed over entities): {by_type}")
    if clean["slowest"]:
        s = clean["slowest"]
        print(f"     slowest: {s['entity']}/{s['type']} {s['seconds']:.2f} s")
    print(f"     peak RSS {clean['rss_mb']:.0f} MB")
    others = []
    for path in sorted(OUT.glob(f"validate_{dialect}_*.json")):
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if (
            isinstance(other, dict)
            and other.get("scale") not in (None, scale)
            and "summary" in other
            and other["summary"].get("rows", 0) >= 100_000  # not the smoke-test scales
        ):
            others.append(other)
    for other in others:
        o = other["summary"]
        print(
            f"     against scale {other['scale']} ({o['rows']:,} rows): {o['seconds']:.1f} s"
            f" → {wall:.1f} s (× {wall / o['seconds']:.2f} for × {rows / o['rows']:.2f} rows),"
            f" peak RSS {o['rss_mb']:.0f} → {clean['rss_mb']:.0f} MB"
        )
    print(f"   {result['uptime_at_end']}")
    (OUT / f"validate_{dialect}_{scale}.json").write_text(
        json.dumps(result, indent=2, default=str), encoding="utf-8"
    )
    for name, ok in checks.items():
        print(f"   {'ok  ' if ok else 'FAIL'} {name}")
    return result


def parse_type_list(value: str) -> list[str]:
    if value in ("", "all"):
        return list(TYPES)
    out = [t.strip() for t in value.split(",") if t.strip()]
    for t in out:
        if t not in TYPES:
            raise argparse.ArgumentTypeError(f"unknown type {t!r} (types: {', '.join(TYPES)})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--sources", default="mysql")
    parser.add_argument("--fresh", action="store_true", help="migrate the target again")
    parser.add_argument(
        "--keep", action="store_true", help="leave the planted corruptions in the target"
    )
    parser.add_argument(
        "--types",
        nargs="?",
        const=list(TYPES),
        type=parse_type_list,
        default=None,
        help="also time each type alone (these, comma-separated; all four when bare)",
    )
    parser.add_argument("--profile", action="store_true", help="one more run under py-spy")
    parser.add_argument("--skip-corruptions", action="store_true")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    results = [bench_source(d, args) for d in args.sources.split(",")]
    print("\n== summary ==")
    for r in results:
        s = r["summary"]
        print(
            f"   {r['source']:<10} {s['rows']:>10,} rows: validate {s['seconds']:.2f} s,"
            f" {s['rows_per_second']:,.0f} rows/s, DVT pro-rated/isthmus {s['dvt_ratio_prorated']:.2f},"
            f" peak RSS {s['rss_mb']:.0f} MB"
        )
    sys.exit(0 if all(all(r["checks"].values()) for r in results) else 1)


if __name__ == "__main__":
    main()
