"""Keyset-paging SQL shared by the source dialects: one ordered SELECT with bounds on the key.

``after < key <= upto`` on a single or composite key, either as a row-value comparison
(``(a, b) > (%s, %s)``) or, where the database cannot use an index for that, in the
expanded form ``a >= x AND (a > x OR b > y)`` whose leading term is still an index range.
Identifiers arrive quoted; values are always bound, never spliced into the SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from isthmus.errors import UsageError


def as_tuple(value: Sequence[Any] | Any) -> tuple[Any, ...]:
    """A key or key value given as a scalar is a one-column key."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def check_stream_args(
    table: str, columns: Sequence[str], key: Sequence[str], after: Any, upto: Any
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """Normalise stream() arguments and refuse ones that cannot work, naming the table."""
    cols = as_tuple(columns)
    keys = as_tuple(key)
    if not keys:
        raise UsageError(f"table {table!r}: stream needs at least one key column")
    missing = [k for k in keys if k not in cols]
    if missing:
        raise UsageError(f"table {table!r}: key column(s) {missing} are not among the columns read")
    bounds: list[tuple[Any, ...] | None] = []
    for name, bound in (("after", after), ("upto", upto)):
        if bound is None:
            bounds.append(None)
            continue
        values = as_tuple(bound)
        if len(values) != len(keys):
            raise UsageError(
                f"table {table!r}: {name}={values!r} has {len(values)} value(s) "
                f"for a key of {len(keys)} column(s) {keys}"
            )
        bounds.append(values)
    return cols, keys, bounds[0], bounds[1]


def check_since(table: str, since: Any) -> tuple[str, Any] | None:
    """``since=(column, value)``: a change cursor, ``column >= value``; refuse other shapes."""
    if since is None:
        return None
    if (
        not isinstance(since, list | tuple)
        or len(since) != 2
        or not isinstance(since[0], str)
        or since[1] is None
    ):
        raise UsageError(
            f"table {table!r}: since={since!r} must be (column, value) with a value that is not None"
        )
    return since[0], since[1]


def add_since(
    where: str, params: list[Any], column: str, value: Any, *, mark: str
) -> tuple[str, list[Any]]:
    """``where`` (from keyset_where) AND ``column >= value``; ``column`` arrives quoted."""
    term = f"{column} >= {mark}"
    return (f"{where} AND {term}" if where else term), [*params, value]


def keyset_where(
    keys: Sequence[str],
    after: Sequence[Any] | None,
    upto: Sequence[Any] | None,
    *,
    row_values: bool,
    mark: str,
) -> tuple[str, list[Any]]:
    """The WHERE clause (without the keyword, "" when unbounded) and its parameters.

    ``keys`` are quoted column expressions; ``mark`` is the driver's placeholder.
    """
    terms: list[str] = []
    params: list[Any] = []
    for bound, strict in ((after, True), (upto, False)):
        if bound is None:
            continue
        if len(keys) == 1:
            op = ">" if strict else "<="
            terms.append(f"{keys[0]} {op} {mark}")
            params.append(bound[0])
        elif row_values:
            op = ">" if strict else "<="
            marks = ", ".join([mark] * len(keys))
            terms.append(f"({', '.join(keys)}) {op} ({marks})")
            params.extend(bound)
        else:
            sql, values = _expanded(keys, bound, after=strict, mark=mark)
            terms.append(sql)
            params.extend(values)
    return " AND ".join(terms), params


def _expanded(
    keys: Sequence[str], bound: Sequence[Any], *, after: bool, mark: str
) -> tuple[str, list[Any]]:
    # after:  k1 >= v1 AND (k1 > v1 OR (k2 >= v2 AND (k2 > v2 OR k3 > v3)))
    # upto:   k1 <= v1 AND (k1 < v1 OR (k2 <= v2 AND (k2 < v2 OR k3 <= v3)))
    loose, tight = (">=", ">") if after else ("<=", "<")
    last = ">" if after else "<="
    sql = f"{keys[-1]} {last} {mark}"
    params: list[Any] = [bound[-1]]
    for col, value in zip(reversed(keys[:-1]), reversed(bound[:-1]), strict=True):
        sql = f"{col} {loose} {mark} AND ({col} {tight} {mark} OR ({sql}))"
        params = [value, value, *params]
    return f"({sql})", params


def select_ordered(table: str, columns: Sequence[str], keys: Sequence[str], where: str) -> str:
    """SELECT columns FROM table [WHERE where] ORDER BY keys; all identifiers pre-quoted."""
    sql = f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608  (quoted by the caller)
    if where:
        sql += f" WHERE {where}"
    return sql + " ORDER BY " + ", ".join(keys)


def chunked(values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def in_list_query(table: str, columns: Sequence[str], key: str, count: int, mark: str) -> str:
    marks = ", ".join([mark] * count)
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {key} IN ({marks}) ORDER BY {key}"  # noqa: S608
