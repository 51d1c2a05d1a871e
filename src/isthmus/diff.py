"""Data differentials: what differs between the legacy source and the target, across the
integer/UUID divide, stored per entity and comparison type.

For each selected entity (plan order) one ``validation`` checkpoint is written and one
``data_differentials`` row per comparison type that found something, linked to it. How the
rows are looked at depends on what the entity and the source allow (``method``):

- ``cursor``: the entity has ``updated_at`` cursors and an earlier diff left its marks:
  only rows changed since then (less an overlap), the last run's open differences, and a
  key-only pass for deletes are compared (:mod:`isthmus.diff_cursor`);
- ``segments``: the source can checksum in SQL: key-range segment checksums are compared
  inside each database, and only segments that differ are read (:mod:`isthmus.diff_segments`);
- ``full``: every row is read from the source and compared with its target checksum.

Whatever the method, the verdict on a row comes from the canonical checksums of
:mod:`isthmus.canonical`, compared by :func:`isthmus.diff_classify.classify`.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import Connection, func, literal

from isthmus import diff_cursor, diff_detail, diff_segments
from isthmus.canonical import CHECKSUM_ALGORITHM
from isthmus.diff_classify import CONFLICTED, DELETED, TYPES, Found, classify
from isthmus.diff_source import source_sums, sums_by_ids
from isthmus.diff_target import Scope, TargetSide
from isthmus.errors import UsageError, first_line
from isthmus.loadplan import EntityLoad, build_load
from isthmus.migrate_result import Progress
from isthmus.sessions import target_session, try_lock
from isthmus.state.enums import CheckpointStatus, OperationType
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.target import reflect_table
from isthmus.workspace import Workspace

COMMAND = "diff"
_RUN_LOCK_CLASS = 0x15_7A_09  # advisory lock class of "a comparison run, alive"
REVIEW_KEY = "review"  # metadata of a differential parked for a person (isthmus.review)


@dataclass(frozen=True)
class DiffContext:
    """Who compares: ``isthmus diff`` (a validation checkpoint of its own) or a job's sync run
    (``sync_operation`` checkpoints linked to the job, its own resolution strategy)."""

    operation: OperationType = OperationType.VALIDATION
    job_id: UUID | None = None
    command: str = COMMAND
    resolution: str | None = None  # default: [diff] resolution


@dataclass
class EntityDiff:
    entity: str
    source_table: str
    target_table: str
    method: str = "full"
    checkpoint_id: UUID | None = None
    found: Found = field(default_factory=Found)
    differentials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None  # why the entity was not compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "source_table": self.source_table,
            "target_table": self.target_table,
            "method": self.method,
            "skipped": self.skipped,
            "checkpoint_id": str(self.checkpoint_id) if self.checkpoint_id else None,
            "rows_compared": self.found.compared,
            "equal": self.found.equal,
            "stale_mappings": self.found.stale_mappings,
            "counts": self.found.counts(),
            "differences": self.found.total,
            "differentials": self.differentials,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class DiffResult:
    entities: list[EntityDiff]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(e.found.total for e in self.entities)

    @property
    def exit_code(self) -> int:
        """1 while differences remain, as the CLI contract says."""
        return 1 if self.total else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [e.to_dict() for e in self.entities],
            "total_differences": self.total,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def run_diff(
    ws: Workspace,
    entities: Sequence[str] | None = None,
    progress: Progress | None = None,
    context: DiffContext | None = None,
) -> DiffResult:
    require_current(ws.engine, ws.state_schema)
    started = time.perf_counter()
    selected = ws.plan.select(entities)
    conn = ws.connect_target()
    try:
        target_session(conn)
        owner = _hold_run_lock(conn)
        _fail_dead_runs(ws, conn, context or DiffContext(), owner)
        runs = []
        for planned in selected:
            entity = planned.entity
            table = reflect_table(conn, ws.config.target.schema_, entity.target_table)
            conn.commit()
            load = build_load(planned, table, ws.plan, ws.source.capabilities)
            runs.append(EntityRun(ws, conn, load, progress, context or DiffContext()))
            runs[-1].owner = owner
        cursor_runs = [r for r in runs if r.previous is not None]
        pending = diff_cursor.prefetch_deletes(ws, [r.load for r in cursor_runs])
        for r in cursor_runs:
            r.prefetched_deletes = pending.get(r.load.name)
        results = [r.run() for r in runs]
    finally:
        conn.close()
    return DiffResult(results, time.perf_counter() - started, ws.source.take_warnings())


def _hold_run_lock(conn: psycopg.Connection[Any]) -> str:
    """This run's owner token, its advisory lock held by ``conn`` until the run ends (the
    process dying drops it): the checkpoints it creates name it."""
    owner = uuid_mod.uuid4().hex
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_RUN_LOCK_CLASS, owner))
    conn.commit()
    return owner


def _fail_dead_runs(
    ws: Workspace, conn: psycopg.Connection[Any], context: DiffContext, owner: str
) -> None:
    """Checkpoints of ``isthmus diff`` left in progress by a process that died (their
    owner's lock is free): failed, so that none stays in progress for ever. A job's run
    fails those of its dead predecessor itself (:func:`isthmus.sync._start`)."""
    if context.job_id is not None:
        return
    query = sql.SQL(
        "SELECT id, metadata->>'owner' FROM {} WHERE status = 'in_progress'"
        " AND operation_type = %s AND job_id IS NULL AND metadata->>'command' = %s"
    ).format(sql.Identifier(ws.state_schema, "migration_checkpoints"))
    found = conn.execute(query, (str(context.operation), context.command)).fetchall()
    conn.commit()
    store = StateStore(ws.state_schema)
    for checkpoint_id, held_by in found:
        if held_by == owner:
            continue
        if held_by is not None:  # (none: left by an isthmus that named no owner)
            key = (_RUN_LOCK_CLASS, held_by)
            alive = not try_lock(conn, key)
            if not alive:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
            conn.commit()
            if alive:
                continue
        with ws.engine.begin() as sa:
            if store.get_checkpoint(sa, checkpoint_id).status == CheckpointStatus.IN_PROGRESS:
                store.set_checkpoint_status(
                    sa,
                    checkpoint_id,
                    CheckpointStatus.FAILED,
                    "interrupted: the diff comparing it stopped without finishing",
                )


class EntityRun:
    def __init__(
        self,
        ws: Workspace,
        conn: psycopg.Connection[Any],
        load: EntityLoad,
        progress: Progress | None,
        context: DiffContext,
        *,
        cursor: bool = True,
    ) -> None:
        self.ws = ws
        self.context = context
        self.conn = conn
        self.load = load
        self.progress = progress
        self.store = StateStore(ws.state_schema)
        self.schema = ws.state_schema
        self.config = ws.config.diff
        self.result = EntityDiff(
            load.name, load.source_table, f"{load.target.schema}.{load.target.name}"
        )
        self.side = TargetSide(load, ws.state_schema, gone_condition(load))
        self.previous = diff_cursor.previous_marks(self) if load.uuid_keyed and cursor else None
        self.prefetched_deletes: Future[set[int]] | None = None
        self.owner: str | None = None  # run_diff's owner token (see _hold_run_lock)

    def run(self) -> EntityDiff:
        started = time.perf_counter()
        load = self.load
        if not load.uuid_keyed:
            self.result.method = "none"
            self.result.skipped = "keeps its key: compared by `isthmus validate`, not by diff"
            return self.result
        previous = self.previous
        marks = diff_cursor.marks(self)
        with self.ws.engine.begin() as sa:
            checkpoint = self.store.create_checkpoint(
                sa,
                operation_type=self.context.operation,
                entity_type=load.name,
                batch_size=self.ws.config.migration.batch_size,
                job_id=self.context.job_id,
                metadata={
                    "command": self.context.command,
                    "source_table": load.source_table,
                    "target_table": self.result.target_table,
                    "cursor": marks,
                    **({"owner": self.owner} if self.owner else {}),
                },
            )
            self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.IN_PROGRESS)
        self.result.checkpoint_id = checkpoint.id
        try:
            found = self._compare(previous)
            self.result.found = found
            self._store(checkpoint.id, found)
        except BaseException as exc:
            self._fail(checkpoint.id, exc)
            raise
        with self.ws.engine.begin() as sa:
            self.store.record_progress(
                sa,
                checkpoint.id,
                last_processed_id=None,
                records_processed=found.compared,
                records_total=found.compared,
            )
            self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.COMPLETED)
        self.result.seconds = time.perf_counter() - started
        return self.result

    # -- comparing -----------------------------------------------------------------------------

    def compare_every_row(self) -> Found:
        """Every row compared (segments or full, never the cursor), nothing stored: what
        validation asks; ``rebase`` is not collected (it would grow with the table)."""
        return self._compare(None, Found(keep_rebase=False))

    def _compare(self, previous: dict[str, Any] | None, found: Found | None = None) -> Found:
        found = self._found(previous, found)
        self._recheck(found)
        self.conn.commit()
        return found

    def _found(self, previous: dict[str, Any] | None, found: Found | None = None) -> Found:
        """What the entity's method finds (see the module docstring)."""
        if previous is not None:
            self.result.method = "cursor"
            return diff_cursor.compare(self, previous)
        segment_forms = diff_segments.forms(self)
        if segment_forms is not None:
            self.result.method = "segments"
            return diff_segments.compare(self, *segment_forms, found=found)
        self.result.method = "full"
        found = found or Found()
        sums = source_sums(
            self.ws.source, self.load, batch_size=self.ws.config.migration.batch_size
        )
        classify(sums, self.side.mapped(self.conn), found)
        found.created_in_target = self.side.unmapped(self.conn)
        return found

    def _recheck(self, found: Found) -> None:
        """Rows an SQL form calls changed (or deleted and changed) are compared again with
        canonical forms made here: an SQL form that disagrees in a corner (a last-digit tie)
        is never reported."""
        if not self.side.in_database:
            return
        ids = sorted(set(found.of(CONFLICTED)) | set(found.ids[DELETED].get("both", [])))
        if not ids:
            return
        found.drop(set(ids))
        sums = sums_by_ids(self.ws.source, self.load, ids)
        classify(sums, self.side.mapped(self.conn, Scope(ids=ids), exact=True), found)
        for sides in found.ids.values():  # rechecked ids were appended: ascending again
            for members in sides.values():
                members.sort()

    # -- storing -------------------------------------------------------------------------------

    def criteria(self) -> dict[str, Any]:
        return {
            "columns": [c.source for c in self.load.checksummed],
            "target_columns": [c.target for c in self.load.checksummed],
            "references_compared_as": "legacy parent id",
            "checksum_algorithm": CHECKSUM_ALGORITHM,
            "tolerances": {c.source: c.tolerance for c in self.load.checksummed if c.tolerance},
            "method": self.result.method,
            "computed_in_database": {"target": self.side.in_database},
        }

    def _store(self, checkpoint_id: UUID, found: Found) -> None:
        criteria = self.criteria()
        details = diff_detail.conflict_details(
            self.ws.source,
            self.conn,
            self.load,
            self.side,
            found,
            limit=self.config.sample_conflicts,
        )
        self.conn.commit()
        with self.ws.engine.begin() as sa:
            self._supersede(sa, checkpoint_id)
            for kind in TYPES:
                ids = found.of(kind)
                created = found.created_in_target if kind == DELETED else []
                if not ids and not created:
                    continue
                metadata: dict[str, Any] = {
                    "entity": self.load.name,
                    "sides": {s: v for s, v in found.ids[kind].items() if v},
                }
                if created:
                    metadata["created_in_target"] = created
                if kind == CONFLICTED:
                    metadata.update(details)
                row = self.store.add_differential(
                    sa,
                    source_table=self.load.source_table,
                    target_table=self.result.target_table,
                    comparison_type=kind,
                    legacy_ids=ids,
                    checkpoint_id=checkpoint_id,
                    resolution_strategy=self.context.resolution or self.config.resolution,
                    comparison_criteria=criteria,
                    metadata=metadata,
                )
                self.result.differentials.append(
                    {
                        "id": str(row.id),
                        "comparison_type": kind,
                        "record_count": row.record_count,
                        "created_in_target": len(created),
                    }
                )

    def _supersede(self, sa: Connection, checkpoint_id: UUID) -> None:
        """Close the entity's earlier open differentials: this comparison looked at their
        records again, and what still differs is in the new ones (so `resolve --all` never
        applies a stale verdict, and the cursor diff re-checks only the latest). Items of the
        review queue stay: they wait for a person."""
        table = self.store.differentials
        sa.execute(
            table.update()
            .where(
                table.c.resolved.is_(False),
                ~table.c.metadata.has_key(REVIEW_KEY),
                table.c.metadata["entity"].astext == self.load.name,
                table.c.checkpoint_id != checkpoint_id,
            )
            .values(
                resolved=True,
                resolved_at=func.clock_timestamp(),
                metadata=table.c.metadata.op("||")(
                    literal({"superseded_by": str(checkpoint_id)}, table.c.metadata.type)
                ),
            )
        )

    def _fail(self, checkpoint_id: UUID, exc: BaseException) -> None:
        try:
            with self.ws.engine.begin() as sa:
                self.store.set_checkpoint_status(
                    sa, checkpoint_id, CheckpointStatus.FAILED, first_line(exc)[:2000]
                )
        except Exception:
            pass


def gone_condition(load: EntityLoad) -> sql.Composable | None:
    """The condition that makes a target row count as deleted: its soft-delete column set."""
    column = load.planned.entity.soft_delete
    if column is None:
        return None
    target_column = load.target.column(column)
    if target_column is None:
        raise UsageError(
            f"entity {load.name}: soft_delete = {column!r} is not a column of "
            f"{load.target.schema}.{load.target.name}"
        )
    ident = sql.Identifier(column)
    if target_column.kind == "boolean":
        return sql.SQL("coalesce(t.{}, false)").format(ident)
    return sql.SQL("t.{} IS NOT NULL").format(ident)
