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


def canonical_sql(
    value: sql.Composable, kind: CanonKind, type_name: str, *, float4: bool = False
) -> sql.Composable | None:
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
        expr = sql.SQL("CASE WHEN {v} THEN 't' WHEN NOT {v} THEN 'f' END").format(v=value)
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
    elif kind == "float8" and base in _FLOATS:
        expr = _float(value, 15)
    elif kind == "float4" and base in _FLOATS and float4:
        # exact on every value tried, but some twenty times dearer than the other forms
        # (PostgreSQL repeats the shared subexpressions): off unless asked for
        expr = _float(value, 9)
    else:
        return None
    return sql.SQL("coalesce({}, {})").format(expr, sql.Literal("\\N"))


_FLOATS = ("double precision", "float8", "real", "float4")


def _float(value: sql.Composable, digits: int) -> sql.Composable:
    """``%.{digits}g`` of a float as Python prints it (``canonical.norm_float8/4``).

    ``float8::numeric`` is the value at 15 significant digits exactly as ``%.15g`` rounds
    it; 9 digits are rounded from those 15 (a second rounding, which a tie could tell apart: every row an SQL form calls changed is
    compared again in Python before it is reported).
    """
    n15 = sql.SQL("({}::float8::numeric)").format(value)
    if digits == 15:
        n = n15
    else:
        # to an integer of `digits` digits, rounded half to even as printf rounds the exact
        # value, and back (the power of ten is an integer either way)
        k = sql.SQL("({d} - floor(log(abs({v}::float8)))::int)").format(
            d=sql.Literal(digits - 1), v=value
        )
        scaled = sql.SQL(
            "(CASE WHEN {k} >= 0 THEN {n} * power(10::numeric, {k})"
            " ELSE {n} / power(10::numeric, -{k}) END)"
        ).format(k=k, n=n15)
        even = sql.SQL(
            "(CASE WHEN abs({s} - trunc({s})) = 0.5 AND mod(trunc({s}), 2) = 0 THEN trunc({s})"
            " ELSE round({s}) END)"
        ).format(s=scaled)
        n = sql.SQL(
            "(CASE WHEN {k} >= 0 THEN {r} / power(10::numeric, {k})"
            " ELSE {r} * power(10::numeric, -{k}) END)"
        ).format(k=k, r=even)
    e = sql.SQL("floor(log(abs({})))::int").format(n)
    # by a power of ten that is an integer either way (10^-e of numeric rounds to a scale)
    mantissa = sql.SQL(
        "trim_scale(CASE WHEN {e} >= 0 THEN {n} / power(10::numeric, {e})"
        " ELSE {n} * power(10::numeric, -{e}) END)::text"
    ).format(n=n, e=e)
    exponent = sql.SQL(
        "CASE WHEN {e} < 0 THEN '-' ELSE '+' END"
        " || CASE WHEN abs({e}) < 10 THEN '0' ELSE '' END || abs({e})::text"
    ).format(e=e)
    return sql.SQL(
        "CASE WHEN {v} IS NULL THEN NULL WHEN {v} = 'NaN' THEN 'NaN'"
        " WHEN {v} = 'Infinity' THEN 'Infinity' WHEN {v} = '-Infinity' THEN '-Infinity'"
        " WHEN {v} = 0 THEN '0'"
        " WHEN {e} < -4 OR {e} >= {d} THEN {m} || 'e' || {x}"
        " ELSE trim_scale({n})::text END"
    ).format(v=value, e=e, d=sql.Literal(digits), m=mantissa, x=exponent, n=n)
