"""The canonical form of a target column computed by PostgreSQL itself, where SQL can say it.

``canonical_sql`` gives an expression whose text is byte for byte what
:mod:`isthmus.canonical` makes of the column's COPY field (escaped as COPY escapes it,
``\\N`` for NULL), so that a row's checksum is ``md5`` of the tab-joined expressions and
the rows never leave the server. Kinds whose canonical text SQL cannot reproduce exactly
(floats at 15 or 9 significant digits in ``%g`` form, blank-padded ``character(n)``) give
None: their rows are read and put in canonical form in Python instead.
"""

from __future__ import annotations

from psycopg import sql

from isthmus.canonical import CanonKind

# COPY TEXT escapes, in the order copytext.escape applies them (backslash first).
_ESCAPES = (
    ("\\", "\\\\"),
    ("\t", "\\t"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\b", "\\b"),
    ("\f", "\\f"),
    ("\v", "\\v"),
)


def escaped(text: sql.Composable) -> sql.Composable:
    """``text`` escaped as a COPY TEXT field."""
    out = text
    for raw, esc in _ESCAPES:
        out = sql.SQL("replace({}, {}, {})").format(out, sql.Literal(raw), sql.Literal(esc))
    return out


def canonical_sql(value: sql.Composable, kind: CanonKind, type_name: str) -> sql.Composable | None:
    """The canonical COPY field of ``value`` (a column of PostgreSQL type ``type_name`` read
    as ``kind``), never NULL; None when only Python can say it exactly."""
    base = type_name.split("(", maxsplit=1)[0].strip().lower()
    expr: sql.Composable
    if base in ("character", "bpchar", "char") or base.startswith("character("):
        return None  # COPY prints the blank padding, a cast to text drops it
    if kind == "integer":
        expr = sql.SQL("{}::text").format(value)
    elif kind == "decimal":
        if base not in ("numeric", "decimal"):
            return None
        expr = sql.SQL("trim_scale({})::text").format(value)
    elif kind == "boolean":
        if base not in ("boolean", "bool"):
            return None
        expr = sql.SQL("CASE WHEN {} THEN 't' ELSE 'f' END").format(value)
    elif kind in ("text", "uuid"):
        if kind == "uuid" and base != "uuid":
            return None
        expr = escaped(sql.SQL("{}::text").format(value))
    elif kind == "other":
        expr = escaped(sql.SQL("{}::text").format(value))
    elif kind == "bytes":
        expr = sql.SQL("'\\\\x' || encode({}, 'hex')").format(value)
    elif kind == "date":
        expr = sql.SQL("{}::text").format(value)
    elif kind in ("timestamp", "timestamptz"):
        # the session's TimeZone is UTC, so a timestamptz prints in UTC
        expr = sql.SQL(
            "CASE WHEN isfinite({v}) THEN to_char({v}, 'YYYY-MM-DD HH24:MI:SS.US')"
            " ELSE {v}::text END"
        ).format(v=value)
    elif kind == "time":
        if base not in ("time", "time without time zone"):
            return None
        expr = sql.SQL(
            "CASE WHEN position('.' in {v}::text) = 0 THEN {v}::text || '.000000'"
            " ELSE rpad({v}::text, 15, '0') END"
        ).format(v=value)
    elif kind == "json":
        expr = escaped(sql.SQL("{}::jsonb::text").format(value))
    else:
        return None  # float8, float4
    return sql.SQL("coalesce({}, {})").format(expr, sql.Literal("\\N"))
