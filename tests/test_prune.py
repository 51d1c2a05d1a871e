"""``isthmus prune`` on a real PostgreSQL: exactly the old finished history goes, and the
newest of each group, unresolved, unexpired, live and still-referenced rows stay."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from isthmus import commands
from isthmus.config import Config, config_from_dict
from isthmus.errors import ConfigError
from isthmus.prune import run_prune
from isthmus.state.schema import upgrade_state_schema
from isthmus.urls import DatabaseURL
from isthmus.workspace import Workspace
from test_state_support import state_engine, unique_schema


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


@pytest.fixture
def schema(pg_url: DatabaseURL) -> Iterator[str]:
    """A state schema at head of its own, for one test."""
    engine = state_engine(pg_url)
    name = unique_schema("prune")
    upgrade_state_schema(engine, name)
    yield name
    engine.dispose()


def make_config(pg_url: DatabaseURL, schema: str, tmp_path: Path, **extra: Any) -> Config:
    raw = {
        "source": {"url": f"sqlite:///{tmp_path / 'legacy.db'}"},
        "target": {"url": pg_url.raw, "state_schema": schema},
        **extra,
    }
    return config_from_dict(raw)


class Seed:
    """Inserts control rows with chosen timestamps, straight into the tables."""

    def __init__(self, url: DatabaseURL, schema: str) -> None:
        self.conn = psycopg.connect(url.raw, autocommit=True)
        self.schema = schema

    def close(self) -> None:
        self.conn.close()

    def insert(self, table: str, **values: Any) -> Any:
        columns = list(values)
        statement = sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}) RETURNING id").format(
            t=sql.Identifier(self.schema, table),
            c=sql.SQL(", ").join(map(sql.Identifier, columns)),
            v=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        params = [Jsonb(v) if isinstance(v, dict | list) else v for v in values.values()]
        row = self.conn.execute(statement, params).fetchone()
        assert row is not None
        return row[0]

    def insert_uuid(self, table: str, **values: Any) -> UUID:
        key = self.insert(table, **values)
        assert isinstance(key, UUID)
        return key

    def job(self, name: str) -> UUID:
        return self.insert_uuid(
            "synchronization_jobs",
            job_name=name,
            job_type="manual_sync",
            entities_to_sync=["offices", "doctors"],
            sync_direction="source_to_target",
            conflict_resolution="source_wins",
            max_records_per_batch=100,
        )

    def checkpoint(
        self,
        entity: str,
        status: str,
        days: float,
        *,
        operation: str = "differential_migration",
        job: UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> UUID:
        """A checkpoint created ``days`` ago (the trigger sets updated_at to created_at)."""
        values: dict[str, Any] = {
            "entity_type": entity,
            "operation_type": operation,
            "status": status,
            "batch_size": 100,
            "job_id": job,
            "created_at": ago(days),
            "metadata": metadata or {},
        }
        if status != "pending":
            values["started_at"] = ago(days)
        if status == "completed":
            values["completed_at"] = ago(days) + timedelta(minutes=1)
        if status == "failed":
            values["error_message"] = "boom"
        return self.insert_uuid("migration_checkpoints", **values)

    def differential(
        self,
        entity: str | None,
        kind: str,
        days: float,
        *,
        resolved_days: float | None,
        source_table: str = "legacy_table",
        checkpoint: UUID | None = None,
    ) -> UUID:
        return self.insert_uuid(
            "data_differentials",
            checkpoint_id=checkpoint,
            source_table=source_table,
            target_table="target_table",
            comparison_type=kind,
            legacy_ids=[1, 2],
            record_count=2,
            resolved=resolved_days is not None,
            resolved_at=None if resolved_days is None else ago(resolved_days),
            created_at=ago(days),
            metadata={} if entity is None else {"entity": entity},
        )

    def report(
        self,
        entity: str,
        kind: str,
        days: float,
        *,
        expires_days: float,
        job: UUID | None = None,
        checkpoint: UUID | None = None,
    ) -> UUID:
        """A report generated ``days`` ago that expires ``expires_days`` ago (negative:
        in the future)."""
        return self.insert_uuid(
            "migration_validation_reports",
            job_id=job,
            checkpoint_id=checkpoint,
            validation_type=kind,
            source_entity=entity,
            target_entity=entity,
            records_validated=10,
            validation_passed=True,
            execution_time_ms=5,
            generated_at=ago(days),
            expires_at=ago(expires_days),
        )

    def quarantined(
        self, key: str, days: float, *, resolved_days: float | None, checkpoint: UUID | None = None
    ) -> UUID:
        stamp = ago(days if resolved_days is None else resolved_days)
        return self.insert_uuid(
            "quarantined_rows",
            entity_type="offices",
            source_table="offices",
            legacy_key=key,
            kind="orphan",
            reason="no parent",
            checkpoint_id=checkpoint,
            resolved=resolved_days is not None,
            resolved_at=None if resolved_days is None else ago(resolved_days),
            created_at=ago(days),
            updated_at=stamp,
        )

    def deletion(self, entity: str, days: float) -> int:
        return int(
            self.insert(
                "target_deletions",
                entity_type=entity,
                target_key=UUID(int=int(days * 1000)),
                deleted_at=ago(days),
            )
        )

    def ids(self, table: str) -> set[Any]:
        statement = sql.SQL("SELECT id FROM {}").format(sql.Identifier(self.schema, table))
        return {r[0] for r in self.conn.execute(statement).fetchall()}

    def snapshot(self) -> dict[str, set[Any]]:
        tables = [
            "migration_checkpoints",
            "data_differentials",
            "migration_validation_reports",
            "quarantined_rows",
            "target_deletions",
            "synchronization_jobs",
            "legacy_id_mappings",
        ]
        if self.has_procrastinate():
            tables += ["procrastinate_jobs", "procrastinate_events"]
        return {t: self.ids(t) for t in tables}

    # -- procrastinate ---------------------------------------------------------------------

    def install_procrastinate(self) -> None:
        from procrastinate.schema import SchemaManager

        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(self.schema))
            )
            self.conn.execute(SchemaManager.get_schema())
        # procrastinate's triggers name its tables without a schema, as the worker's session
        self.conn.execute(
            sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema))
        )

    def has_procrastinate(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(format('%%I.procrastinate_jobs', %s::text))", (self.schema,)
        ).fetchone()
        return bool(row and row[0])

    def pjob(self, status: str, event_days: list[float]) -> int:
        job = int(
            self.insert("procrastinate_jobs", queue_name="default", task_name="t", status=status)
        )
        statement = sql.SQL("DELETE FROM {} WHERE job_id = %s").format(
            sql.Identifier(self.schema, "procrastinate_events")
        )
        self.conn.execute(statement, (job,))  # the 'deferred' event a todo insert writes
        for days in event_days:
            self.insert("procrastinate_events", job_id=job, type="started", at=ago(days))
        return job


@pytest.fixture
def seed(pg_url: DatabaseURL, schema: str) -> Iterator[Seed]:
    s = Seed(pg_url, schema)
    yield s
    s.close()


def plant(seed: Seed, *, procrastinate: bool = True) -> dict[str, dict[str, Any]]:
    """Rows of every kind; returns {table: {label: id}} and which labels prune must remove."""
    job = seed.job("nightly")
    cp: dict[str, Any] = {}
    # offices / differential_migration / no job: NULL job_id is one group
    cp["a1_old_completed"] = seed.checkpoint("offices", "completed", 90)
    cp["a2_old_failed"] = seed.checkpoint("offices", "failed", 80)
    cp["a3_newest_completed"] = seed.checkpoint("offices", "completed", 70)
    cp["a4_newest"] = seed.checkpoint("offices", "failed", 60)
    cp["a5_paused"] = seed.checkpoint("offices", "paused", 100)
    cp["a6_in_progress"] = seed.checkpoint("offices", "in_progress", 100)
    cp["a7_pending"] = seed.checkpoint("offices", "pending", 100)
    # the same entity and operation for a job: a group of its own
    cp["c1_job_old"] = seed.checkpoint("offices", "completed", 90, job=job)
    cp["c2_job_newest_completed"] = seed.checkpoint("offices", "completed", 85, job=job)
    cp["c3_job_newest"] = seed.checkpoint("offices", "failed", 84, job=job)
    # doctors / validation / no job
    cp["b1_open_differential"] = seed.checkpoint("doctors", "completed", 50, operation="validation")
    cp["b2_report"] = seed.checkpoint("doctors", "completed", 45, operation="validation")
    cp["b2b_quarantine"] = seed.checkpoint("doctors", "completed", 44, operation="validation")
    cp["b3_only_pruned_refs"] = seed.checkpoint("doctors", "completed", 40, operation="validation")
    cp["b4_recent"] = seed.checkpoint(
        "doctors",
        "completed",
        2,
        operation="validation",
        metadata={
            "command": "diff",
            "cursor": {"target_clock": str(ago(2)), "deletes_captured": True},
        },
    )
    # a stale comparison with cursor marks 100 days back: captures after them must stay
    cp["h1_stale_marks"] = seed.checkpoint(
        "doctors",
        "completed",
        100,
        operation="sync_operation",
        job=job,
        metadata={
            "command": "sync",
            "cursor": {"target_clock": str(ago(100)), "deletes_captured": True},
        },
    )
    cp["p1_unreadable_marks"] = seed.checkpoint(
        "patients",
        "completed",
        1,
        operation="validation",
        metadata={"cursor": {"target_clock": "not a time", "deletes_captured": True}},
    )

    df: dict[str, Any] = {}
    df["d0_unresolved"] = seed.differential(
        "offices", "missing_records", 100, resolved_days=None, checkpoint=cp["b1_open_differential"]
    )
    df["d1_old"] = seed.differential("offices", "missing_records", 61, resolved_days=60)
    df["d2_old_refs_b3"] = seed.differential(
        "offices", "missing_records", 51, resolved_days=50, checkpoint=cp["b3_only_pruned_refs"]
    )
    df["d3_newest"] = seed.differential("offices", "missing_records", 41, resolved_days=40)
    df["e1_old"] = seed.differential(
        None, "conflicted_records", 61, resolved_days=60, source_table="legacy_doctors"
    )
    df["e2_recent"] = seed.differential(
        None, "conflicted_records", 3, resolved_days=2, source_table="legacy_doctors"
    )
    df["f1_alone"] = seed.differential("offices", "deleted_records", 61, resolved_days=60)
    # grouped by metadata.entity, not by the shared source table
    df["g1_patients"] = seed.differential(
        "patients", "deleted_records", 70, resolved_days=69, source_table="legacy_x"
    )
    df["g2_orders"] = seed.differential(
        "orders", "deleted_records", 60, resolved_days=59, source_table="legacy_x"
    )

    rp: dict[str, Any] = {}
    rp["r1_old_expired"] = seed.report("offices", "data_integrity", 60, expires_days=53)
    rp["r2_old_expired"] = seed.report("offices", "data_integrity", 50, expires_days=43)
    rp["r3_newest"] = seed.report("offices", "data_integrity", 40, expires_days=33)
    rp["r4_alone"] = seed.report("offices", "completeness_check", 60, expires_days=53)
    rp["r5_job"] = seed.report("offices", "data_integrity", 60, expires_days=53, job=job)
    rp["r6_not_expired"] = seed.report("doctors", "data_integrity", 60, expires_days=-10)
    rp["r7_recent"] = seed.report("doctors", "data_integrity", 20, expires_days=13)
    rp["r8_refs_b2"] = seed.report(
        "doctors", "relationship_integrity", 2, expires_days=-5, checkpoint=cp["b2_report"]
    )

    qr: dict[str, Any] = {}
    qr["q1_old_resolved"] = seed.quarantined("1", 70, resolved_days=60)
    qr["q2_open"] = seed.quarantined("2", 100, resolved_days=None, checkpoint=cp["b2b_quarantine"])
    qr["q3_recent_resolved"] = seed.quarantined("3", 70, resolved_days=2)

    td: dict[str, Any] = {}
    td["t1_old"] = seed.deletion("offices", 60)
    td["t2_recent"] = seed.deletion("offices", 1)
    td["t3_after_stale_marks"] = seed.deletion("doctors", 80)
    td["t4_before_marks"] = seed.deletion("doctors", 120)
    td["t5_unreadable_marks"] = seed.deletion("patients", 60)

    planted = {
        "migration_checkpoints": cp,
        "data_differentials": df,
        "migration_validation_reports": rp,
        "quarantined_rows": qr,
        "target_deletions": td,
    }
    if procrastinate:
        seed.install_procrastinate()
        pj: dict[str, Any] = {}
        pj["p1_old_succeeded"] = seed.pjob("succeeded", [61, 60])
        pj["p2_recent_failed"] = seed.pjob("failed", [70, 1])
        pj["p3_old_todo"] = seed.pjob("todo", [60])
        pj["p4_old_cancelled"] = seed.pjob("cancelled", [60])
        pj["p5_no_events"] = seed.pjob("succeeded", [])
        seed.insert(
            "procrastinate_periodic_defers",
            task_name="t",
            defer_timestamp=1,
            job_id=pj["p1_old_succeeded"],
        )
        planted["procrastinate_jobs"] = pj
    return planted


GONE = {
    "migration_checkpoints": {
        "a1_old_completed",
        "a2_old_failed",
        "c1_job_old",
        "b3_only_pruned_refs",
    },
    "data_differentials": {"d1_old", "d2_old_refs_b3", "e1_old"},
    "migration_validation_reports": {"r1_old_expired", "r2_old_expired"},
    "quarantined_rows": {"q1_old_resolved"},
    "target_deletions": {"t1_old", "t4_before_marks"},
    "procrastinate_jobs": {"p1_old_succeeded", "p4_old_cancelled"},
}


def test_prune_removes_exactly_the_old_finished_history(
    pg_url: DatabaseURL, schema: str, seed: Seed, tmp_path: Path
) -> None:
    planted = plant(seed)
    before = seed.snapshot()
    config = make_config(pg_url, schema, tmp_path)

    with Workspace(config) as ws:
        dry = run_prune(ws, dry_run=True)
    assert dry.dry_run and dry.days == 30
    assert seed.snapshot() == before, "a dry run changed something"
    expected = {table: len(labels) for table, labels in GONE.items()}
    assert {t: dry.counts()[t] for t in GONE} == expected
    assert dry.procrastinate_events == 3

    with Workspace(config) as ws:
        done = run_prune(ws)
    assert done.counts() == dry.counts()
    assert not done.dry_run
    assert abs(done.cutoff - ago(30)) < timedelta(minutes=5)

    after = seed.snapshot()
    for table, labels in planted.items():
        gone = {label for label, key in labels.items() if key not in after[table]}
        assert gone == GONE[table], table
    assert after["synchronization_jobs"] == before["synchronization_jobs"]
    # the events of the removed jobs went with them; the others' stayed
    remaining_jobs = after["procrastinate_jobs"]
    events = seed.conn.execute(
        sql.SQL("SELECT DISTINCT job_id FROM {}").format(
            sql.Identifier(schema, "procrastinate_events")
        )
    ).fetchall()
    assert {r[0] for r in events} <= remaining_jobs
    assert len(before["procrastinate_events"]) - len(after["procrastinate_events"]) == 3

    with Workspace(config) as ws:
        again = run_prune(ws)
    assert again.total == 0, "a second prune found more"


def test_days_come_from_the_argument_or_the_config(
    pg_url: DatabaseURL, schema: str, seed: Seed, tmp_path: Path
) -> None:
    plant(seed, procrastinate=False)
    # 95 days: only what is older than that may go (a1 at 90 days stays)
    config = make_config(pg_url, schema, tmp_path, retention={"days": 95})
    with Workspace(config) as ws:
        result = run_prune(ws, dry_run=True)
    assert result.days == 95
    assert result.procrastinate_jobs is None and result.procrastinate_events is None
    assert result.counts()["migration_checkpoints"] == 0
    assert result.counts()["target_deletions"] == 1  # t4, 120 days back
    with Workspace(config) as ws:
        narrower = run_prune(ws, days=45, dry_run=True)
    assert narrower.days == 45
    # at 45 days r2 (50 days) and d2 (50 days) are older than the cutoff; b3 (40) is not
    assert narrower.counts()["data_differentials"] == 3
    assert narrower.counts()["migration_checkpoints"] == 3


def test_retention_config_is_checked(pg_url: DatabaseURL, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retention\.days"):
        make_config(pg_url, "isthmus", tmp_path, retention={"days": 0})
    with pytest.raises(ConfigError, match="did you mean 'days'"):
        make_config(pg_url, "isthmus", tmp_path, retention={"dayz": 3})
    assert make_config(pg_url, "isthmus", tmp_path).retention.days == 30


def test_prune_needs_an_initialised_state_schema(pg_url: DatabaseURL, tmp_path: Path) -> None:
    from isthmus.state.schema import StateSchemaNotReady

    config = make_config(pg_url, unique_schema("none"), tmp_path)
    with pytest.raises(StateSchemaNotReady, match="isthmus init"):
        commands.prune(config)


def test_prune_through_the_cli(
    pg_url: DatabaseURL, schema: str, seed: Seed, tmp_path: Path
) -> None:
    planted = plant(seed, procrastinate=False)
    (tmp_path / "isthmus.toml").write_text(
        f'[source]\nurl = "sqlite:///{tmp_path / "legacy.db"}"\n'
        f'[target]\nurl = "{pg_url.raw}"\nstate_schema = "{schema}"\n'
        "[retention]\ndays = 30\n",
        encoding="utf-8",
    )

    def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "isthmus.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dry = isthmus("--json", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] is True and doc["days"] == 30
    assert doc["deleted"]["migration_checkpoints"] == 4
    assert doc["deleted"]["procrastinate_jobs"] is None
    assert doc["total"] == 4 + 3 + 2 + 1 + 2
    assert planted["migration_checkpoints"]["a1_old_completed"] in seed.ids("migration_checkpoints")

    table = isthmus("prune", "--days", "30")
    assert table.returncode == 0, table.stderr
    assert "migration_checkpoints" in table.stdout and "12 rows removed" in table.stdout
    assert planted["migration_checkpoints"]["a1_old_completed"] not in seed.ids(
        "migration_checkpoints"
    )

    bad = isthmus("prune", "--days", "0")
    assert bad.returncode == 2
