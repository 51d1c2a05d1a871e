"""One process against two: the same migration, whole and in key-range chunks run in parallel.

    .venv/bin/python bench/worker_bench.py [--scale 1000] [--workers 2] [--split-rows 100000]
                                           [--modes cli,warm] [--rounds 3]

The demo dental database in MariaDB (1,209 rows per unit of scale; 1000 → 1.2M rows; built
once and kept as ``isthmus_bench_src_<scale>``, as ``migrate_bench.py`` does) is migrated
into fresh PostgreSQL databases, each prepared the same way (``init``, ``schema --apply``;
not timed):

- one process: ``migrate`` of every entity, in plan order;
- ``--workers`` processes: entity by entity in plan order (parents first), an entity of at
  least ``--split-rows`` source rows split by ``plan_chunks`` into one chunk per worker, the
  chunks migrated at the same time (``migrate --entity E --chunk LO:HI``), then ``migrate
  --entity E --finish``; consecutive smaller entities in one plain ``migrate --entity …``.

Two ways of running those tasks (``--modes``):

- ``cli``: every task is an ``isthmus`` process of its own (start-up, ~0.7 s, included);
- ``warm``: long-lived worker processes, started before the clock (as ``isthmus worker``s
  would be), each running the tasks it is handed through ``commands.migrate``; the single
  process is such a worker too.

Each round runs both (which goes first alternates) on fresh targets and prints their wall
times, the ratio, how busy the machine's cores were (from /proc/stat), and the steps of
each; then checks every target against the source: rows per table, one mapping per row (no
legacy ID or UUID twice), and ``isthmus diff`` (every row compared through the canonical
checksums) finding nothing. The summary gives the median ratio of the rounds: the machine
is shared, and a single run drifts by a third from one minute to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

# isthmus first: the MySQL driver's C extension loads only before anything imports ssl
# (psycopg does), else the workers would read MariaDB through PyMySQL, three times slower
import isthmus  # noqa: E402,F401

# isort: split
import psycopg  # noqa: E402

from isthmus.config import load_config  # noqa: E402
from isthmus.demo import DEMO_TABLES, expected_counts  # noqa: E402
from isthmus.migrate_chunks import plan_chunks  # noqa: E402
from isthmus.workspace import Workspace  # noqa: E402
from migrate_bench import ISTHMUS, fresh_pg, run_measured, source_url  # noqa: E402

Task = dict[str, Any]  # {"entities": [...], "chunk": "LO:HI" | None, "finish": bool}


class Cpu:
    """Busy share of all cores between creation and ``share()``, from /proc/stat."""

    def __init__(self) -> None:
        self.busy, self.total = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def share(self) -> float:
        busy, total = self._read()
        return (busy - self.busy) / max(1, total - self.total)


def describe(task: Task) -> str:
    what = ", ".join(task["entities"]) or "every entity"
    if task.get("chunk"):
        return f"{what} {task['chunk']}"
    return f"{what} finish" if task.get("finish") else what


# -- runners: how a batch of tasks is executed at once ----------------------------------------


class CliRunner:
    """Each task an ``isthmus --json migrate …`` process."""

    def __init__(self, config: Path, workers: int) -> None:
        self.base = [ISTHMUS, "--config", str(config), "--json", "migrate"]
        self.peak_mb = 0

    def run(self, tasks: list[Task]) -> list[dict[str, Any]]:
        procs = [
            subprocess.Popen(
                [*self.base, *self._args(t)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for t in tasks
        ]
        docs = []
        for task, proc in zip(tasks, procs, strict=True):
            out, err = proc.communicate()
            if proc.returncode != 0:
                message = err.decode(errors="replace")[-3000:]
                raise SystemExit(f"{describe(task)} failed ({proc.returncode}):\n{message}")
            docs.append(json.loads(out))
        # reaped children: the largest peak RSS of any of them is in RUSAGE_CHILDREN
        self.peak_mb = max(self.peak_mb, _children_peak_mb())
        return docs

    @staticmethod
    def _args(task: Task) -> list[str]:
        args = [a for e in task["entities"] for a in ("--entity", e)]
        if task.get("chunk"):
            args += ["--chunk", task["chunk"]]
        if task.get("finish"):
            args.append("--finish")
        return args

    def close(self) -> None:
        pass


class WarmRunner:
    """``workers`` long-lived processes (this file with ``--serve``), a task each at a time."""

    def __init__(self, config: Path, workers: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        for proc in self.procs:  # ready: imported, workspace open
            assert proc.stdout is not None
            if json.loads(proc.stdout.readline()) != {"ready": True}:
                raise SystemExit("a worker did not start")
        self.peak_mb = 0

    def run(self, tasks: list[Task]) -> list[dict[str, Any]]:
        if len(tasks) > len(self.procs):
            raise SystemExit(f"{len(tasks)} tasks at once for {len(self.procs)} workers")
        for task, proc in zip(tasks, self.procs, strict=False):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(task) + "\n")
            proc.stdin.flush()
        docs = []
        for task, proc in zip(tasks, self.procs, strict=False):
            assert proc.stdout is not None
            reply = json.loads(proc.stdout.readline() or "{}")
            if "error" in reply or "result" not in reply:
                raise SystemExit(f"{describe(task)} failed: {reply.get('error')}")
            self.peak_mb = max(self.peak_mb, int(reply["rss_mb"]))
            docs.append(reply["result"])
        return docs

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)


def serve(config_path: str) -> None:
    """A warm worker: one JSON task per line on stdin, one JSON reply per line on stdout."""
    import resource

    from isthmus import commands

    config = load_config(Path(config_path))
    out: IO[str] = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        try:
            result = commands.migrate(
                config,
                task["entities"],
                chunk=task.get("chunk"),
                finish=bool(task.get("finish")),
            )
            reply: dict[str, Any] = {"result": result.to_dict()}
        except Exception as exc:  # reported to the coordinator, which stops
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        reply["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _children_peak_mb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024


# -- the two ways of migrating -----------------------------------------------------------------


@dataclass
class Run:
    label: str
    seconds: float = 0.0
    cpu: float = 0.0
    peak_mb: int = 0
    steps: list[tuple[float, str]] = field(default_factory=list)
    target: str = ""
    config: Path = Path()


def prepare(src: str, name: str, workdir: Path) -> tuple[Path, str]:
    target = fresh_pg(name)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "isthmus.toml"
    config.write_text(
        f'[source]\nurl = "{src}"\n[target]\nurl = "{target}"\n[migration]\nbatch_size = 10000\n',
        encoding="utf-8",
    )
    run_measured([ISTHMUS, "--config", str(config), "init"])
    run_measured([ISTHMUS, "--config", str(config), "schema", "--apply"])
    return config, target


def whole(src: str, scale: int, workdir: Path, mode: str) -> Run:
    config, target = prepare(src, f"isthmus_bench_w1_{mode}_{scale}", workdir / f"one_{mode}")
    runner = CliRunner(config, 1) if mode == "cli" else WarmRunner(config, 1)
    run = Run(f"1 process ({mode})", target=target, config=config)
    try:
        cpu = Cpu()
        started = time.perf_counter()
        (doc,) = runner.run([{"entities": []}])
        run.seconds = time.perf_counter() - started
        run.cpu = cpu.share()
    finally:
        runner.close()
    run.peak_mb = runner.peak_mb
    run.steps = [(float(e["seconds"]), e["entity"]) for e in doc["entities"]]
    return run


def chunked(src: str, scale: int, workdir: Path, mode: str, *, workers: int, split: int) -> Run:
    name = f"isthmus_bench_w{workers}_{mode}_{scale}"
    config, target = prepare(src, name, workdir / f"many_{mode}")
    runner = CliRunner(config, workers) if mode == "cli" else WarmRunner(config, workers)
    run = Run(f"{workers} processes ({mode})", target=target, config=config)

    def step(tasks: list[Task]) -> None:
        at, busy = time.perf_counter(), Cpu()
        docs = runner.run(tasks)
        inside = max(float(d["seconds"]) for d in docs)
        run.steps.append(
            (
                time.perf_counter() - at,
                f"{' | '.join(map(describe, tasks))} ({inside:.2f} s inside,"
                f" cores busy {busy.share() * 100:.0f} %)",
            )
        )

    try:
        cpu = Cpu()
        started = time.perf_counter()
        with Workspace(load_config(config)) as ws:  # sizes and chunk bounds: timed too
            small: list[str] = []
            for planned in ws.plan.entities:
                if ws.source.count(planned.entity.source_table) < split:
                    small.append(planned.name)
                    continue
                if small:
                    step([{"entities": small}])
                    small = []
                at = time.perf_counter()
                chunks = plan_chunks(ws, planned.name, workers)
                run.steps.append((time.perf_counter() - at, f"plan_chunks {planned.name}"))
                step([{"entities": [planned.name], "chunk": f"{lo}:{hi}"} for lo, hi in chunks])
                step([{"entities": [planned.name], "finish": True}])
            if small:
                step([{"entities": small}])
        run.seconds = time.perf_counter() - started
        run.cpu = cpu.share()
    finally:
        runner.close()
    run.peak_mb = runner.peak_mb
    return run


def check(run: Run, counts: dict[str, int]) -> None:
    """Rows per table, one mapping per row, and a whole-table diff that finds nothing."""
    with psycopg.connect(run.target) as conn:
        for table in DEMO_TABLES:
            row = conn.execute(f'SELECT count(*) FROM public."{table}"').fetchone()  # noqa: S608
            maps = conn.execute(
                "SELECT count(*), count(DISTINCT legacy_id), count(DISTINCT uuid_id)"
                " FROM isthmus.legacy_id_mappings WHERE entity_type = %s",
                (table,),
            ).fetchone()
            n = counts[table]
            if row is None or row[0] != n or maps != (n, n, n):
                raise SystemExit(f"{run.label}: {table}: {row} rows, mappings {maps}, expected {n}")
    diff = subprocess.run(
        [ISTHMUS, "--config", str(run.config), "--json", "diff"],
        capture_output=True,
        text=True,
        check=False,
    )
    if diff.returncode != 0:
        raise SystemExit(
            f"{run.label}: isthmus diff: differences or failure:\n{diff.stdout[-2000:]}"
        )
    print(f"   {run.label}: {sum(counts.values()):,} rows and mappings, diff clean", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split-rows", type=int, default=100_000)
    parser.add_argument("--modes", default="cli,warm")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    counts = expected_counts(args.scale)
    total = sum(counts.values())
    src = source_url("mysql", args.scale)
    print(f"== MariaDB → PostgreSQL, {total:,} rows, {os.cpu_count()} cores ==", flush=True)
    summary: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for mode in args.modes.split(","):
            ratios: list[float] = []
            for n in range(args.rounds):
                # alternate which goes first, so that a drifting machine favours neither
                runs: dict[str, Run] = {}
                for which in ("one", "many") if n % 2 == 0 else ("many", "one"):
                    if which == "one":
                        runs[which] = whole(src, args.scale, work, mode)
                    else:
                        runs[which] = chunked(
                            src, args.scale, work, mode, workers=args.workers, split=args.split_rows
                        )
                one, many = runs["one"], runs["many"]
                ratios.append(one.seconds / many.seconds)
                print(f"-- {mode}, round {n + 1} --", flush=True)
                for run in (one, many):
                    print(
                        f"{run.label:>22}: {run.seconds:6.2f} s {total / run.seconds:>9,.0f} rows/s"
                        f"  cores busy {run.cpu * 100:3.0f} %  peak RSS {run.peak_mb} MB",
                        flush=True,
                    )
                print(f"   ratio 1 process / {args.workers} processes = {ratios[-1]:.2f}")
                for run in (one, many):
                    print(f"   steps, {run.label}:")
                    for seconds, what in run.steps:
                        print(f"     {seconds:6.2f} s  {what}")
                check(one, counts)
                check(many, counts)
            ratios.sort()
            summary.append(
                f"{mode}: ratio 1 process / {args.workers} processes, median of {len(ratios)}:"
                f" {ratios[len(ratios) // 2]:.2f} (all: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    print("\n".join(["== summary ==", *summary]), flush=True)


if __name__ == "__main__":
    main()
