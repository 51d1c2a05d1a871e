"""Declared column types of each source database -> the dialect-neutral ``ColumnKind``.

Only the category and its size live here; what a kind becomes in the target is the
schema module's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isthmus.dialects.base import ColumnKind


@dataclass(frozen=True)
class TypeInfo:
    kind: ColumnKind
    bits: int | None = None
    unsigned: bool = False
    length: int | None = None
    precision: int | None = None
    scale: int | None = None


_ARGS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def _args(type_name: str) -> tuple[int | None, int | None]:
    m = _ARGS.search(type_name)
    if not m:
        return None, None
    return int(m[1]), int(m[2]) if m[2] is not None else None


# --- SQLite -------------------------------------------------------------------------------
# SQLite stores whatever it is given; the declared type is a hint. We honour the common
# names people write (they usually came from another database) and fall back to SQLite's
# own affinity rules (https://sqlite.org/datatype3.html, section 3.1).


def sqlite_type(declared: str) -> TypeInfo:
    name = declared.strip().lower()
    base = name.split("(", 1)[0].strip()
    first, second = _args(name)
    if not name:
        return TypeInfo("other")
    if base in ("boolean", "bool") or name.replace(" ", "") == "tinyint(1)":
        return TypeInfo("boolean")
    if base in ("date",):
        return TypeInfo("date")
    if base in ("datetime", "timestamp", "timestamp without time zone"):
        return TypeInfo("timestamp", precision=first)
    if base in ("timestamptz", "timestamp with time zone", "datetimeoffset"):
        return TypeInfo("timestamptz", precision=first)
    if base in ("time", "time without time zone"):
        return TypeInfo("time", precision=first)
    if base in ("uuid", "guid", "uniqueidentifier"):
        return TypeInfo("uuid")
    if base in ("json", "jsonb"):
        return TypeInfo("json")
    if base in ("decimal", "numeric", "money", "number"):
        return TypeInfo("decimal", precision=first, scale=second if first is not None else None)
    if "int" in base:
        return TypeInfo("integer", bits=64)
    if any(word in base for word in ("char", "clob", "text")):
        return TypeInfo("text", length=first)
    if "blob" in base or "binary" in base or base == "bytea":
        return TypeInfo("bytes", length=first)
    if any(word in base for word in ("real", "floa", "doub")):
        return TypeInfo("float")
    return TypeInfo("other")


# --- MySQL / MariaDB ----------------------------------------------------------------------

_MYSQL_INT_BITS = {
    "tinyint": 8,
    "smallint": 16,
    "mediumint": 24,
    "int": 32,
    "integer": 32,
    "bigint": 64,
}


def _widened(bits: int, unsigned: bool) -> int:
    """The smallest signed 16/32/64-bit integer that holds every value of the MySQL type."""
    needed = bits + 1 if unsigned else bits
    for size in (16, 32, 64):
        if needed <= size:
            return size
    return 64  # bigint unsigned: values above 2**63-1 do not fit a signed 64-bit integer


def mysql_type(
    data_type: str,
    column_type: str,
    *,
    char_length: int | None,
    precision: int | None,
    scale: int | None,
    datetime_precision: int | None,
) -> TypeInfo:
    """From information_schema.COLUMNS: DATA_TYPE (``int``) and COLUMN_TYPE (``int(10) unsigned``)."""
    data_type = data_type.lower()
    column_type = column_type.lower()
    unsigned = "unsigned" in column_type
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return TypeInfo("boolean")
    if data_type in _MYSQL_INT_BITS:
        return TypeInfo(
            "integer", bits=_widened(_MYSQL_INT_BITS[data_type], unsigned), unsigned=unsigned
        )
    if data_type == "year":
        return TypeInfo("integer", bits=16)
    if data_type == "bit":
        width, _ = _args(column_type)
        if width in (None, 1):
            return TypeInfo("boolean")
        return TypeInfo("integer", bits=_widened(width or 64, True), unsigned=True)
    if data_type in ("decimal", "numeric", "fixed", "dec"):
        return TypeInfo("decimal", precision=precision, scale=scale, unsigned=unsigned)
    if data_type in ("float", "double", "real", "double precision"):
        return TypeInfo("float", unsigned=unsigned)
    if data_type in ("char", "varchar"):
        return TypeInfo("text", length=char_length)
    if data_type.endswith("text"):
        return TypeInfo("text")
    if data_type in ("binary", "varbinary"):
        return TypeInfo("bytes", length=char_length)
    if data_type.endswith("blob"):
        return TypeInfo("bytes")
    if data_type == "date":
        return TypeInfo("date")
    if data_type == "datetime":
        return TypeInfo("timestamp", precision=datetime_precision)
    if data_type == "timestamp":  # stored in UTC, shown in the session's time zone
        return TypeInfo("timestamptz", precision=datetime_precision)
    if data_type == "time":
        return TypeInfo("time", precision=datetime_precision)
    if data_type == "enum":
        return TypeInfo("enum")
    if data_type == "set":
        return TypeInfo("set")
    if data_type == "json":
        return TypeInfo("json")
    if data_type == "uuid":  # MariaDB 10.7+
        return TypeInfo("uuid")
    return TypeInfo("other")


_QUOTED = re.compile(r"'((?:[^'\\]|''|\\.)*)'")


def mysql_enum_values(column_type: str) -> tuple[str, ...]:
    """The members of ``enum('a','b''c')`` / ``set(...)`` as information_schema writes them."""
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(m.replace("''", "'").replace("\\\\", "\\") for m in _QUOTED.findall(inner))


# --- PostgreSQL ---------------------------------------------------------------------------

_PG_KINDS: dict[str, TypeInfo] = {
    "int2": TypeInfo("integer", bits=16),
    "int4": TypeInfo("integer", bits=32),
    "int8": TypeInfo("integer", bits=64),
    "numeric": TypeInfo("decimal"),
    "float4": TypeInfo("float"),
    "float8": TypeInfo("float"),
    "bool": TypeInfo("boolean"),
    "text": TypeInfo("text"),
    "varchar": TypeInfo("text"),
    "bpchar": TypeInfo("text"),
    "name": TypeInfo("text"),
    "citext": TypeInfo("text"),
    "bytea": TypeInfo("bytes"),
    "date": TypeInfo("date"),
    "time": TypeInfo("time"),
    "timetz": TypeInfo("time"),
    "timestamp": TypeInfo("timestamp"),
    "timestamptz": TypeInfo("timestamptz"),
    "interval": TypeInfo("interval"),
    "uuid": TypeInfo("uuid"),
    "json": TypeInfo("json"),
    "jsonb": TypeInfo("json"),
}


def pg_type(typname: str, typtype: str, typmod: int) -> TypeInfo:
    """From pg_type.typname / typtype and the column's atttypmod (domains already resolved)."""
    if typtype == "e":
        return TypeInfo("enum")
    info = _PG_KINDS.get(typname, TypeInfo("other"))
    if typmod < 0:
        return info
    if typname == "numeric":
        return TypeInfo(
            "decimal", precision=((typmod - 4) >> 16) & 0xFFFF, scale=(typmod - 4) & 0xFFFF
        )
    if typname in ("varchar", "bpchar"):
        return TypeInfo("text", length=typmod - 4)
    if typname in ("time", "timetz", "timestamp", "timestamptz"):
        return TypeInfo(info.kind, precision=typmod)
    return info
