"""Quarantined rows: source rows the migration could not write, kept with their key and reason.

A row lands here when the target refuses it (a constraint, an encoding, a value out of
range) or when it points at a parent that is not in the target (an orphan). The rest of
its batch goes in. A quarantined row is tried again by every later run; once it goes in,
its entry is marked resolved. ``isthmus quarantine list`` shows the open ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from isthmus.dialects.pgconn import translated

TABLE = "quarantined_rows"
_VALUE_LIMIT = 2_000  # characters kept of each value in row_data


@dataclass(frozen=True)
class Quarantined:
    """One bad row to record."""

    legacy_key: str
    kind: str  # orphan | rejected | unreadable
    reason: str
    column: str | None = None
    row: dict[str, str | None] | None = None


@dataclass(frozen=True)
class QuarantineEntry:
    id: UUID
    entity_type: str
    source_table: str
    legacy_key: str
    kind: str
    column_name: str | None
    reason: str
    attempts: int
    resolved: bool
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "entity": self.entity_type,
            "source_table": self.source_table,
            "legacy_key": self.legacy_key,
            "kind": self.kind,
            "column": self.column_name,
            "reason": self.reason,
            "attempts": self.attempts,
            "resolved": self.resolved,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def row_data(columns: Sequence[str], values: Sequence[str | None]) -> dict[str, str | None]:
    return {
        c: (v if v is None or len(v) <= _VALUE_LIMIT else v[:_VALUE_LIMIT] + "…")
        for c, v in zip(columns, values, strict=True)
    }


def record(
    conn: psycopg.Connection[Any],
    schema: str,
    entity: str,
    source_table: str,
    entries: Iterable[Quarantined],
    *,
    checkpoint_id: UUID | None,
) -> int:
    """Record (or re-record, counting the attempt) bad rows, in the caller's transaction."""
    rows = [
        (
            entity,
            source_table,
            e.legacy_key,
            e.kind,
            e.column,
            e.reason.replace("\x00", "\\0") or "rejected",
            None if e.row is None else json.dumps(e.row, ensure_ascii=False).replace("\\u0000", ""),
            checkpoint_id,
        )
        for e in entries
    ]
    if not rows:
        return 0
    statement = sql.SQL(
        """
        INSERT INTO {t} AS q (entity_type, source_table, legacy_key, kind, column_name, reason,
                              row_data, checkpoint_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)
        ON CONFLICT (entity_type, legacy_key) DO UPDATE SET
            kind = excluded.kind, column_name = excluded.column_name, reason = excluded.reason,
            row_data = excluded.row_data, checkpoint_id = excluded.checkpoint_id,
            attempts = q.attempts + 1, resolved = false, resolved_at = NULL, updated_at = now()
        """
    ).format(t=sql.Identifier(schema, TABLE))
    with translated(), conn.cursor() as cur:
        cur.executemany(statement, rows)
    return len(rows)


def open_keys(conn: psycopg.Connection[Any], schema: str, entity: str) -> set[str]:
    """Legacy keys of the entity's unresolved entries."""
    statement = sql.SQL(
        "SELECT legacy_key FROM {t} WHERE entity_type = %s AND NOT resolved"
    ).format(t=sql.Identifier(schema, TABLE))
    with translated(), conn.cursor() as cur:
        return {r[0] for r in cur.execute(statement, (entity,))}


def resolve_keys(
    conn: psycopg.Connection[Any], schema: str, entity: str, keys: Sequence[str]
) -> int:
    """Mark entries resolved: their rows went in."""
    if not keys:
        return 0
    statement = sql.SQL(
        "UPDATE {t} SET resolved = true, resolved_at = now(), updated_at = now()"
        " WHERE entity_type = %s AND legacy_key = ANY(%s) AND NOT resolved"
    ).format(t=sql.Identifier(schema, TABLE))
    with translated(), conn.cursor() as cur:
        cur.execute(statement, (entity, list(keys)))
        return cur.rowcount


def list_entries(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    entity: str | None = None,
    include_resolved: bool = False,
    limit: int = 1000,
) -> list[QuarantineEntry]:
    conditions = [sql.SQL("true")]
    params: list[Any] = []
    if entity is not None:
        conditions.append(sql.SQL("entity_type = %s"))
        params.append(entity)
    if not include_resolved:
        conditions.append(sql.SQL("NOT resolved"))
    statement = sql.SQL(
        "SELECT id, entity_type, source_table, legacy_key, kind, column_name, reason, attempts,"
        " resolved, created_at, updated_at FROM {t} WHERE {w}"
        " ORDER BY entity_type, created_at, legacy_key LIMIT %s"
    ).format(t=sql.Identifier(schema, TABLE), w=sql.SQL(" AND ").join(conditions))
    params.append(limit)
    with translated(), conn.cursor() as cur:
        return [QuarantineEntry(*row) for row in cur.execute(statement, params)]


def count_open(conn: psycopg.Connection[Any], schema: str, entities: Sequence[str]) -> int:
    """How many rows of these entities are still quarantined."""
    statement = sql.SQL(
        "SELECT count(*) FROM {t} WHERE entity_type = ANY(%s) AND NOT resolved"
    ).format(t=sql.Identifier(schema, TABLE))
    with translated(), conn.cursor() as cur:
        row = cur.execute(statement, (list(entities),)).fetchone()
    return int(row[0]) if row else 0
