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

NULL_MARK = 30  # chr(30) stands for NULL, chr(31) separates fields: neither is in real text
SEPARATOR = 31


def mysql_form(expr: str, source_kind: str | None, target_kind: CanonKind) -> str | None:
    """``expr`` (a quoted MySQL column) in its segment form for a ``target_kind`` column."""
    if source_kind in ("time", "json", "interval", "array", "other") or source_kind is None:
        return None
    if target_kind == "boolean":
        return f"IF({expr} <> 0, 't', 'f')"
    if target_kind in ("integer", "decimal", "float8", "float4"):
        return f"CAST({expr} AS CHAR)"
    if target_kind == "text":
        return f"CONVERT({expr} USING utf8mb4)"
    if target_kind == "uuid":
        return f"LOWER(CAST({expr} AS CHAR))"
    if target_kind == "date":
        return f"DATE_FORMAT({expr}, '%Y-%m-%d')"
    if target_kind in ("timestamp", "timestamptz"):
        return f"DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"
    if target_kind == "bytes":
        return f"LOWER(HEX({expr}))"
    return None


def mysql_bucket_query(relation: str, key: str, forms: list[str], width: int) -> str:
    row = ", ".join(f"COALESCE({f}, CHAR({NULL_MARK}))" for f in forms) or "''"
    hashed = (
        f"CAST(CONV(SUBSTRING(MD5(CONCAT_WS(CHAR({SEPARATOR}), {row})), 1, 15), 16, 10)"
        " AS UNSIGNED)"
    )
    return (
        f"SELECT {key} DIV {int(width)}, COUNT(*), SUM({hashed}) FROM {relation}"  # noqa: S608
        f" WHERE {key} IS NOT NULL GROUP BY 1"
    )


def pg_form(expr: str, source_kind: str | None, target_kind: CanonKind) -> str | None:
    """``expr`` (a quoted PostgreSQL column of kind ``source_kind``; None for a target
    column) in its segment form for a ``target_kind`` target column."""
    if source_kind in ("time", "json", "interval", "array", "other"):
        return None
    if target_kind == "boolean":
        if source_kind in (None, "boolean"):
            return f"CASE WHEN {expr} THEN 't' ELSE 'f' END"
        return f"CASE WHEN {expr} <> 0 THEN 't' ELSE 'f' END"
    if target_kind in ("integer", "decimal", "float8", "float4", "text", "date"):
        return f"{expr}::text"
    if target_kind == "uuid":
        return f"lower({expr}::text)"
    if target_kind in ("timestamp", "timestamptz"):
        return f"to_char({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if target_kind == "bytes":
        return f"encode({expr}, 'hex')"
    return None


def pg_row_hash(forms: list[str]) -> str:
    row = ", ".join(f"coalesce({f}, chr({NULL_MARK}))" for f in forms) or "''"
    return f"('x' || substr(md5(concat_ws(chr({SEPARATOR}), {row})), 1, 15))::bit(60)::bigint"


def pg_bucket_query(relation: str, key: str, forms: list[str], width: int) -> str:
    return (
        f"SELECT {key} / {int(width)}, count(*), sum({pg_row_hash(forms)}) FROM {relation}"  # noqa: S608
        f" WHERE {key} IS NOT NULL GROUP BY 1"
    )
