"""The target tables as PostgreSQL holds them: columns, types (domains resolved), key.

The migration writes into whatever tables exist (made by ``isthmus schema --apply`` or by
hand); it reads their real column types here to know how each value is put in canonical
form and what the target will accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from isthmus.canonical import CanonKind, kind_of_pg_type
from isthmus.dialects.pgconn import translated

_COLUMNS = """
SELECT a.attname,
       format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid),
                   CASE WHEN t.typbasetype <> 0 THEN t.typtypmod ELSE a.atttypmod END),
       coalesce(bt.typtype, t.typtype) = 'e',
       NOT a.attnotnull AND NOT (t.typtype = 'd' AND t.typnotnull),
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p')
ORDER BY a.attnum
"""

_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
ORDER BY k.ord
"""


@dataclass(frozen=True)
class TargetColumn:
    name: str
    type_name: str  # as format_type prints it, domains resolved to their base type
    kind: CanonKind
    nullable: bool
    has_default: bool


@dataclass(frozen=True)
class TargetTable:
    schema: str
    name: str
    columns: dict[str, TargetColumn]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> TargetColumn | None:
        return self.columns.get(name)


def reflect_table(conn: psycopg.Connection[Any], schema: str, table: str) -> TargetTable | None:
    """The table ``schema.table`` of the target, or None when it does not exist."""
    with translated(), conn.cursor() as cur:
        rows = cur.execute(_COLUMNS, (schema, table)).fetchall()
        if not rows:
            return None
        pk = [r[0] for r in cur.execute(_PRIMARY_KEY, (schema, table)).fetchall()]
    columns = {
        name: TargetColumn(
            name=name,
            type_name=type_name,
            kind=kind_of_pg_type(type_name, is_enum=bool(is_enum)),
            nullable=bool(nullable),
            has_default=bool(has_default),
        )
        for name, type_name, is_enum, nullable, has_default in rows
    }
    return TargetTable(schema=schema, name=table, columns=columns, primary_key=tuple(pk))
