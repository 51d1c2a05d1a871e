"""MySQL/MariaDB reflection from information_schema: a handful of queries for the whole database.

Legacy quirks handled: MyISAM tables (no foreign keys: noted), ``tinyint(1)`` and ``bit(1)``
as booleans, unsigned integers widened, ``year``, ``enum``/``set`` members, MariaDB's JSON
(a ``longtext`` with a ``json_valid`` check), views and MariaDB sequences kept out of tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from isthmus.dialects.base import Column, ForeignKey, Index, SchemaInfo, Table
from isthmus.dialects.typemap import mysql_enum_values, mysql_type

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_TRANSACTIONAL = {"innodb", "ndbcluster", "ndb", "tokudb", "rocksdb"}


def reflect(query: Query, database: str) -> SchemaInfo:
    tables_rows = query(
        "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        (database,),
    )
    notes: list[str] = []
    views: list[str] = []
    wanted: dict[str, tuple[str | None, int | None]] = {}
    for name, table_type, engine, table_rows in tables_rows:
        if table_type == "VIEW":
            views.append(name)
        elif table_type in ("BASE TABLE", "SYSTEM VERSIONED"):
            wanted[name] = (engine, table_rows)
        else:
            notes.append(f"table {name!r} skipped: {table_type.lower()}")
    columns = _columns(query, database, _json_checked(query, database))
    primary, indexes = _indexes(query, database)
    fks = _foreign_keys(query, database, notes)
    tables: dict[str, Table] = {}
    for name, (engine, table_rows) in wanted.items():
        if engine and engine.lower() not in _TRANSACTIONAL and not fks.get(name):
            notes.append(
                f"table {name!r} uses {engine}, which keeps no foreign keys: "
                f"declare its references in [entities.{name}]"
            )
        tables[name] = Table(
            name=name,
            columns=tuple(columns.get(name, ())),
            primary_key=primary.get(name, ()),
            foreign_keys=tuple(fks.get(name, ())),
            indexes=tuple(indexes.get(name, ())),
            row_estimate=int(table_rows) if table_rows is not None else None,
        )
    return SchemaInfo(tables=tables, views=tuple(views), notes=tuple(notes))


def column_types(query: Query, database: str, table: str) -> dict[str, str]:
    """DATA_TYPE of every column of ``table``: what stream() needs to fix values up."""
    rows = query(
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (database, table),
    )
    return {name: data_type.lower() for name, data_type in rows}


def charsets(query: Query, database: str, table: str) -> dict[str, str]:
    """CHARACTER_SET_NAME of every character column of ``table`` (lower case)."""
    rows = query(
        "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CHARACTER_SET_NAME IS NOT NULL",
        (database, table),
    )
    return {name: str(charset).lower() for name, charset in rows}


def _columns(
    query: Query, database: str, json_checked: set[tuple[str, str]]
) -> dict[str, list[Column]]:
    rows = query(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
        "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (database,),
    )
    found: dict[str, list[Column]] = {}
    for (
        table,
        name,
        data_type,
        column_type,
        nullable,
        default,
        extra,
        char_len,
        prec,
        scale,
        dt_prec,
    ) in rows:
        base_type, declared = _text(data_type).lower(), _text(column_type).lower()
        info = mysql_type(
            base_type,
            declared,
            char_length=_int(char_len),
            precision=_int(prec),
            scale=_int(scale),
            datetime_precision=_int(dt_prec),
        )
        kind = "json" if (table, name) in json_checked and info.kind == "text" else info.kind
        # members from COLUMN_TYPE as written: `declared` is lowercased, the members are data
        members = _text(column_type)
        enum_values = mysql_enum_values(members) if base_type in ("enum", "set") else ()
        found.setdefault(table, []).append(
            Column(
                name=name,
                type_name=declared,
                kind=kind,
                nullable=nullable == "YES",
                bits=info.bits,
                unsigned=info.unsigned,
                length=info.length,
                precision=info.precision,
                scale=info.scale,
                enum_values=enum_values,
                default=_default(default),
                autoincrement="auto_increment" in _text(extra).lower(),
            )
        )
    return found


def _indexes(
    query: Query, database: str
) -> tuple[dict[str, tuple[str, ...]], dict[str, list[Index]]]:
    rows = query(
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        (database,),
    )
    grouped: dict[tuple[str, str], tuple[bool, list[str | None]]] = {}
    for table, index, non_unique, column in rows:
        grouped.setdefault((table, index), (not int(non_unique), []))[1].append(column)
    primary: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, list[Index]] = {}
    for (table, index), (unique, cols) in grouped.items():
        if any(c is None for c in cols):  # functional index (MySQL 8): not a column list
            continue
        names = tuple(c for c in cols if c is not None)
        if index == "PRIMARY":
            primary[table] = names
        else:
            indexes.setdefault(table, []).append(Index(name=index, columns=names, unique=unique))
    return primary, indexes


def _foreign_keys(query: Query, database: str, notes: list[str]) -> dict[str, list[ForeignKey]]:
    rows = query(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, "
        "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL "
        "ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
        (database,),
    )
    grouped: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
    for table, constraint, column, ref_schema, ref_table, ref_column in rows:
        grouped.setdefault((table, constraint), []).append(
            (column, ref_schema, ref_table, ref_column)
        )
    found: dict[str, list[ForeignKey]] = {}
    for (table, constraint), parts in grouped.items():
        ref_schema, ref_table = parts[0][1], parts[0][2]
        if ref_schema != database:
            notes.append(
                f"table {table!r}: foreign key {constraint!r} points into another database "
                f"({ref_schema}.{ref_table}); not followed"
            )
            continue
        found.setdefault(table, []).append(
            ForeignKey(
                columns=tuple(p[0] for p in parts),
                ref_table=ref_table,
                ref_columns=tuple(p[3] for p in parts),
                name=constraint,
            )
        )
    return found


_JSON_VALID = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.I)


def _json_checked(query: Query, database: str) -> set[tuple[str, str]]:
    """MariaDB's JSON columns: longtext guarded by CHECK (json_valid(`col`))."""
    try:
        rows = query(
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = %s",
            (database,),
        )
    except Exception:  # servers before CHECK_CONSTRAINTS existed: no such columns to find
        return set()
    found = set()
    for table, clause in rows:
        for m in _JSON_VALID.finditer(_text(clause)):
            found.add((table, m[1].replace("``", "`")))
    return found


def _default(value: Any) -> str | None:
    # MariaDB writes "NULL" for no default and quotes string literals; MySQL gives NULL and
    # the bare text. Either way it is informational.
    if value is None:
        return None
    text = _text(value)
    return None if text == "NULL" else text


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
