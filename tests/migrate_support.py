"""Helpers for the migration tests: a migrated-setup builder and a row-for-row equality checker.

``make_setup`` writes the synthetic dental legacy database into a real source (SQLite,
MariaDB or PostgreSQL), a config file next to it, and prepares a fresh PostgreSQL target
(`init`, `schema --apply`). ``check_equal`` proves the target is a faithful copy of the
source: canonical checksums row for row, counts, mappings unique both ways, and every
translated foreign key pointing at the UUID of the same legacy parent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from isthmus import commands
from isthmus.config import Config, load_config
from isthmus.demo import generate_legacy
from isthmus.loadplan import ColumnLoad, EntityLoad, build_load
from isthmus.row_checksums import source_checksums, target_checksums
from isthmus.target import reflect_table
from isthmus.urls import DatabaseURL
from isthmus.workspace import Workspace

STATE = "isthmus"
DEMO_ENTITIES = ["offices", "profiles", "doctors", "patients", "orders", "products"]


def isthmus_executable() -> str:
    """The installed ``isthmus`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "isthmus"
    if beside.exists():
        return str(beside)
    found = shutil.which("isthmus")
    assert found, "the isthmus console script is not installed"
    return found


@dataclass
class Setup:
    source: DatabaseURL
    target: DatabaseURL
    config_path: Path
    counts: dict[str, int]  # source rows per table as generated

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the installed ``isthmus --config F ARGS`` to the end."""
        return subprocess.run(
            [isthmus_executable(), "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=cli_env(),
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [isthmus_executable(), "--config", str(self.config_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )

    def target_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target.raw, autocommit=True)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    return env


def write_config(path: Path, source: DatabaseURL, target: DatabaseURL, migration: str = "") -> Path:
    path.write_text(
        f'[source]\nurl = "{source.raw}"\n'
        f'[target]\nurl = "{target.raw}"\nstate_schema = "{STATE}"\n'
        + (f"[migration]\n{migration}\n" if migration else ""),
        encoding="utf-8",
    )
    return path


def make_setup(
    source: DatabaseURL,
    target: DatabaseURL,
    directory: Path,
    *,
    scale: int,
    migration: str = "",
    foreign_keys: bool = True,
    orphans: int = 0,
) -> Setup:
    """Legacy demo data in ``source``; ``target`` initialised with its tables created."""
    counts = generate_legacy(source, scale=scale, foreign_keys=foreign_keys, orphans=orphans)
    return prepare_target(source, target, directory, counts, migration=migration)


def prepare_target(
    source: DatabaseURL,
    target: DatabaseURL,
    directory: Path,
    counts: dict[str, int],
    *,
    migration: str = "",
) -> Setup:
    """A config in ``directory``; the state schema and the target tables in ``target``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(directory / "isthmus.toml", source, target, migration)
    config = load_config(path)
    commands.init(config)
    applied = commands.schema(config, apply=True).applied
    assert applied is not None and sorted(applied.created) == sorted(DEMO_ENTITIES)
    return Setup(source, target, path, counts)


# -- equality ----------------------------------------------------------------------------------


@dataclass
class Equality:
    rows: dict[str, int]  # entity → rows on each side

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _loads(ws: Workspace, conn: psycopg.Connection[Any]) -> list[EntityLoad]:
    schema = ws.config.target.schema_
    return [
        build_load(
            p, reflect_table(conn, schema, p.entity.target_table), ws.plan, ws.source.capabilities
        )
        for p in ws.plan.entities
    ]


def check_equal(config: Config, entities: list[str] | None = None) -> Equality:
    """Assert that every (selected) entity's target is a row-for-row copy of its source."""
    rows: dict[str, int] = {}
    with Workspace(config) as ws, psycopg.connect(ws.target_conninfo) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for load in _loads(ws, conn):
            if entities is not None and load.name not in entities:
                continue
            assert load.uuid_keyed, load.name
            rows[load.name] = _check_entity(ws, conn, load)
    return Equality(rows)


def _check_entity(ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad) -> int:
    name = load.name
    mappings = sql.Identifier(STATE, "legacy_id_mappings")
    target = sql.Identifier(load.target.schema, load.target.name)
    key = sql.Identifier(load.columns[0].target)

    source = dict(source_checksums(ws.source, load))
    copied = list(target_checksums(conn, load, STATE))
    repeated = [k for k, n in Counter(k for k, _ in copied).items() if n > 1]
    assert not repeated, f"{name}: legacy ids present twice in the target: {repeated[:5]}"
    target_sums = dict(copied)
    missing = sorted(source.keys() - target_sums.keys())
    extra = sorted(target_sums.keys() - source.keys())
    differ = sorted(k for k in source.keys() & target_sums.keys() if source[k] != target_sums[k])
    assert not missing, f"{name}: {len(missing)} source rows not in the target: {missing[:5]}"
    assert not extra, f"{name}: {len(extra)} target rows not in the source: {extra[:5]}"
    assert not differ, f"{name}: {len(differ)} rows differ: {differ[:5]}"

    def one(query: sql.Composed, *params: Any) -> Any:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    target_rows = one(sql.SQL("SELECT count(*) FROM {}").format(target))
    assert target_rows == len(source), f"{name}: {target_rows} target rows, {len(source)} source"
    count, legacy, uuids, no_sum, stale = conn.execute(
        sql.SQL(
            "SELECT count(*), count(DISTINCT legacy_id), count(DISTINCT uuid_id),"
            " count(*) FILTER (WHERE checksum IS NULL OR migration_batch IS NULL"
            "  OR source_table IS NULL OR target_table IS NULL),"
            " count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.{k} = m.uuid_id))"
            " FROM {m} m WHERE entity_type = %s"
        ).format(t=target, k=key, m=mappings),
        (name,),
    ).fetchone() or (0, 0, 0, 0, 0)
    assert count == len(source), f"{name}: {count} mappings for {len(source)} source rows"
    assert legacy == count and uuids == count, f"{name}: duplicate legacy_id or uuid in mappings"
    assert no_sum == 0, f"{name}: {no_sum} mappings without checksum/batch/source/target table"
    assert stale == 0, f"{name}: {stale} mappings point at no target row"
    # The checksum stored in each mapping is the one of the source row as it is now.
    stored = dict(
        conn.execute(
            sql.SQL("SELECT legacy_id, checksum FROM {} WHERE entity_type = %s").format(mappings),
            (name,),
        ).fetchall()
    )
    assert stored == source, f"{name}: mapping checksums differ from the source rows"
    for col in load.columns:
        if col.parent is not None and col.role in ("reference", "deferred"):
            _check_reference(ws, conn, load, col)
    return len(source)


def _check_reference(
    ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad, ref: ColumnLoad
) -> None:
    """Each target FK is the UUID that the mappings give the row's legacy parent, and that
    parent row exists in the parent's target table."""
    key = load.columns[0]
    source_column, target_column, parent = ref.source, ref.target, ref.parent
    assert parent is not None
    expected: dict[int, int | None] = {}
    for batch in ws.source.stream_text(
        load.source_table, [key.source, source_column], [key.source], batch_size=20_000
    ):
        for raw_key, raw_parent in batch:
            value = ref.normalizer.canonical(raw_parent)
            expected[int(key.normalizer.canonical(raw_key))] = (
                None if value == b"\\N" else int(value)
            )
    parent_table = ws.plan[parent].entity.target_table
    parent_key = ws.plan[parent].entity.target_key or "id"
    query = sql.SQL(
        "SELECT m.legacy_id, pm.legacy_id, t.{fk} IS NOT NULL, p.{pk} IS NOT NULL"
        " FROM {t} t JOIN {maps} m ON m.entity_type = %s AND m.uuid_id = t.{k}"
        " LEFT JOIN {maps} pm ON pm.entity_type = %s AND pm.uuid_id = t.{fk}"
        " LEFT JOIN {pt} p ON p.{pk} = t.{fk}"
    ).format(
        fk=sql.Identifier(target_column),
        pk=sql.Identifier(parent_key),
        t=sql.Identifier(load.target.schema, load.target.name),
        maps=sql.Identifier(STATE, "legacy_id_mappings"),
        k=sql.Identifier(key.target),
        pt=sql.Identifier(load.target.schema, parent_table),
    )
    wrong: list[tuple[int, int | None, int | None]] = []
    dangling: list[int] = []
    for legacy, parent_legacy, has_fk, parent_exists in conn.execute(query, (load.name, parent)):
        if expected.get(legacy) != parent_legacy:
            wrong.append((legacy, expected.get(legacy), parent_legacy))
        if has_fk and not parent_exists:
            dangling.append(legacy)
    assert not wrong, (
        f"{load.name}.{target_column}: FK resolves to another legacy {parent} "
        f"(legacy id, expected parent, found parent): {wrong[:5]}"
    )
    assert not dangling, f"{load.name}.{target_column}: FK to no {parent} row: {dangling[:5]}"


# -- checkpoints and the rest ------------------------------------------------------------------


def checkpoints(setup: Setup, entity: str | None = None) -> list[dict[str, Any]]:
    """Differential-migration checkpoints, oldest first."""
    with setup.target_conn() as conn:
        cur = conn.execute(
            sql.SQL(
                "SELECT id, entity_type, status, last_processed_id, records_processed,"
                " records_total, error_message, operation_type, metadata"
                " FROM {} WHERE operation_type = 'differential_migration'"
                " AND (%s::text IS NULL OR entity_type = %s) ORDER BY created_at, id"
            ).format(sql.Identifier(STATE, "migration_checkpoints")),
            (entity, entity),
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def latest_checkpoints(setup: Setup) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for c in checkpoints(setup):
        latest[c["entity_type"]] = c
    return latest


def target_constraints(setup: Setup) -> dict[str, set[str]]:
    """Constraint types (p, f, u) on each target table in ``public``."""
    with setup.target_conn() as conn:
        rows = conn.execute(
            "SELECT c.relname, k.contype FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for table, kind in rows:
        found.setdefault(table, set()).add(kind)
    return found


def result_entities(stdout: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(stdout)
    return {e["entity"]: e for e in doc["entities"]}


def fetch(url: DatabaseURL, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the source with its own driver; parameters are marked ``%s``."""
    if url.dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.database or "")
        try:
            return [tuple(r) for r in conn.execute(query.replace("%s", "?"), params)]
        finally:
            conn.close()
    if url.dialect == "postgresql":
        with psycopg.connect(url.raw) as pg:
            return [tuple(r) for r in pg.execute(query, params)]
    from dialect_support import mysql_admin

    my = mysql_admin(url)
    try:
        with my.cursor() as cur:
            cur.execute(query, params or None)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        my.close()
