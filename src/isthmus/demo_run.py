"""``isthmus demo``: the whole story on the embedded default.

A synthetic legacy dental database in SQLite, the embedded PostgreSQL as target,
a config file written beside them so every other command can be tried on the
same data (``isthmus --config isthmus-demo/isthmus.toml plan``). The target tables
are derived from the source (``schema --apply``), everything is migrated, then the
legacy side changes (a few updates, new rows) and a second, differential run moves
only those. Then both sides change (the new system edits and adds rows too) and
``isthmus diff`` tells which side changed what, through the ID map; a bidirectional sync
job carries each change to the other side (the row the new system created gets a legacy
key), and a last diff finds nothing left.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from isthmus import demo
from isthmus.config import load_config
from isthmus.dialects import pgconn
from isthmus.diff import DiffResult, run_diff
from isthmus.jobs import create_job
from isthmus.migrate import run_migration
from isthmus.migrate_result import MigrationResult, Progress
from isthmus.plan import Plan
from isthmus.reports import show_report
from isthmus.state.schema import InitResult, upgrade_state_schema
from isthmus.sync import JobRun, run_job
from isthmus.target_ddl import apply_target_ddl, derive_target_ddl
from isthmus.urls import parse_url
from isthmus.validate import ValidationResult, run_validate
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
    migration: MigrationResult
    changes: dict[str, int]
    differential: MigrationResult
    both_changed: dict[str, int] = field(default_factory=dict)
    diff: DiffResult | None = None
    sync: JobRun | None = None
    after_sync: DiffResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    validation: ValidationResult | None = None
    report_html: Path | None = None

    @property
    def exit_code(self) -> int:
        codes = [self.migration.exit_code, self.differential.exit_code]
        if self.sync is not None:
            codes.append(self.sync.exit_code)
        if self.after_sync is not None:
            codes.append(self.after_sync.exit_code)
        if self.validation is not None:
            codes.append(self.validation.exit_code)
        return max(codes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "config": str(self.config_path),
            "legacy_rows": self.legacy_rows,
            "init": self.init,
            "plan": self.plan.to_dict(),
            "migration": self.migration.to_dict(),
            "legacy_changes": self.changes,
            "differential": self.differential.to_dict(),
            "both_sides_changed": self.both_changed,
            "diff": self.diff.to_dict() if self.diff else None,
            "sync": self.sync.to_dict() if self.sync else None,
            "after_sync": self.after_sync.to_dict() if self.after_sync else None,
            "validation": self.validation.to_dict() if self.validation else None,
            "report_html": str(self.report_html) if self.report_html else None,
            "seconds": self.seconds,
        }


def run_demo(
    scale: int,
    workdir: Path,
    *,
    seed: int = 42,
    step: Step | None = None,
    progress: Progress | None = None,
) -> DemoResult:
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
        say("starting the embedded PostgreSQL target")
        _reset_target(ws.target_conninfo)
        seconds["target"] = time.perf_counter() - started
        say("initialising the state schema")
        init = upgrade_state_schema(ws.engine, ws.state_schema)
        plan = ws.plan
        say("deriving the UUID-keyed target tables from the legacy schema (schema --apply)")
        ddl = derive_target_ddl(plan, config.target.schema_, source_dialect="sqlite")
        with ws.connect_target() as conn:
            apply_target_ddl(conn, ddl, ws.state_schema, config.target.schema_)
            conn.commit()
        started = time.perf_counter()
        say("migrating every table (UUIDs, foreign keys translated, mappings, checkpoints)")
        migration = run_migration(ws, progress=progress)
        seconds["migrate"] = time.perf_counter() - started
    say("changing the legacy database: updates and new rows")
    changes = change_legacy(legacy)
    with Workspace(config) as ws:
        started = time.perf_counter()
        say("differential migration: only what changed moves")
        differential = run_migration(ws, progress=progress)
        seconds["differential"] = time.perf_counter() - started
    say("changing both sides: the legacy application and the new one edit rows")
    both = change_legacy_again(legacy)
    with Workspace(config) as ws:
        with ws.connect_target() as conn:
            both.update(change_target(conn, ws.state_schema))
            conn.commit()
        started = time.perf_counter()
        say("isthmus diff: what differs, and which side changed it")
        found = run_diff(ws)
        seconds["diff"] = time.perf_counter() - started
        say("a bidirectional sync job: each change flows to the other side")
        create_job(
            ws,
            "demo-sync",
            job_type="manual_sync",
            direction="bidirectional",
            conflict="source_wins",
        )
        started = time.perf_counter()
        synced = run_job(ws, "demo-sync", progress)
        seconds["sync"] = time.perf_counter() - started
        say("isthmus diff again: nothing differs any more")
        after = run_diff(ws)
        started = time.perf_counter()
        say("isthmus validate: completeness, data, relationships and performance, per table")
        validation = run_validate(ws)
        seconds["validate"] = time.perf_counter() - started
        report_html = workdir / "validation.html"
        report = show_report(ws, str(validation.run_id), "html")
        report_html.write_text(report.html(), encoding="utf-8")
    result = DemoResult(
        workdir,
        config_path,
        rows,
        init,
        plan,
        migration,
        changes,
        differential,
        both,
        found,
        synced,
        after,
        seconds,
    )
    result.validation, result.report_html = validation, report_html
    return result


def change_legacy_again(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        updated = conn.execute(
            "UPDATE doctors SET hourly_rate = hourly_rate + 5 WHERE id % 7 = 0"
        ).rowcount
    return {"legacy_updated": updated}


def change_target(conn: psycopg.Connection[Any], state_schema: str) -> dict[str, int]:
    """What the new system does meanwhile: edits rows, adds one, edits one the legacy side
    edited too (a conflict both sides made)."""
    m = sql.Identifier(state_schema, "legacy_id_mappings")
    edited = conn.execute(
        sql.SQL(
            "UPDATE public.patients SET email = 'moved@example.com' WHERE id IN (SELECT uuid_id"
            " FROM {} WHERE entity_type = 'patients' ORDER BY legacy_id LIMIT 3)"
        ).format(m)
    ).rowcount
    edited += conn.execute(
        sql.SQL(
            "UPDATE public.doctors SET specialty = specialty || ' (new system)' WHERE id IN (SELECT uuid_id"
            " FROM {} WHERE entity_type = 'doctors' AND legacy_id % 7 = 0 ORDER BY legacy_id"
            " LIMIT 1)"
        ).format(m)
    ).rowcount
    added = conn.execute(
        "INSERT INTO public.offices SELECT gen_random_uuid(), 'Opened in the new system',"
        " address, city, phone, timezone, is_active, created_at, updated_at FROM public.offices"
        " LIMIT 1"
    ).rowcount
    return {"target_updated": edited, "target_inserted": added}


def change_legacy(path: Path) -> dict[str, int]:
    """What a live legacy application does meanwhile: edits some rows, adds some."""
    with sqlite3.connect(path) as conn:
        updated = conn.execute(
            "UPDATE patients SET phone = phone || ' ext. 9', updated_at = '2026-01-02 03:04:05'"
            " WHERE id % 50 = 0"
        ).rowcount
        updated += conn.execute(
            "UPDATE orders SET status = 'cancelled', total = total + 1 WHERE id % 97 = 0"
        ).rowcount
        office = conn.execute("SELECT max(id) + 1 FROM offices").fetchone()[0]
        conn.execute(
            "INSERT INTO offices (id, name, address, city, phone, timezone, is_active,"
            " created_at, updated_at) SELECT ?, 'Harbour Dental (new)', address, city, phone,"
            " timezone, 1, '2026-01-02 03:04:05', '2026-01-02 03:04:05' FROM offices LIMIT 1",
            (office,),
        )
        profile = conn.execute("SELECT max(id) + 1 FROM profiles").fetchone()[0]
        conn.execute(
            "INSERT INTO profiles (id, office_id, email, first_name, last_name, role, notes,"
            " created_at, updated_at) SELECT ?, ?, 'new.hire@example.com', 'Ana', 'Núñez',"
            " 'hygienist', NULL, created_at, updated_at FROM profiles LIMIT 1",
            (profile, office),
        )
    return {"updated": updated, "inserted": 2}


def _reset_target(conninfo: str) -> None:
    """Each demo starts from an empty target: drop what an earlier demo left."""
    with pgconn.translated(), pgconn.connect(parse_url(conninfo), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS isthmus CASCADE")
        for name in reversed(demo.DEMO_TABLES):
            conn.execute(f'DROP TABLE IF EXISTS public."{name}" CASCADE')
