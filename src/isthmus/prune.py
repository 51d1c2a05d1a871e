"""Retention: ``isthmus prune`` removes finished history older than ``[retention] days``.

Everything goes in one transaction on the target (a dry run counts, then rolls back):

- ``migration_validation_reports`` that have expired and were generated before the cutoff,
  keeping the newest report per (source entity, validation type, job);
- ``data_differentials`` that are resolved, resolved before the cutoff, keeping the newest
  differential per (entity, comparison type); an unresolved one is never removed;
- ``quarantined_rows`` resolved (their row went in) before the cutoff;
- ``migration_checkpoints`` ``completed`` or ``failed`` and last touched before the cutoff,
  keeping per (entity, operation, job) the newest checkpoint and the newest ``completed``
  one, the whole entity's and its key-range chunks' apart (``migrate`` asks whether a parent entity ever completed, the cursor diff reads the
  marks of the last completed comparison), and every checkpoint a remaining differential,
  report or quarantined row points at. ``pending``, ``in_progress`` and ``paused`` ones are
  live or resumable work and are never removed;
- ``target_deletions`` captured before the cutoff that no cursor diff can read again: older
  than the target clock of each remaining completed checkpoint with cursor marks of the
  entity (less ``[diff] cursor_overlap_seconds``), see ``diff_cursor.previous_marks``;
- procrastinate's ``procrastinate_jobs`` in the state schema, when there is such a table:
  jobs in a final status whose last event is before the cutoff (their events go with them,
  by the foreign key's ``ON DELETE CASCADE``).

Every statement is one set-based ``DELETE``; the order above is the order of the foreign
keys (a checkpoint goes only once nothing that remains references it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from isthmus.dialects.pgconn import translated
from isthmus.errors import UsageError
from isthmus.workspace import Workspace

FINISHED_CHECKPOINTS = ("completed", "failed")
FINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled", "aborted")


@dataclass(frozen=True)
class PruneResult:
    """What prune removed (or, with ``dry_run``, would remove), per table."""

    days: int
    cutoff: datetime
    dry_run: bool
    migration_validation_reports: int = 0
    data_differentials: int = 0
    quarantined_rows: int = 0
    migration_checkpoints: int = 0
    target_deletions: int = 0
    procrastinate_jobs: int | None = None  # None: the state schema holds no procrastinate tables
    procrastinate_events: int | None = None  # removed with their jobs

    def counts(self) -> dict[str, int | None]:
        return {
            "migration_checkpoints": self.migration_checkpoints,
            "data_differentials": self.data_differentials,
            "migration_validation_reports": self.migration_validation_reports,
            "quarantined_rows": self.quarantined_rows,
            "target_deletions": self.target_deletions,
            "procrastinate_jobs": self.procrastinate_jobs,
            "procrastinate_events": self.procrastinate_events,
        }

    @property
    def total(self) -> int:
        return sum(n for n in self.counts().values() if n is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "deleted": self.counts(),
            "total": self.total,
        }


def run_prune(ws: Workspace, *, days: int | None = None, dry_run: bool = False) -> PruneResult:
    """Remove finished history older than ``days`` (default ``[retention] days``) from the
    state schema, in one transaction; with ``dry_run``, count it and roll back."""
    days = ws.config.retention.days if days is None else days
    if days < 1:
        raise UsageError(f"retention days must be at least 1, got {days}")
    overlap = timedelta(seconds=ws.config.diff.cursor_overlap_seconds)
    # the connection's block rolls back on any error: nothing is removed unless all is
    with translated(), ws.connect_target() as conn:
        pruner = _Pruner(conn, ws.state_schema)
        row = conn.execute("SELECT now() - make_interval(days => %s)", (days,)).fetchone()
        assert row is not None
        cutoff: datetime = row[0]
        counts: dict[str, Any] = {
            "migration_validation_reports": pruner.reports(cutoff),
            "data_differentials": pruner.differentials(cutoff),
            "quarantined_rows": pruner.quarantine(cutoff),
            "migration_checkpoints": pruner.checkpoints(cutoff),
            "target_deletions": pruner.target_deletions(cutoff, overlap),
        }
        jobs = pruner.procrastinate(cutoff)  # last: it changes the search_path
        if jobs is not None:
            counts["procrastinate_jobs"], counts["procrastinate_events"] = jobs
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    return PruneResult(days=days, cutoff=cutoff, dry_run=dry_run, **counts)


class _Pruner:
    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def _delete(self, statement: sql.Composed, params: dict[str, Any]) -> int:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.rowcount

    def reports(self, cutoff: datetime) -> int:
        statement = sql.SQL(
            """
            DELETE FROM {t} WHERE id IN (
                SELECT id FROM (
                    SELECT id, generated_at, expires_at, row_number() OVER (
                        PARTITION BY source_entity, validation_type, job_id
                        ORDER BY generated_at DESC, id DESC) AS newest
                    FROM {t}) AS ranked
                WHERE newest > 1 AND expires_at < now() AND generated_at < %(cutoff)s)
            """
        ).format(t=self._table("migration_validation_reports"))
        return self._delete(statement, {"cutoff": cutoff})

    def differentials(self, cutoff: datetime) -> int:
        statement = sql.SQL(
            """
            DELETE FROM {t} WHERE id IN (
                SELECT id FROM (
                    SELECT id, resolved, resolved_at, created_at, row_number() OVER (
                        PARTITION BY coalesce(metadata->>'entity', source_table), comparison_type
                        ORDER BY created_at DESC, id DESC) AS newest
                    FROM {t}) AS ranked
                WHERE newest > 1 AND resolved AND resolved_at IS NOT NULL
                  AND greatest(resolved_at, created_at) < %(cutoff)s)
            """
        ).format(t=self._table("data_differentials"))
        return self._delete(statement, {"cutoff": cutoff})

    def quarantine(self, cutoff: datetime) -> int:
        statement = sql.SQL(
            "DELETE FROM {t} WHERE resolved AND resolved_at IS NOT NULL"
            " AND greatest(resolved_at, updated_at) < %(cutoff)s"
        ).format(t=self._table("quarantined_rows"))
        return self._delete(statement, {"cutoff": cutoff})

    def checkpoints(self, cutoff: datetime) -> int:
        statement = sql.SQL(
            """
            DELETE FROM {c} AS c WHERE c.id IN (
                SELECT id FROM (
                    SELECT id, status::text AS status,
                           greatest(created_at, updated_at, completed_at) AS touched,
                           row_number() OVER (
                               PARTITION BY entity_type, operation_type, job_id,
                                            metadata ? 'chunk'
                               ORDER BY created_at DESC, id DESC) AS newest,
                           row_number() OVER (
                               PARTITION BY entity_type, operation_type, job_id,
                                            metadata ? 'chunk', status::text = 'completed'
                               ORDER BY created_at DESC, id DESC) AS newest_of_kind
                    FROM {c}) AS ranked
                WHERE status = ANY(%(finished)s) AND touched < %(cutoff)s AND newest > 1
                  AND NOT (status = 'completed' AND newest_of_kind = 1))
              AND NOT EXISTS (SELECT 1 FROM {d} AS d WHERE d.checkpoint_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM {r} AS r WHERE r.checkpoint_id = c.id)
              AND NOT EXISTS (SELECT 1 FROM {q} AS q WHERE q.checkpoint_id = c.id)
            """
        ).format(
            c=self._table("migration_checkpoints"),
            d=self._table("data_differentials"),
            r=self._table("migration_validation_reports"),
            q=self._table("quarantined_rows"),
        )
        return self._delete(statement, {"cutoff": cutoff, "finished": list(FINISHED_CHECKPOINTS)})

    def target_deletions(self, cutoff: datetime, overlap: timedelta) -> int:
        """Captured target deletes before the cutoff that no cursor diff will read again.

        A cursor diff reads the captures from the target clock of the marks it starts from
        (the newest completed checkpoint of the entity with marks for its ``updated_at``
        column) less the overlap. Any remaining completed checkpoint with marks may be that
        one, so each entity keeps its captures from the oldest such clock on."""
        marks = sql.SQL(
            "SELECT entity_type, metadata->'cursor'->>'target_clock' FROM {c}"
            " WHERE status::text = 'completed' AND jsonb_typeof(metadata->'cursor') = 'object'"
            " AND metadata->'cursor'->'deletes_captured' = 'true'::jsonb"
        ).format(c=self._table("migration_checkpoints"))
        since: dict[str, datetime] = {}
        unreadable: set[str] = set()  # marks that do not parse: keep all of the entity's
        for entity, clock in self.conn.execute(marks).fetchall():
            when = _instant(clock)
            if when is None:
                unreadable.add(entity)
            else:
                since[entity] = min(when - overlap, since.get(entity, when - overlap))
        statement = sql.SQL(
            """
            DELETE FROM {t} AS d WHERE d.deleted_at < %(cutoff)s
              AND NOT (d.entity_type = ANY(%(kept)s::text[]))
              AND d.deleted_at < coalesce(
                  (SELECT h.since FROM unnest(%(entities)s::text[], %(since)s::timestamptz[])
                       AS h(entity, since) WHERE h.entity = d.entity_type),
                  'infinity'::timestamptz)
            """
        ).format(t=self._table("target_deletions"))
        return self._delete(
            statement,
            {
                "cutoff": cutoff,
                "kept": sorted(unreadable),
                "entities": list(since),
                "since": list(since.values()),
            },
        )

    def procrastinate(self, cutoff: datetime) -> tuple[int, int] | None:
        """Finished procrastinate jobs whose last event is before the cutoff; None when the
        state schema holds no procrastinate tables."""
        row = self.conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %(s)s::text, 'procrastinate_jobs')),"
            " to_regclass(format('%%I.%%I', %(s)s::text, 'procrastinate_events'))",
            {"s": self.schema},
        ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        # procrastinate's own triggers (the one unlinking periodic defers of a deleted job)
        # name its tables without a schema
        self.conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(self.schema))
        )
        statement = sql.SQL(
            """
            WITH doomed AS MATERIALIZED (
                SELECT j.id FROM {j} AS j
                JOIN (SELECT job_id, max(at) AS last_at FROM {e} GROUP BY job_id) AS ev
                  ON ev.job_id = j.id
                WHERE j.status::text = ANY(%(final)s) AND ev.last_at < %(cutoff)s
            ), events AS (
                SELECT count(*) AS n FROM {e} WHERE job_id IN (SELECT id FROM doomed)
            ), gone AS (
                DELETE FROM {j} WHERE id IN (SELECT id FROM doomed) RETURNING id
            )
            SELECT (SELECT count(*) FROM gone), (SELECT n FROM events)
            """
        ).format(j=self._table("procrastinate_jobs"), e=self._table("procrastinate_events"))
        found = self.conn.execute(
            statement, {"final": list(FINAL_JOB_STATUSES), "cutoff": cutoff}
        ).fetchone()
        assert found is not None
        return int(found[0]), int(found[1])


def _instant(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
