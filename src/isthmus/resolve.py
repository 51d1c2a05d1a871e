"""Applying a stored differential: make one side equal the other for its records.

- ``source_wins``: the target takes the source's *current* version of each record: rows the
  source has are inserted or rewritten (with their mapping's UUID, translated FKs and the new
  base checksum), rows the source no longer has are deleted from the target (or marked, with
  the entity's ``soft_delete`` column) with their mappings, and target rows created without
  a mapping go too.
- ``target_wins``: the source takes the target's version: rows are written back into the
  legacy table (FK UUIDs back to legacy IDs), rows gone from the target are deleted from the
  source, and rows created in the target get a legacy key from the source's own generator
  and a mapping (:mod:`isthmus.resolve_source`).
- ``skip``: nothing is applied; the differential is closed.
- ``manual_review``: refused here; the differential waits for a person (``--strategy``).

The records are applied as they are *now* (not as they were when compared), so applying a
differential twice, or after the rows changed again, converges to the same state; a
resolved differential is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from isthmus import mapping
from isthmus.batch_writer import BatchWriter, Outcome
from isthmus.dialects.keyset import chunked
from isthmus.dialects.pgconn import translated
from isthmus.diff_classify import DELETED, MISSING
from isthmus.diff_source import fetch_fields
from isthmus.errors import UsageError
from isthmus.loadplan import EntityLoad, build_load, loose
from isthmus.mapping_cache import MappingCache
from isthmus.sessions import target_session
from isthmus.state.models import DataDifferential
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.target import reflect_table
from isthmus.transform import transform
from isthmus.uuids import make_generator
from isthmus.workspace import Workspace

STRATEGIES = ("source_wins", "target_wins", "manual_review", "skip")


@dataclass
class Resolution:
    differential_id: UUID
    entity: str
    comparison_type: str
    strategy: str
    already_resolved: bool = False
    written: int = 0  # rows inserted or rewritten on the losing side
    deleted: int = 0
    quarantined: int = 0
    left_open: int = 0  # records that could not be applied: the differential stays open
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "differential_id": str(self.differential_id),
            "entity": self.entity,
            "comparison_type": self.comparison_type,
            "strategy": self.strategy,
            "already_resolved": self.already_resolved,
            "written": self.written,
            "deleted": self.deleted,
            "quarantined": self.quarantined,
            "left_open": self.left_open,
            "notes": self.notes,
        }


@dataclass
class ResolveResult:
    resolutions: list[Resolution]
    waiting_for_review: int = 0  # manual_review ones --all left for a person

    @property
    def exit_code(self) -> int:
        return 1 if any(r.quarantined or r.left_open for r in self.resolutions) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolutions": [r.to_dict() for r in self.resolutions],
            "waiting_for_review": self.waiting_for_review,
        }


def resolve_differentials(
    ws: Workspace,
    ids: Sequence[UUID] = (),
    *,
    strategy: str | None = None,
    every_open: bool = False,
    entities: Sequence[str] | None = None,
) -> ResolveResult:
    """Apply the differentials ``ids`` (or, with ``every_open``, all unresolved ones of the
    entities): inserts and updates parents first, deletes children first."""
    require_current(ws.engine, ws.state_schema)
    if strategy is not None and strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    store = StateStore(ws.state_schema)
    with ws.engine.connect() as sa:
        if every_open:
            found = store.list_differentials(sa, resolved=False, limit=100_000)
        else:
            found = [store.get_differential(sa, i) for i in ids]
    if not ids and not every_open:
        raise UsageError("name the differentials to resolve (IDs), or pass --all")
    order = {p.name: n for n, p in enumerate(ws.plan.entities)}
    wanted = set(entities or [])
    items = [d for d in found if not wanted or _entity(d) in wanted]
    waiting = 0
    if every_open and strategy is None:  # --all leaves what waits for a person to that person
        kept = [d for d in items if str(d.resolution_strategy) != "manual_review"]
        waiting = len(items) - len(kept)
        items = kept

    def deletes(d: DataDifferential) -> bool:
        """Applying ``d`` deletes on the losing side (children first): a deleted_records one
        under source_wins, a missing_records one under target_wins (the source loses rows)."""
        target_wins = (strategy or str(d.resolution_strategy)) == "target_wins"
        return d.comparison_type == (MISSING if target_wins else DELETED)

    items.sort(
        key=lambda d: (
            deletes(d),
            -order.get(_entity(d), 0) if deletes(d) else order.get(_entity(d), 0),
        )
    )
    out = []
    conn = ws.connect_target()
    try:
        target_session(conn)
        applier = Applier(ws, conn, store)
        out = [applier.apply(d, strategy) for d in items]
    finally:
        conn.close()
    return ResolveResult(out, waiting)


def _entity(d: DataDifferential) -> str:
    return str(d.metadata.get("entity") or d.source_table)


class Applier:
    def __init__(self, ws: Workspace, conn: psycopg.Connection[Any], store: StateStore) -> None:
        self.ws = ws
        self.conn = conn
        self.store = store
        self.schema = ws.state_schema
        self.cache = MappingCache()
        self.loads: dict[str, EntityLoad] = {}

    def load(self, name: str) -> EntityLoad:
        if name not in self.loads:
            planned = self.ws.plan[name]
            table = reflect_table(
                self.conn, self.ws.config.target.schema_, planned.entity.target_table
            )
            self.conn.commit()
            self.loads[name] = build_load(planned, table, self.ws.plan, self.ws.source.capabilities)
        return self.loads[name]

    def apply(self, d: DataDifferential, strategy: str | None) -> Resolution:
        chosen = strategy or str(d.resolution_strategy)
        result = Resolution(d.id, _entity(d), str(d.comparison_type), chosen)
        if d.resolved:
            result.already_resolved = True
            return result
        if chosen == "manual_review":
            raise UsageError(
                f"differential {d.id} is parked for manual review: pass --strategy "
                "source_wins|target_wins|skip to apply it"
            )
        load = self.load(result.entity)
        ids = [int(str(i)) for i in d.legacy_ids]
        listed = d.metadata.get("created_in_target")
        created = [UUID(str(u)) for u in listed] if isinstance(listed, list) else []
        if chosen == "source_wins":
            self.source_wins(load, ids, created, result)
        elif chosen == "target_wins":
            from isthmus.resolve_source import target_wins

            target_wins(self.ws, self.conn, load, ids, created=created, result=result)
        if result.left_open:
            return result  # applied in part: what is left is still a difference
        with self.ws.engine.begin() as sa:
            self.store.mark_differential_resolved(
                sa,
                d.id,
                metadata={
                    "resolution": {k: v for k, v in result.to_dict().items() if k != "notes"}
                },
            )
        return result

    # -- source wins ---------------------------------------------------------------------------

    def source_wins(
        self,
        load: EntityLoad,
        ids: list[int],
        created: list[UUID],
        result: Resolution,
        *,
        unchanged_only: bool = False,
    ) -> None:
        """The source's current version of ``ids`` written into the target (or deleted there).
        ``unchanged_only`` (a bidirectional sync whose rule does not let the source win): only
        the records the target has not changed since their mapping's base, checked with their
        target rows locked until the write commits; the others are left for the next run."""
        loose_load = loose(load)
        present: list[int] = []
        skipped: set[int] = set()
        for chunk in chunked(sorted(set(ids)), self.ws.config.migration.batch_size):
            part = list(chunk)
            if unchanged_only:
                kept = self._unchanged_in_target(load, part)
                skipped.update(i for i in part if i not in kept)
                part = [i for i in part if i in kept]
            rows = fetch_fields(self.ws.source, load, part)
            if rows:
                columns = [list(c) for c in zip(*rows, strict=True)]
                outcome = self._write(loose_load, columns)
                result.written += outcome.inserted + outcome.updated
                result.quarantined += outcome.quarantined
            present.extend(int(r[0]) for r in rows)
        gone = sorted(set(ids) - set(present) - skipped)
        if unchanged_only and gone:  # locked until the commit below
            kept = self._unchanged_in_target(load, gone)
            gone = [i for i in gone if i in kept]
        result.deleted += self._delete_target(load, gone, created)
        self.conn.commit()

    def _unchanged_in_target(self, load: EntityLoad, ids: list[int]) -> set[int]:
        """Of ``ids``, those with no mapping (new in the source) or whose target row is still
        its mapping's base; their target rows stay locked (FOR UPDATE) by this transaction,
        so the target's application cannot change them before the write commits."""
        from isthmus.diff import gone_condition
        from isthmus.diff_target import Scope, TargetSide

        lock = sql.SQL(
            "SELECT 1 FROM {t} AS t JOIN {m} AS m ON t.{k} = m.uuid_id"
            " WHERE m.entity_type = %s AND m.legacy_id = ANY(%s) FOR UPDATE OF t"
        ).format(
            t=sql.Identifier(load.target.schema, load.target.name),
            m=mapping.table(self.schema),
            k=sql.Identifier(load.columns[0].target),
        )
        with translated(), mapping.cursor(self.conn) as cur:
            cur.execute(lock, (load.name, mapping.Int8Array.of(ids)))
        side = TargetSide(load, self.schema, gone_condition(load))
        now = {i: (base, sum_) for i, base, sum_ in side.mapped(self.conn, Scope(ids), exact=True)}
        return {
            i for i in ids if i not in now or (now[i][1] is not None and now[i][1] == now[i][0])
        }

    def _write(self, load: EntityLoad, columns: list[list[bytes]]) -> Outcome:
        config = self.ws.config.migration
        writer = BatchWriter(
            self.conn,
            load,
            state_schema=self.schema,
            generator=make_generator(config.uuid, config.uuid_namespace),
            on_orphan=config.on_orphan,
            fresh=False,
            force=True,
        )

        def resolve(parent: str, legacy: Sequence[int]) -> dict[int, bytes]:
            return self.cache.resolve_hex(self.conn, self.schema, parent, legacy)

        batch = transform(load, columns, resolve)
        outcome = writer.write(batch, "resolve", None)
        self.conn.commit()
        return outcome

    def _delete_target(self, load: EntityLoad, legacy_ids: list[int], created: list[UUID]) -> int:
        """Delete (or mark) the target rows of ``legacy_ids`` and the ``created`` ones; the
        mappings of deleted rows go with them (a marked row keeps its mapping)."""
        if not legacy_ids and not created:
            return 0
        target = sql.Identifier(load.target.schema, load.target.name)
        key = sql.Identifier(load.columns[0].target)
        m = mapping.table(self.schema)
        soft = load.planned.entity.soft_delete
        with translated(), mapping.cursor(self.conn) as cur:
            uuids = [
                r[0]
                for r in cur.execute(
                    sql.SQL(
                        "SELECT uuid_id FROM {} WHERE entity_type = %s AND legacy_id = ANY(%s)"
                    ).format(m),
                    (load.name, mapping.Int8Array.of(legacy_ids)),
                ).fetchall()
            ] + created
            if soft:
                column = load.target.column(soft)
                value = sql.SQL("true" if column and column.kind == "boolean" else "now()")
                cur.execute(
                    sql.SQL("UPDATE {t} SET {c} = {v} WHERE {k} = ANY(%s)").format(
                        t=target, c=sql.Identifier(soft), v=value, k=key
                    ),
                    (uuids,),
                )
                return cur.rowcount
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(target, key), (uuids,))
            deleted = cur.rowcount
        mapping.forget(self.conn, self.schema, load.name, legacy_ids)
        return deleted
