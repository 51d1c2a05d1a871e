"""Shared helpers of the mapping tests (no tests here): a schema with the control
tables, connections that count the statements they send."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from isthmus.dialects.pgconn import conninfo, sqlalchemy_url
from isthmus.state.tables import build_metadata
from isthmus.urls import DatabaseURL


def create_mapping_schema(url: DatabaseURL, prefix: str = "map") -> str:
    """A new schema holding the control tables (the lead switches this to ``init`` later)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        build_metadata(schema).create_all(engine)
    finally:
        engine.dispose()
    return schema


def drop_schema(url: DatabaseURL, schema: str) -> None:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def truncate(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(
        sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, "legacy_id_mappings")),
    )
    if not conn.autocommit:
        conn.commit()


def count_rows(conn: psycopg.Connection[Any], schema: str, entity: str | None = None) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "legacy_id_mappings"))
    if entity is not None:
        query = sql.SQL("{} WHERE entity_type = {}").format(query, sql.Literal(entity))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


class CountingCursor(psycopg.Cursor[Any]):
    """Counts every statement and COPY sent through it on its connection's ``statements``."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> CountingCursor:
        _log(self.connection, query)
        super().execute(query, params, **kwargs)
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        for _ in params_seq:
            _log(self.connection, query)
        super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        _log(self.connection, statement)
        return super().copy(statement, params, **kwargs)


def _log(conn: Any, query: Any) -> None:
    text = query.as_string(conn) if isinstance(query, sql.Composable) else str(query)
    conn.statements.append(" ".join(text.split()))


class CountingConnection(psycopg.Connection[Any]):
    statements: list[str]


def counting_connect(url: DatabaseURL, **kwargs: Any) -> CountingConnection:
    conn = CountingConnection.connect(conninfo(url), cursor_factory=CountingCursor, **kwargs)
    conn.statements = []
    return conn
