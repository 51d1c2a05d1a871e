"""Applying one entity's flow in batches, each batch a checkpoint of the job.

The target side of every batch commits with its mappings and checksums (one transaction);
writes into the source are idempotent by legacy key, so a batch killed at any instant and
applied again converges. The one write that is not idempotent by itself is a row created
in the target and inserted into the source, which then gets a new key from the source's
own generator: before that insert the batch's checkpoint records an *intent* (the source's
highest key and the target keys), and a run that finds an intent its predecessor did not
complete first matches those target rows with source rows above the recorded key, by
canonical content, and maps them instead of inserting them again.

The applications keep writing while a run applies what it compared: a row changed in the
target alone is written (or deleted) in the source only if the source row is still its
mapping's base, checked inside the source's write transaction; one the legacy application
changed meanwhile is left for the next run, which sees it changed on both sides and applies
the job's rule (under ``target_wins`` the target's version goes in either way). In a
bidirectional job whose rule is not ``source_wins`` the same holds the other way: a row
changed in the source alone goes to the target only if the target row is still its base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import Connection

from isthmus import mapping
from isthmus.diff import gone_condition
from isthmus.diff_classify import Found, classify
from isthmus.diff_source import rows_by_ids, sums_by_ids
from isthmus.diff_target import Scope, TargetSide
from isthmus.errors import first_line
from isthmus.loadplan import EntityLoad
from isthmus.resolve import Applier, Resolution
from isthmus.resolve_source import _add_mappings, _created_rows, target_wins
from isthmus.state.enums import CheckpointStatus, OperationType
from isthmus.state.models import MigrationCheckpoint
from isthmus.state.store import StateStore
from isthmus.workspace import Workspace

APPLY_COMMAND = "sync-apply"
INTENT = "intent"

# phase → what a batch of it does (see sync_rules.Flow)
UPSERT_PHASES = ("to_target", "to_source", "created_to_source")
DELETE_PHASES = ("delete_in_target", "delete_in_source")


class BatchApplier:
    def __init__(
        self,
        ws: Workspace,
        conn: psycopg.Connection[Any],
        job_id: UUID,
        run_id: str,
        should_stop: Callable[[], str | None],
        *,
        rule: str = "source_wins",
        bidirectional: bool = False,
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.job_id = job_id
        self.run_id = run_id
        self.should_stop = should_stop  # "paused" / "cancelled" when the run must stop
        self.rule = rule  # the job's conflict rule
        self.bidirectional = bidirectional
        self.store = StateStore(ws.state_schema)
        self.applier = Applier(ws, conn, self.store)

    def load(self, entity: str) -> EntityLoad:
        return self.applier.load(entity)

    def apply(
        self, entity: str, phase: str, items: Sequence[Any], batch_size: int, totals: Resolution
    ) -> str | None:
        """Apply ``items`` (legacy IDs, or target keys for created_to_source) in batches; the
        reason to stop ("paused", "cancelled") if the job was told to, else None."""
        load = self.load(entity)
        for start in range(0, len(items), batch_size):
            stop = self.should_stop()
            if stop is not None:
                self._mark_stop(entity, phase, items[start - 1] if start else None, stop)
                return stop
            part = list(items[start : start + batch_size])
            self._batch(load, phase, part, totals)
        return None

    def _batch(self, load: EntityLoad, phase: str, part: list[Any], totals: Resolution) -> None:
        metadata: dict[str, Any] = {}
        if phase == "created_to_source":
            floor = self.ws.source.max_value(load.source_table, load.key_columns[0])
            metadata[INTENT] = {"floor": int(floor or 0), "target_keys": [str(k) for k in part]}
        elif phase == "to_source":  # the source is written before the mappings' checksums
            metadata[INTENT] = {"legacy_ids": [int(i) for i in part]}
        with self.ws.engine.begin() as sa:
            checkpoint = self._checkpoint(sa, load.name, phase, size=len(part), metadata=metadata)
        result = Resolution(checkpoint.id, load.name, phase, phase)
        try:
            self._do(load, phase, part, result)
        except BaseException as exc:
            self.conn.rollback()
            with self.ws.engine.begin() as sa:
                self.store.set_checkpoint_status(
                    sa, checkpoint.id, CheckpointStatus.FAILED, first_line(exc)[:2000]
                )
            raise
        with self.ws.engine.begin() as sa:
            self.store.record_progress(
                sa,
                checkpoint.id,
                last_processed_id=str(part[-1]),
                records_processed=len(part),
            )
            self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.COMPLETED)
        totals.written += result.written
        totals.deleted += result.deleted
        totals.quarantined += result.quarantined
        totals.left_open += result.left_open
        totals.notes.extend(result.notes)

    def _do(self, load: EntityLoad, phase: str, part: list[Any], result: Resolution) -> None:
        if phase in ("to_target", "delete_in_target"):
            cas = self.bidirectional and self.rule != "source_wins"  # see the module docstring
            self.applier.source_wins(load, part, [], result, unchanged_only=cas)
        elif phase in ("to_source", "delete_in_source"):
            cas = self.rule != "target_wins"  # compare-and-set: see the module docstring
            target_wins(
                self.ws, self.conn, load, part, created=[], result=result, unchanged_only=cas
            )
        elif phase == "created_to_source":
            keys = [UUID(str(k)) for k in part]
            target_wins(self.ws, self.conn, load, [], created=keys, result=result)
        else:
            raise ValueError(f"unknown sync phase {phase!r}")

    def _mark_stop(self, entity: str, phase: str, last: Any, reason: str) -> None:
        """A paused checkpoint where the run stopped (failed, for a cancelled job): what the
        next run would have done next."""
        with self.ws.engine.begin() as sa:
            done = None if last is None else str(last)
            checkpoint = self._checkpoint(sa, entity, phase, last=done)
            if reason == "paused":
                self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.PAUSED)
            else:
                self.store.set_checkpoint_status(
                    sa, checkpoint.id, CheckpointStatus.FAILED, f"job {reason}"
                )

    def _checkpoint(
        self,
        sa: Connection,
        entity: str,
        phase: str,
        *,
        size: int | None = None,
        last: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MigrationCheckpoint:
        """A new ``in_progress`` checkpoint of the job for ``entity`` in ``phase`` (a batch of
        ``size`` records, or where the run stopped: after ``last``)."""
        checkpoint = self.store.create_checkpoint(
            sa,
            operation_type=OperationType.SYNC_OPERATION,
            entity_type=entity,
            batch_size=size or 1,
            records_total=size,
            job_id=self.job_id,
            last_processed_id=last,
            metadata={
                "command": APPLY_COMMAND,
                "phase": phase,
                "run": self.run_id,
                **(metadata or {}),
            },
        )
        return self.store.set_checkpoint_status(sa, checkpoint.id, CheckpointStatus.IN_PROGRESS)


def reconcile_intents(ws: Workspace, conn: psycopg.Connection[Any], job_id: UUID) -> int:
    """Map the target rows an interrupted batch inserted into the source before it could
    record their mappings; returns how many were found already in the source."""
    store = StateStore(ws.state_schema)
    query = sql.SQL(
        "SELECT id, entity_type, metadata->'intent' FROM {} WHERE job_id = %s"
        " AND metadata ? 'intent' AND status IN ('in_progress', 'failed')"
        " AND NOT metadata ? 'reconciled'"
    ).format(sql.Identifier(ws.state_schema, "migration_checkpoints"))
    pending = conn.execute(query, (job_id,)).fetchall()
    conn.commit()
    found = 0
    loads = Applier(ws, conn, store)
    for checkpoint_id, entity, intent in pending:
        found += _reconcile(ws, conn, loads.load(entity), intent)
        with ws.engine.begin() as sa:
            current = store.get_checkpoint(sa, checkpoint_id)
            if current.status == CheckpointStatus.IN_PROGRESS:
                store.set_checkpoint_status(
                    sa, checkpoint_id, CheckpointStatus.FAILED, "interrupted; reconciled"
                )
            store.merge_checkpoint_metadata(sa, checkpoint_id, {"reconciled": True})
    return found


def _rebase(
    ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad, legacy_ids: list[int]
) -> None:
    """Rows an interrupted batch wrote into the source: where both sides now agree, the
    mapping's checksum becomes what they hold."""
    side = TargetSide(load, ws.state_schema, gone_condition(load))
    found = classify(
        sums_by_ids(ws.source, load, legacy_ids),
        side.mapped(conn, Scope(ids=legacy_ids), exact=True),
    )
    settle_mappings(ws, conn, load.name, found)


