"""The manual-review queue: records changed on both sides under a job's ``manual`` rule.

Each waiting record is one ``data_differentials`` row (``resolution_strategy =
manual_review``, one legacy ID) whose metadata holds both versions as they were when the run
parked it (``source`` and ``target``: column → canonical text, None for a side where the row
is gone) and ``review`` (job, side, legacy ID). Comparisons leave these rows open (they are
not superseded), and a run does not park a record twice.

``review resolve ID --winner source|target|skip`` applies the winner's *current* version
to the other side (:mod:`isthmus.resolve`) and closes the item; ``skip`` closes it without
writing, and a record still changed on both sides is parked again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import func

from isthmus.diff import REVIEW_KEY, gone_condition
from isthmus.diff_detail import field_text
from isthmus.diff_source import rows_by_ids
from isthmus.diff_target import TargetSide
from isthmus.errors import UsageError
from isthmus.loadplan import EntityLoad
from isthmus.resolve import Resolution, resolve_differentials
from isthmus.state.models import DataDifferential, SynchronizationJob
from isthmus.state.schema import require_current
from isthmus.state.store import StateStore
from isthmus.state.store_base import load as load_row
from isthmus.workspace import Workspace

WINNERS = {"source": "source_wins", "target": "target_wins", "skip": "skip"}


@dataclass
class ReviewItem:
    id: UUID
    entity: str
    legacy_id: int
    comparison_type: str
    side: str
    job: str | None
    source: dict[str, str | None] | None
    target: dict[str, str | None] | None
    created_at: datetime
    resolved: bool

    @classmethod
    def of(cls, d: DataDifferential) -> ReviewItem:
        meta = d.metadata
        info = meta.get(REVIEW_KEY) if isinstance(meta.get(REVIEW_KEY), dict) else {}
        assert isinstance(info, dict)
        return cls(
            id=d.id,
            entity=str(meta.get("entity") or d.source_table),
            legacy_id=int(str(d.legacy_ids[0])) if d.legacy_ids else -1,
            comparison_type=str(d.comparison_type),
            side=str(info.get("side", "")),
            job=str(info["job"]) if info.get("job") is not None else None,
            source=meta.get("source"),  # type: ignore[arg-type]
            target=meta.get("target"),  # type: ignore[arg-type]
            created_at=d.created_at,
            resolved=d.resolved,
        )

    @property
    def columns(self) -> list[str]:
        names = list(self.source or {}) or list(self.target or {})
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "entity": self.entity,
            "legacy_id": self.legacy_id,
            "comparison_type": self.comparison_type,
            "side": self.side,
            "job": self.job,
            "source": self.source,
            "target": self.target,
            "created_at": self.created_at.isoformat(),
            "resolved": self.resolved,
        }


def park(
    ws: Workspace,
    conn: psycopg.Connection[Any],
    load: EntityLoad,
    job: SynchronizationJob,
    *,
    checkpoint_id: UUID,
    items: list[tuple[str, str, int]],
) -> int:
    """Queue ``items`` ((comparison type, side, legacy ID)) for review with both versions;
    records already waiting are not queued twice. Returns how many were queued."""
    if not items:
        return 0
    waiting = {i.legacy_id for i in open_items(ws, entity=load.name)}
    new = [(kind, side, i) for kind, side, i in items if i not in waiting]
    if not new:
        return 0
    ids = [i for _, _, i in new]
    side = TargetSide(load, ws.state_schema, gone_condition(load))
    source_rows = rows_by_ids(ws.source, load, ids)
    target_rows = side.fields_by_ids(conn, ids)
    conn.commit()
    positions = [load.columns.index(c) for c in load.checksummed]
    names = [c.source for c in load.checksummed]
    store = StateStore(ws.state_schema)
    target_table = f"{load.target.schema}.{load.target.name}"
    with ws.engine.begin() as sa:
        for kind, who, legacy_id in new:
            src = source_rows.get(legacy_id)
            tgt = target_rows.get(legacy_id)
            source = None if src is None else _named(names, [src[p] for p in positions])
            target = None if tgt is None else _named(names, tgt)
            store.add_differential(
                sa,
                source_table=load.source_table,
                target_table=target_table,
                comparison_type=kind,
                legacy_ids=[legacy_id],
                checkpoint_id=checkpoint_id,
                resolution_strategy="manual_review",
                comparison_criteria={"columns": names, "rule": "manual"},
                metadata={
                    "entity": load.name,
                    REVIEW_KEY: {"job": job.job_name, "job_id": str(job.id), "side": who},
                    "source": source,
                    "target": target,
                },
            )
    return len(new)


def _named(names: list[str], fields: list[bytes]) -> dict[str, str | None]:
    return {n: field_text(f) for n, f in zip(names, fields, strict=True)}


def open_items(
    ws: Workspace, *, entity: str | None = None, job: str | None = None, limit: int = 100_000
) -> list[ReviewItem]:
    """Records waiting for a person, oldest first."""
    require_current(ws.engine, ws.state_schema)
    store = StateStore(ws.state_schema)
    t = store.differentials
    statement = (
        t.select()
        .where(
            t.c.resolved.is_(False),
            t.c.resolution_strategy == "manual_review",
            t.c.metadata.has_key(REVIEW_KEY),
        )
        .order_by(t.c.created_at, t.c.id)
        .limit(limit)
    )
    if entity is not None:  # as ReviewItem.entity reads it
        statement = statement.where(
            func.coalesce(t.c.metadata["entity"].astext, t.c.source_table) == entity
        )
    if job is not None:
        statement = statement.where(t.c.metadata[REVIEW_KEY]["job"].astext == job)
    with ws.engine.connect() as sa:
        rows = sa.execute(statement).fetchall()
    return [ReviewItem.of(load_row(DataDifferential, r)) for r in rows]


def resolve_item(ws: Workspace, item_id: str, winner: str) -> Resolution:
    """Apply the ``winner``'s version of a waiting record and close the item."""
    if winner not in WINNERS:
        raise UsageError(f"unknown winner {winner!r}: one of {', '.join(WINNERS)}")
    try:
        key = UUID(item_id)
    except ValueError:
        raise UsageError(f"not a review item id: {item_id!r}") from None
    require_current(ws.engine, ws.state_schema)
    with ws.engine.connect() as sa:
        d = StateStore(ws.state_schema).get_differential(sa, key)
    if not isinstance(d.metadata.get(REVIEW_KEY), dict):
        raise UsageError(f"differential {item_id} is not in the review queue (see `review list`)")
    (done,) = resolve_differentials(ws, [key], strategy=WINNERS[winner]).resolutions
    return done
