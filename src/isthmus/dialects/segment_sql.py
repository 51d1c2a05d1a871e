"""Segment checksums inside the database: per key bucket, the row count and the sum of a
hash of each row, computed where the rows are, so that only buckets that differ are read.

Each dialect prints a column in a *segment form*: a text that the other database prints the
same way for the same value (``t``/``f`` for booleans, ``YYYY-MM-DD HH:MM:SS.ffffff`` for
timestamps, lower-case hex for bytes, the legacy parent ID for a reference). These forms are
a filter, not the canonical form: where two databases print one value differently (MySQL
``1e20`` against PostgreSQL ``1e+20``), the bucket merely looks changed and is compared row
by row with canonical checksums; they never make two different values print the same.
A column without a form (time, json, …) leaves the entity to the full comparison.
"""

from __future__ import annotations

from isthmus.canonical import CanonKind
from isthmus.dialects.base import Column

NULL_MARK = 30  # chr(30) stands for NULL, chr(31) separates fields: neither is in real text
SEPARATOR = 31


def mysql_form(
    expr: str, column: Column, target_kind: CanonKind, charset: str | None
) -> str | None:
    """``expr`` (the quoted MySQL ``column``) in its segment form for a ``target_kind`` target
    column. Conversions are left to CONCAT_WS where it prints what PostgreSQL does (numbers,
    ``datetime(6)``, UTF-8 text): an explicit CAST per value costs a third of the query."""
    kind = column.kind
    if kind in ("time", "json", "interval", "array", "other", "bytes") and target_kind != "bytes":
        return None
    if target_kind == "boolean":
        form = f"CASE WHEN {expr} <> 0 THEN 't' WHEN {expr} = 0 THEN 'f' END"  # NULL stays
    elif target_kind in ("integer", "decimal", "float8", "float4", "date"):
        form = expr if kind in ("integer", "decimal", "float", "date") else f"CAST({expr} AS CHAR)"
    elif target_kind == "text":
        utf8 = charset is None or charset.startswith("utf8") or charset in ("ascii", "binary")
        form = expr if utf8 else f"CONVERT({expr} USING utf8mb4)"
    elif target_kind == "uuid":
        form = f"LOWER(CAST({expr} AS CHAR))"
    elif target_kind in ("timestamp", "timestamptz"):
        padded = kind in ("timestamp", "timestamptz") and column.precision == 6
        form = expr if padded else f"DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"
    elif target_kind == "bytes":
        form = f"LOWER(HEX({expr}))"
    else:
        return None
    return f"COALESCE({form}, CHAR({NULL_MARK}))" if column.nullable else form


def mysql_bucket_query(relation: str, key: str, forms: list[str], width: int) -> str:
    """(bucket, rows, sum of row hashes) per bucket, in bucket order (a stream to merge)."""
    row = ", ".join(forms) or "''"  # each form carries its own NULL mark
    hashed = (
        f"CAST(CONV(SUBSTRING(MD5(CONCAT_WS(CHAR({SEPARATOR}), {row})), 1, 15), 16, 10)"
        " AS UNSIGNED)"
    )
    return (
        f"SELECT {key} DIV {int(width)}, COUNT(*), SUM({hashed}) FROM {relation}"  # noqa: S608
        f" WHERE {key} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )


def pg_form(
    expr: str, source_kind: str | None, target_kind: CanonKind, flavor: str | None = "postgresql"
) -> str | None:
    """``expr`` (a quoted PostgreSQL column of kind ``source_kind``; None for a target
    column) in its segment form for a ``target_kind`` target column, agreeing with the
    forms of a ``flavor`` source (``mysql`` pads fractional seconds; two PostgreSQL
    databases print timestamps alike, and ``::text`` costs less than ``to_char``)."""
    if source_kind in ("time", "json", "interval", "array", "other"):
        return None
    if target_kind == "boolean":
        if source_kind in (None, "boolean"):
            return f"CASE WHEN {expr} THEN 't' WHEN NOT {expr} THEN 'f' END"
        return f"CASE WHEN {expr} <> 0 THEN 't' WHEN {expr} = 0 THEN 'f' END"
    if target_kind in ("integer", "decimal", "float8", "float4", "text", "date"):
        return f"{expr}::text"
    if target_kind == "uuid":
        return f"lower({expr}::text)"
    if target_kind in ("timestamp", "timestamptz"):
        if flavor == "postgresql":
            return f"{expr}::text"
        return f"to_char({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if target_kind == "bytes":
        return f"encode({expr}, 'hex')"
    return None


def pg_row_hash(forms: list[str], flavor: str | None = "postgresql") -> str:
    """The hash of a row's forms that the ``flavor`` source computes too: MD5 (MySQL has
    it), or, between two PostgreSQL databases, the much cheaper ``hashtextextended``."""
    row = ", ".join(f"coalesce({f}, chr({NULL_MARK}))" for f in forms) or "''"
    joined = f"concat_ws(chr({SEPARATOR}), {row})"
    if flavor == "postgresql":
        return f"hashtextextended({joined}, 0)"
    return f"('x' || substr(md5({joined}), 1, 15))::bit(60)::bigint"


def pg_bucket_query(relation: str, key: str, forms: list[str], width: int) -> str:
    """(bucket, rows, sum of row hashes) per bucket, in bucket order (a stream to merge)."""
    return (
        f"SELECT {key} / {int(width)}, count(*), sum({pg_row_hash(forms)}) FROM {relation}"  # noqa: S608
        f" WHERE {key} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )
