"""Validation reports: completeness, data integrity, relationship integrity and performance,
per entity, each stored as a ``migration_validation_reports`` row.

One ``isthmus validate`` is one *validation run* (``metadata.run_id`` on each of its reports):
for every selected entity in plan order, every selected type, each check streaming through
the databases (:mod:`isthmus.validate_completeness`, :mod:`isthmus.validate_data`,
:mod:`isthmus.validate_relations`, :mod:`isthmus.validate_performance`). A report is stored
as soon as its check ends, so an interrupted run keeps what it found. Reports expire after
``[validation] expires_hours`` and then show as stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from isthmus import mapping
from isthmus.diff import DiffContext, EntityRun
from isthmus.diff_classify import Found
from isthmus.errors import UsageError
from isthmus.loadplan import EntityLoad, build_load
from isthmus.migrate_result import Progress
from isthmus.sessions import target_session
from isthmus.state.models import MigrationValidationReport
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.target import reflect_table
from isthmus.validate_check import (
    COMPLETENESS,
    DATA,
    PERFORMANCE,
    RELATIONSHIPS,
    VALIDATION_TYPES,
    Check,
)
from isthmus.validate_completeness import check_completeness
from isthmus.validate_data import check_data
from isthmus.validate_keptkey import check_kept_completeness, check_kept_data
from isthmus.validate_performance import check_performance
from isthmus.validate_relations import check_relationships
from isthmus.workspace import Workspace


@dataclass
class ValidationResult:
    run_id: UUID
    checks: list[Check]
    reports: list[MigrationValidationReport]
    seconds: float
    job_id: UUID | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def exit_code(self) -> int:
        """1 when any validation failed, as the CLI contract says."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "job_id": str(self.job_id) if self.job_id else None,
            "passed": not self.failed,
            "reports": [
                {"id": str(r.id), **c.to_dict()}
                for c, r in zip(self.checks, self.reports, strict=True)
            ],
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def parse_types(types: Iterable[str] | None) -> list[str]:
    """The validation types asked for, in run order (all four when none); UsageError for
    an unknown one."""
    wanted: list[str] = []
    for t in types or []:
        for part in t.split(","):
            name = part.strip()
            if not name:
                continue
            if name == "all":
                wanted.extend(VALIDATION_TYPES)
            elif name not in VALIDATION_TYPES:
                raise UsageError(
                    f"unknown validation type {name!r} (types: {', '.join(VALIDATION_TYPES)})"
                )
            else:
                wanted.append(name)
    return [t for t in VALIDATION_TYPES if not wanted or t in wanted]


@dataclass
class Comparison:
    """The whole-row comparison of an entity (the diff's engine), made once per entity."""

    run: EntityRun
    found: Found
    seconds: float


class EntityValidation:
    """What the checks of one entity share: the workspace, a target connection, the load,
    and the whole-row comparison when the run makes one anyway (a data_integrity of every
    row): completeness and relationship findings are then read off it, not found again."""

    def __init__(
        self,
        ws: Workspace,
        conn: psycopg.Connection[Any],
        load: EntityLoad,
        run: _Run,
        *,
        compare_rows: bool = False,
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.load = load
        self.schema = ws.state_schema
        self._run = run
        self.kept_counts: tuple[int, int] | None = None  # validate_keptkey's tables, loaded
        self.comparison: Comparison | None = None
        if compare_rows and load.uuid_keyed:
            started = time.perf_counter()
            engine = EntityRun(ws, conn, load, None, DiffContext(), cursor=False)
            found = engine.compare_every_row()
            self.comparison = Comparison(engine, found, time.perf_counter() - started)

    def duplicate_legacy_ids(self, entity: str) -> list[tuple[int, list[str]]]:
        return self._run.duplicate_legacy_ids.get(entity, [])

    def duplicate_uuids(self, entity: str) -> list[tuple[str, list[str]]]:
        return self._run.duplicate_uuids.get(entity, [])

    def target_rows(self) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(self.load.target.schema, self.load.target.name)
        )
        row = self.conn.execute(query).fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0


class _Run:
    def __init__(self, ws: Workspace, conn: psycopg.Connection[Any]) -> None:
        self.ws = ws
        self.conn = conn

    def _has_constraint(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = %s AND c.conname = %s",
            (self.ws.state_schema, name),
        ).fetchone()
        self.conn.commit()
        return bool(row and row[0])

    @cached_property
    def duplicate_legacy_ids(self) -> dict[str, list[tuple[int, list[str]]]]:
        """Legacy IDs mapped more than once, by entity; only looked for when the map's
        unique constraint on (entity_type, legacy_id) is missing (it makes them impossible)."""
        out: dict[str, list[tuple[int, list[str]]]] = {}
        if self._has_constraint("idx_legacy_mapping_entity_legacy"):
            return out
        query = sql.SQL(
            "SELECT entity_type, legacy_id, array_agg(uuid_id::text ORDER BY uuid_id)"
            " FROM {} GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 10000"
        ).format(mapping.table(self.ws.state_schema))
        for entity, legacy_id, uuids in self.conn.execute(query):
            out.setdefault(entity, []).append((int(legacy_id), list(uuids)))
        self.conn.commit()
        return out

    @cached_property
    def duplicate_uuids(self) -> dict[str, list[tuple[str, list[str]]]]:
        """UUIDs held by more than one mapping, by each entity holding them, looked for where
        they can be: everywhere when the map's unique constraint on (entity_type, uuid_id)
        is missing, else among entities that share a target table (one target row for two
        legacy rows); UUIDs equal in two different target tables name two different rows."""
        where: sql.Composable = sql.SQL("")
        if self._has_constraint("idx_legacy_mapping_entity_uuid"):
            sharing = _sharing_a_table(self.ws)
            if not sharing:
                return {}
            where = sql.SQL(" WHERE entity_type = ANY({})").format(sql.Literal(sharing))
        query = sql.SQL(
            "SELECT uuid_id::text, array_agg(entity_type || ':' || legacy_id ORDER BY"
            " entity_type, legacy_id) FROM {}{} GROUP BY uuid_id HAVING count(*) > 1"
            " LIMIT 10000"
        ).format(mapping.table(self.ws.state_schema), where)
        out: dict[str, list[tuple[str, list[str]]]] = {}
        for uuid, holders in self.conn.execute(query):
            for entity in {h.split(":", 1)[0] for h in holders}:
                out.setdefault(entity, []).append((uuid, list(holders)))
        self.conn.commit()
        return out


