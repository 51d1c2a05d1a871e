"""What a source column becomes in the PostgreSQL target: one function over ``Column``.

The reflection of each dialect (``dialects/typemap.py``) already sorted every column
into a dialect-neutral kind with its size; this module picks the PostgreSQL type for
that kind, with the few cases where the source dialect changes the answer:

- MySQL/MariaDB: ``float`` is single precision (``real``); ``bigint unsigned`` and
  ``bit(64)`` do not fit ``bigint`` (``numeric(20,0)``); zero dates are read as NULL,
  so a NOT NULL ``date``/``datetime``/``timestamp`` becomes nullable.
- PostgreSQL: built-in types with no neutral kind (``inet``, ``tsvector``, ``money``,
  ``point``…) keep their own name; ``char(n)`` stays ``char(n)``; user-defined types
  (enums are handled, other types are not copied) become ``text``.
- SQLite: declared sizes are not enforced (a ``VARCHAR(10)`` may hold a novel), so
  text and decimals are unbounded in the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isthmus.dialects.base import Column


@dataclass(frozen=True)
class TargetType:
    sql: str  # the PostgreSQL type, e.g. "numeric(12,2)", "text[]"
    allowed: tuple[str, ...] | None = None  # enum members: CHECK (col IN (...))
    nullable: bool | None = None  # None: as in the source
    note: str | None = None


# PostgreSQL built-in types that have no neutral kind but are worth keeping as they are
# (type names as format_type() writes them, without modifiers).
PG_BUILTIN_OTHER = frozenset(
    {
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "money",
        "xml",
        "point",
        "line",
        "lseg",
        "box",
        "path",
        "polygon",
        "circle",
        "tsvector",
        "tsquery",
        "bit",
        "bit varying",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "int4multirange",
        "int8multirange",
        "nummultirange",
        "tsmultirange",
        "tstzmultirange",
        "datemultirange",
        "pg_lsn",
        "oid",
        '"char"',
    }
)

# Element types of a PostgreSQL array that exist in every database.
_PG_BUILTIN_SCALARS = PG_BUILTIN_OTHER | {
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "boolean",
    "text",
    "character varying",
    "character",
    "bpchar",
    "name",
    "bytea",
    "date",
    "time without time zone",
    "time with time zone",
    "timestamp without time zone",
    "timestamp with time zone",
    "interval",
    "uuid",
    "json",
    "jsonb",
}

_MODIFIERS = re.compile(r"\s*\([^)]*\)")
_FIRST_NUMBER = re.compile(r"\((\d+)")


def _base_name(type_name: str) -> str:
    """``timestamp(3) with time zone`` -> ``timestamp with time zone``; ``bit(8)[]`` -> ``bit``."""
    return _MODIFIERS.sub("", type_name).replace("[]", "").strip()


def _with_precision(name: str, precision: int | None) -> str:
    return name if precision is None else f"{name}({precision})"


def _mysql_unsigned_width(type_name: str) -> int:
    """Bits of an unsigned MySQL integer type as declared (bigint: 64, bit(n): n)."""
    if type_name.startswith(("bigint", "serial")):
        return 64
    if type_name.startswith("bit"):
        m = _FIRST_NUMBER.search(type_name)
        return int(m[1]) if m else 1
    return 0


def target_type(col: Column, dialect: str) -> TargetType:
    """The PostgreSQL type of ``col``, read from a ``dialect`` source
    ("postgresql", "mysql" or "sqlite")."""
    kind = col.kind
    mysql = dialect == "mysql"
    pg = dialect == "postgresql"
    sqlite = dialect == "sqlite"
    if kind == "integer":
        if col.unsigned and mysql and _mysql_unsigned_width(col.type_name) >= 64:
            return TargetType("numeric(20,0)", note=f"{col.type_name}: wider than bigint")
        bits = col.bits or 64
        return TargetType("smallint" if bits <= 16 else "integer" if bits <= 32 else "bigint")
    if kind == "decimal":
        if col.precision is None or sqlite:
            return TargetType("numeric")
        if col.scale is None:
            return TargetType(f"numeric({col.precision})")
        return TargetType(f"numeric({col.precision},{col.scale})")
    if kind == "float":
        single = (mysql and col.type_name.startswith("float")) or (pg and col.type_name == "real")
        return TargetType("real" if single else "double precision")
    if kind == "boolean":
        return TargetType("boolean")
    if kind == "text":
        return _text(col, pg, sqlite)
    if kind == "bytes":
        return TargetType("bytea")
    if kind in ("date", "timestamp", "timestamptz"):
        name = {"date": "date", "timestamp": "timestamp", "timestamptz": "timestamptz"}[kind]
        sql = name if kind == "date" else _with_precision(name, col.precision)
        if mysql and not col.nullable:
            return TargetType(sql, nullable=True, note="nullable: zero dates are read as NULL")
        return TargetType(sql)
    if kind == "time":
        if pg and col.type_name.endswith("with time zone"):
            return TargetType(_with_precision("timetz", col.precision))
        return TargetType(_with_precision("time", col.precision))
    if kind == "interval":
        return TargetType(
            col.type_name if pg and col.type_name.startswith("interval") else "interval"
        )
    if kind == "uuid":
        return TargetType("uuid")
    if kind == "json":
        return TargetType("jsonb")
    if kind == "enum":
        if col.enum_values:
            return TargetType("text", allowed=col.enum_values)
        return TargetType("text", note=f"{col.type_name}: enum without known members, text")
    if kind == "set":
        return TargetType("text", note=f"{col.type_name}: text (comma-separated members)")
    if kind == "array":
        element = col.element_type or ""
        if pg and _base_name(element) in _PG_BUILTIN_SCALARS:
            return TargetType(f"{element}[]")
        return TargetType("text[]", note=f"{col.type_name}: element type not built in, text[]")
    if pg and _base_name(col.type_name) in PG_BUILTIN_OTHER:
        return TargetType(col.type_name)
    shown = col.type_name or "no declared type"
    return TargetType("text", note=f"{shown}: carried as text")


def _text(col: Column, pg: bool, sqlite: bool) -> TargetType:
    if sqlite:  # SQLite does not enforce declared lengths
        return TargetType("text")
    if pg and (col.type_name.startswith("character(") or col.type_name in ("bpchar", "character")):
        return TargetType(f"char({col.length})" if col.length else "bpchar")
    if col.length is not None:
        return TargetType(f"varchar({col.length})")
    return TargetType("text")
