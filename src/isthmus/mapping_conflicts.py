"""The checks of a mapping import: does the staged file contradict itself or the table?

The staged file is the temporary table :data:`STAGE` (``line, entity_type,
legacy_id, uuid_id``) that ``mapping_io`` fills. A contradiction raises
MappingConflict: one line naming the file, the kinds and counts of
contradictions, and up to five example lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from isthmus.errors import MappingConflict
from isthmus.mapping import TABLE, table

STAGE = "isthmus_import_stage"
MAX_EXAMPLES = 5


def check_existing(cur: psycopg.Cursor[Any], schema: str, path: Path, entities: set[str]) -> int:
    """Lines already mapped identically; raises MappingConflict on any contradiction."""
    exists = cur.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE entity_type = ANY(%s))").format(
            table(schema)
        ),
        (sorted(entities),),
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE m.uuid_id = s.uuid_id),"
            " count(*) FILTER (WHERE m.uuid_id <> s.uuid_id)"
            " FROM {stage} s JOIN {table} m"
            " ON m.entity_type = s.entity_type AND m.legacy_id = s.legacy_id"
        ).format(stage=sql.Identifier(STAGE), table=table(schema))
    ).fetchone()
    already, contradicting = (int(row[0]), int(row[1])) if row else (0, 0)
    uuid_taken = cur.execute(
        sql.SQL(
            "SELECT count(*) FROM {stage} s JOIN {table} m"
            " ON m.entity_type = s.entity_type AND m.uuid_id = s.uuid_id"
            " WHERE m.legacy_id <> s.legacy_id"
        ).format(stage=sql.Identifier(STAGE), table=table(schema))
    ).fetchone()
    if contradicting or (uuid_taken and uuid_taken[0]):
        report_conflicts(cur, schema, path)
    return already


# Each check: its query (one row per example, with the total in the last column),
# how to tell one example, and how to count them all.
Row = tuple[Any, ...]
_CHECKS: list[tuple[bool, str, Callable[[Row], tuple[int, str]], str]] = [
    (
        False,
        """SELECT entity_type, legacy_id, array_agg(uuid_id::text ORDER BY line),
                  array_agg(line ORDER BY line), count(*) OVER ()
           FROM {stage} GROUP BY entity_type, legacy_id HAVING count(DISTINCT uuid_id) > 1
           ORDER BY min(line) LIMIT %(limit)s""",
        lambda r: (
            r[3][1],
            f"line {r[3][1]}: {r[0]} legacy_id {r[1]} → {r[2][1]}, "
            f"but line {r[3][0]} maps it to {r[2][0]}",
        ),
        "legacy_id(s) with two UUIDs in the file",
    ),
    (
        False,
        """SELECT entity_type, uuid_id, array_agg(legacy_id ORDER BY line),
                  array_agg(line ORDER BY line), count(*) OVER ()
           FROM {stage} GROUP BY entity_type, uuid_id HAVING count(DISTINCT legacy_id) > 1
           ORDER BY min(line) LIMIT %(limit)s""",
        lambda r: (
            r[3][1],
            f"line {r[3][1]}: {r[0]} uuid_id {r[1]} for legacy_id {r[2][1]}, "
            f"but line {r[3][0]} gives it to legacy_id {r[2][0]}",
        ),
        "uuid_id(s) with two legacy_ids in the file",
    ),
    (
        True,
        """SELECT s.line, s.entity_type, s.legacy_id, s.uuid_id, m.uuid_id, count(*) OVER ()
           FROM {stage} s JOIN {table} m
             ON m.entity_type = s.entity_type AND m.legacy_id = s.legacy_id
           WHERE m.uuid_id <> s.uuid_id ORDER BY s.line LIMIT %(limit)s""",
        lambda r: (
            r[0],
            f"line {r[0]}: {r[1]} legacy_id {r[2]} is already mapped to {r[4]}, not {r[3]}",
        ),
        "line(s) contradicting a mapped legacy_id",
    ),
    (
        True,
        """SELECT s.line, s.entity_type, s.legacy_id, s.uuid_id, m.legacy_id, count(*) OVER ()
           FROM {stage} s JOIN {table} m
             ON m.entity_type = s.entity_type AND m.uuid_id = s.uuid_id
           WHERE m.legacy_id <> s.legacy_id ORDER BY s.line LIMIT %(limit)s""",
        lambda r: (
            r[0],
            f"line {r[0]}: {r[1]} uuid_id {r[3]} is already mapped to legacy_id {r[4]}, not {r[2]}",
        ),
        "line(s) reusing a mapped uuid_id",
    ),
]


def report_conflicts(
    cur: psycopg.Cursor[Any], schema: str, path: Path, *, against_table: bool = True
) -> None:
    """Gather every kind of contradiction (examples and counts); raise if there is any."""
    examples: list[tuple[int, str]] = []
    counts: list[str] = []
    names = {"stage": sql.Identifier(STAGE), "table": table(schema)}
    for needs_table, query, example, kind in _CHECKS:
        if needs_table and not against_table:
            continue
        rows = cur.execute(sql.SQL(query).format(**names), {"limit": MAX_EXAMPLES}).fetchall()
        examples.extend(example(row) for row in rows)
        if rows:
            counts.append(f"{rows[0][-1]} {kind}")
    if examples:
        shown = "; ".join(text for _, text in sorted(examples)[:MAX_EXAMPLES])
        raise MappingConflict(
            f"{path}: nothing imported, {', '.join(counts)} (table {schema}.{TABLE}): {shown}"
        )