def settle_mappings(
    ws: Workspace, conn: psycopg.Connection[Any], entity: str, found: Found
) -> None:
    """Mappings whose rows are gone from both sides map nothing any more; rows equal on both
    sides but not to their mapping's base (a write whose base update was lost) get the
    checksum both now hold, so the next change is attributed to the side that made it."""
    if found.stale_ids:
        mapping.forget(conn, ws.state_schema, entity, found.stale_ids)
    if found.rebase:
        sums = [(i, s.decode()) for i, s in found.rebase]
        mapping.update_checksums(conn, ws.state_schema, entity, sums)
    conn.commit()


def _reconcile(
    ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad, intent: dict[str, Any]
) -> int:
    if intent.get("legacy_ids"):
        _rebase(ws, conn, load, sorted(int(i) for i in intent["legacy_ids"]))
        return 0
    keys = [UUID(str(k)) for k in intent.get("target_keys", [])]
    floor = int(intent.get("floor", 0))
    side = TargetSide(load, ws.state_schema, gone_condition(load))
    unmapped = [UUID(k) for k in _still_unmapped(conn, ws.state_schema, load, keys)]
    if not unmapped:
        return 0
    created = _created_rows(conn, side, unmapped)
    key = load.key_columns[0]
    candidates = ws.source.keys_in_ranges(load.source_table, key, [(floor + 1, 2**62)])
    source_rows = rows_by_ids(ws.source, load, candidates)
    positions = [load.columns.index(c) for c in load.checksummed]
    by_content: dict[tuple[bytes, ...], list[int]] = {}
    for legacy_id in sorted(source_rows):
        fields = source_rows[legacy_id]
        by_content.setdefault(tuple(fields[p] for p in positions), []).append(legacy_id)
    legacy_ids: list[int] = []
    uuids: list[UUID] = []
    normalizers = side.normalizers  # the target's text (12:00:00.5) in canonical form
    for uuid, fields in created:
        matches = by_content.get(tuple(f(v) for f, v in zip(normalizers, fields, strict=True)))
        if matches:
            legacy_ids.append(matches.pop(0))
            uuids.append(uuid)
    if legacy_ids:
        _add_mappings(conn, ws.state_schema, load, legacy_ids, uuids)
        sums = [(i, s.decode()) for i, s in sums_by_ids(ws.source, load, legacy_ids)]
        mapping.update_checksums(conn, ws.state_schema, load.name, sums)
    conn.commit()
    return len(legacy_ids)


def _still_unmapped(
    conn: psycopg.Connection[Any], schema: str, load: EntityLoad, keys: list[UUID]
) -> list[str]:
    query = sql.SQL(
        "SELECT k::text FROM unnest(%s::uuid[]) AS k WHERE NOT EXISTS"
        " (SELECT 1 FROM {} AS m WHERE m.entity_type = %s AND m.uuid_id = k)"
    ).format(mapping.table(schema))
    return [str(r[0]) for r in conn.execute(query, (keys, load.name)).fetchall()]
