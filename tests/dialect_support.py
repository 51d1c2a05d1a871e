"""Helpers for the dialect tests: run setup SQL on a real database with its own driver."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg

from isthmus.urls import DatabaseURL


def run_sql(url: DatabaseURL, statements: Sequence[str | tuple[str, Sequence[Any]]]) -> None:
    """Execute setup statements with a writable connection; parameters are marked ``%s``."""
    if url.dialect == "sqlite":
        conn = sqlite3.connect(url.database or "")
        try:
            for item in statements:
                sql, params = item if isinstance(item, tuple) else (item, ())
                conn.execute(sql.replace("%s", "?") if params else sql, params)
            conn.commit()
        finally:
            conn.close()
    elif url.dialect == "postgresql":
        with psycopg.connect(url.raw, autocommit=True) as pg:
            for item in statements:
                sql, params = item if isinstance(item, tuple) else (item, ())
                pg.execute(sql, params)
    else:
        my = mysql_admin(url)
        try:
            with my.cursor() as cur:
                for item in statements:
                    sql, params = item if isinstance(item, tuple) else (item, ())
                    cur.execute(sql, tuple(params) or None)
        finally:
            my.close()


def mysql_admin(url: DatabaseURL, database: str | None = "") -> Any:
    import pymysql

    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database if database == "" else database,
        autocommit=True,
        charset="utf8mb4",
    )


def quote(url: DatabaseURL, name: str) -> str:
    q = "`" if url.dialect == "mysql" else '"'
    return q + name.replace(q, q + q) + q
