"""``isthmus demo``: the whole story on the embedded default.

A synthetic legacy dental database in SQLite, the embedded PostgreSQL as target,
a config file written beside them so every other command can be tried on the
same data (``isthmus --config isthmus-demo/isthmus.toml plan``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus import demo
from isthmus.config import load_config
from isthmus.dialects import pgconn
from isthmus.plan import Plan
from isthmus.state.schema import InitResult, upgrade_state_schema
from isthmus.urls import parse_url
from isthmus.workspace import Workspace

DEMO_DATABASE = "isthmus_demo"
Step = Callable[[str], None]


@dataclass
class DemoResult:
    workdir: Path
    config_path: Path
    legacy_rows: dict[str, int]
    init: InitResult
    plan: Plan
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "config": str(self.config_path),
            "legacy_rows": self.legacy_rows,
            "init": self.init,
            "plan": self.plan.to_dict(),
            "seconds": self.seconds,
        }


def run_demo(scale: int, workdir: Path, *, seed: int = 42, step: Step | None = None) -> DemoResult:
    say = step or (lambda _message: None)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    legacy = workdir / "legacy.db"
    config_path = workdir / "isthmus.toml"
    config_path.write_text(
        "# Written by `isthmus demo`.\n"
        f'[source]\nurl = "sqlite:///{legacy}"\n'
        f'[target]\nurl = "embedded://?dbname={DEMO_DATABASE}"\nstate_schema = "isthmus"\n'
        '[migration]\nbatch_size = 10000\nuuid = "uuid7"\non_orphan = "quarantine"\n',
        encoding="utf-8",
    )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    say(f"generating the legacy dental database ({scale} offices) in {legacy}")
    rows = demo.generate_legacy(
        parse_url(f"sqlite:///{legacy}"), scale=scale, seed=seed, replace=True
    )
    seconds["generate"] = time.perf_counter() - started

    config = load_config(config_path)
    with Workspace(config) as ws:
        started = time.perf_counter()
        say("starting the embedded PostgreSQL target and creating its UUID-keyed tables")
        _reset_target(ws.target_conninfo)
        demo.create_target_schema(ws.target_conninfo, replace=True)
        seconds["target"] = time.perf_counter() - started
        say("initialising the state schema")
        init = upgrade_state_schema(ws.engine, ws.state_schema)
        plan = ws.plan
    return DemoResult(workdir, config_path, rows, init, plan, seconds)


def _reset_target(conninfo: str) -> None:
    """Each demo starts from an empty target: drop what an earlier demo left."""
    with pgconn.translated(), pgconn.connect(parse_url(conninfo), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS isthmus CASCADE")
        for name in reversed(demo.DEMO_TABLES):
            conn.execute(f'DROP TABLE IF EXISTS public."{name}" CASCADE')
