"""Shared helpers of the state-store tests (no tests here): engines, migrated schemas, catalog.

Each test module gets the session database's engine and one schema migrated to head
(once per session), and runs every test in a transaction rolled back at the end.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from isthmus.dialects.pgconn import sqlalchemy_url
from isthmus.state.schema import upgrade_state_schema
from isthmus.urls import DatabaseURL

_MIGRATED: dict[str, str] = {}


def state_engine(url: DatabaseURL) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url), pool_size=4)


def unique_schema(prefix: str = "st") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def migrated_schema(engine: sa.Engine) -> str:
    """One schema at head per database and session."""
    key = str(engine.url)
    if key not in _MIGRATED:
        schema = unique_schema()
        upgrade_state_schema(engine, schema)
        _MIGRATED[key] = schema
    return _MIGRATED[key]


def catalog(conn: sa.Connection, schema: str, *, with_code: bool = True) -> dict[str, list[Any]]:
    """Every definition the schema holds, with its own name replaced by ``<schema>``.

    ``with_code=False`` leaves out triggers and functions (which metadata cannot describe)
    and Alembic's version table.
    """
    params = {"schema": schema}
    queries = {
        "tables": """
            SELECT c.relname, c.relkind FROM pg_class c
            WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r', 'p', 'v')
        """,
        "columns": """
            SELECT table_name, column_name, ordinal_position, data_type, udt_schema, udt_name,
                   is_nullable, column_default, numeric_precision, numeric_scale
            FROM information_schema.columns WHERE table_schema = :schema
        """,
        "constraints": """
            SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = CAST(:schema AS regnamespace)
        """,
        "indexes": """
            SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :schema
        """,
        "types": """
            SELECT t.typname, string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder)
            FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
            WHERE t.typnamespace = CAST(:schema AS regnamespace) GROUP BY t.typname
        """,
        "triggers": """
            SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relnamespace = CAST(:schema AS regnamespace) AND NOT t.tgisinternal
        """,
        "functions": """
            SELECT proname, pg_get_functiondef(oid) FROM pg_proc
            WHERE pronamespace = CAST(:schema AS regnamespace)
        """,
    }
    if not with_code:
        del queries["triggers"], queries["functions"]
    snapshot: dict[str, list[Any]] = {}
    for name, query in queries.items():
        rows = conn.execute(sa.text(query), params).all()
        normalised = [
            tuple(str(v).replace(schema, "<schema>") if v is not None else None for v in row)
            for row in rows
        ]
        if not with_code:
            normalised = [
                row for row in normalised if "alembic_version" not in " ".join(map(str, row))
            ]
        snapshot[name] = sorted(normalised, key=repr)
    return snapshot