def _sharing_a_table(ws: Workspace) -> list[str]:
    """UUID-keyed entities whose target table is another entity's too."""
    by_table: dict[str, list[str]] = {}
    for planned in ws.plan.entities:
        if planned.entity.uuid_keyed:
            by_table.setdefault(planned.entity.target_table, []).append(planned.name)
    return sorted(name for names in by_table.values() if len(names) > 1 for name in names)


def run_validate(
    ws: Workspace,
    types: Iterable[str] | None = None,
    entities: Sequence[str] | None = None,
    *,
    job_id: UUID | None = None,
    sample_rows: int | None = None,
    progress: Progress | None = None,
) -> ValidationResult:
    """Run the selected validations of the selected entities (all when none given), store
    one report each, and return them; the result's exit code is 1 when any failed."""
    require_current(ws.engine, ws.state_schema)
    wanted = parse_types(types)
    selected = ws.plan.select(entities)
    settings = ws.config.validation
    sample = settings.sample_rows if sample_rows is None else sample_rows
    if sample < 0:
        raise UsageError(f"--sample {sample}: must be 0 (every row) or a number of rows")
    started = time.perf_counter()
    run_id = uuid4()
    store = StateStore(ws.state_schema)
    checks: list[Check] = []
    reports: list[MigrationValidationReport] = []
    conn = ws.connect_target()
    total = len(selected) * len(wanted)
    if progress:
        progress.start("validate", total, 0)
    try:
        target_session(conn)
        # joins of the map with whole tables: hashed in memory rather than spilled to disk
        conn.execute("SET work_mem = '256MB'")
        conn.commit()
        shared = _Run(ws, conn)
        if COMPLETENESS in wanted:  # once for the run, before any entity's clock starts
            shared.duplicate_uuids  # noqa: B018
        for planned in selected:
            table = reflect_table(conn, ws.config.target.schema_, planned.entity.target_table)
            conn.commit()
            load = build_load(planned, table, ws.plan, ws.source.capabilities)
            v = EntityValidation(ws, conn, load, shared, compare_rows=DATA in wanted and not sample)
            for kind in wanted:
                check = Check(
                    kind,
                    load.name,
                    load.source_table,
                    f"{load.target.schema}.{load.target.name}",
                    limit=settings.samples,
                )
                _CHECKS[kind](v, check, sample)
                checks.append(check)
                with ws.engine.begin() as sa:
                    reports.append(
                        store.add_report(
                            sa,
                            validation_type=check.validation_type,
                            source_entity=check.source_entity,
                            target_entity=check.target_entity,
                            records_validated=check.records_validated,
                            validation_passed=check.passed,
                            execution_time_ms=check.execution_time_ms,
                            discrepancies_found=check.discrepancies,
                            discrepancy_details=check.details(),
                            validation_criteria=check.criteria,
                            ttl=timedelta(hours=settings.expires_hours),
                            job_id=job_id,
                            metadata={"run_id": str(run_id), **check.full_metadata()},
                        )
                    )
                if progress:
                    progress.advance("validate", 1)
    finally:
        conn.close()
        if progress:
            progress.finish("validate")
    return ValidationResult(
        run_id, checks, reports, time.perf_counter() - started, job_id, ws.source.take_warnings()
    )


def _completeness(v: EntityValidation, check: Check, sample: int) -> Check:
    if not v.load.uuid_keyed:
        return check_kept_completeness(v, check)
    return check_completeness(v, check)


def _data(v: EntityValidation, check: Check, sample: int) -> Check:
    if not v.load.uuid_keyed:
        return check_kept_data(v, check)
    return check_data(v, check, sample, v.ws.config.validation.confidence)


def _relationships(v: EntityValidation, check: Check, sample: int) -> Check:
    return check_relationships(v, check)


def _performance(v: EntityValidation, check: Check, sample: int) -> Check:
    return check_performance(v.ws, v.conn, v.load, v.ws.config.validation, check)


_CHECKS: dict[str, Callable[[EntityValidation, Check, int], Check]] = {
    COMPLETENESS: _completeness,
    DATA: _data,
    RELATIONSHIPS: _relationships,
    PERFORMANCE: _performance,
}
