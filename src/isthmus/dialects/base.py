"""What every database dialect provides, declared as data and as one abstract class.

The engine never asks which database it talks to; it reads ``Capabilities`` and
calls the methods below. Each dialect module translates its driver's errors into
``TransientDatabaseError`` (retried with backoff) or ``TerminalDatabaseError``
(reported) at this boundary.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from isthmus.errors import TerminalDatabaseError, UsageError
from isthmus.urls import DatabaseURL

# The dialect-neutral category of a column, used by type mapping and canonical form.
ColumnKind = Literal[
    "integer",  # any whole number that fits in 64 bits (size in Column.bits)
    "decimal",  # exact numeric with precision/scale
    "float",  # binary floating point
    "boolean",
    "text",  # character data of any length
    "bytes",  # binary data
    "date",
    "time",
    "timestamp",  # without time zone
    "timestamptz",  # with time zone
    "interval",
    "uuid",
    "json",
    "enum",  # closed set of strings (Column.enum_values)
    "set",  # MySQL SET: a subset of Column.enum_values
    "array",  # PostgreSQL array (Column.element_type holds the element's type)
    "other",  # anything else, carried as text
]

Row = tuple[Any, ...]
# A write-back's compare-and-set: called inside the write's transaction once no other writer
# can change the rows of the keys it is given (locked, or the whole database is), it returns
# the keys that may still be written; the rows of the others are left as they are.
WriteGuard = Callable[[list[int]], set[int]]


@dataclass(frozen=True)
class Column:
    name: str
    type_name: (
        str  # the type as the source declares it, lowercased, e.g. "tinyint(1)", "varchar(40)"
    )
    kind: ColumnKind
    nullable: bool = True
    bits: int | None = None  # integers: 16, 32, 64 (unsigned 32 -> 64 when widened)
    unsigned: bool = False
    length: int | None = None  # text/bytes declared length
    precision: int | None = None  # decimal precision, fractional-second precision for time kinds
    scale: int | None = None
    enum_values: tuple[str, ...] = ()
    element_type: str | None = None
    default: str | None = None
    autoincrement: bool = False


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()
    schema: str | None = None
    row_estimate: int | None = None

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def integer_key(self) -> str | None:
        """The single integer primary-key column, if the table has exactly one."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col is not None and col.kind == "integer" else None


@dataclass(frozen=True)
class SchemaInfo:
    """Everything reflection found: tables by name, and views (reported, never copied)."""

    tables: dict[str, Table] = field(default_factory=dict)
    views: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # things a user should know (tables skipped and why)


@dataclass(frozen=True)
class Capabilities:
    """What a dialect can do; the engine branches on these, never on the dialect's class."""

    name: str
    server_side_cursors: bool
    row_value_comparison: bool  # WHERE (a, b) > (x, y)
    in_database_checksums: bool  # can hash and aggregate rows in SQL (segment checksums)
    transactional_ddl: bool
    read_only_transactions: bool
    returning: bool
    max_bind_parameters: int
    identifier_quote: str
    can_be_target: bool = False
    binary_copy: bool = False
    # Values come back as the column's declared type says (SQLite: whatever was stored), so
    # their text is already canonical for most kinds and needs no normalising on the hot path.
    typed_values: bool = True
    # Temporal text always carries the column's declared fractional digits (MySQL prints
    # datetime(6) with six; PostgreSQL drops trailing zeros).
    pads_fractional_seconds: bool = False
    # The operator dividing two integers into an integer truncated toward zero.
    integer_division: str = "/"
    # Whose segment forms and row hash the target must mirror (dialects/segment_sql.py);
    # None: no segment checksums.
    segment_flavor: str | None = None
    # Rows can be written back (upsert_rows, delete_keys, insert_with_new_keys): needed for
    # target_wins resolution and bidirectional sync.
    writable_source: bool = False
    # Boolean columns take True/False when written (else 1/0: MySQL tinyint(1), SQLite).
    native_booleans: bool = True
    # timestamptz columns take aware datetimes when written (else naive ones in UTC, the zone
    # of the writing session).
    aware_datetimes: bool = True


class SourceDialect(abc.ABC):
    """A database isthmus reads from (and, for bidirectional sync, writes back to)."""

    capabilities: Capabilities

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    @abc.abstractmethod
    def reflect(self) -> SchemaInfo:
        """Tables, columns, keys, foreign keys and views of the source."""

    @abc.abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = (), doing: str = "querying") -> list[Row]:
        """Run one statement and fetch all its rows, driver errors translated."""

    def relation(self, table: str) -> str:
        """How ``table`` is named in a FROM clause (quoted; schema-qualified where needed)."""
        return self.quote(table)

    def count(self, table: str) -> int:
        """Exact number of rows in ``table``."""
        sql = f"SELECT count(*) FROM {self.relation(table)}"  # noqa: S608
        rows = self._query(sql, doing=f"counting {table!r}")
        return int(rows[0][0])

    def key_range(
        self, table: str, key: str, *, where: tuple[str, int, int] | None = None
    ) -> tuple[int | None, int | None]:
        """(min, max) of an integer key column; (None, None) for an empty table. ``where=
        (column, lo, hi)`` looks only at the rows whose integer ``column`` is in [lo, hi]."""
        k = self.quote(key)
        sql = f"SELECT min({k}), max({k}) FROM {self.relation(table)}"  # noqa: S608
        if where is not None:
            sql += f" WHERE {self.quote(where[0])} BETWEEN {int(where[1])} AND {int(where[2])}"
        rows = self._query(sql, doing=f"reading the range of {table!r}.{key!r}")
        return rows[0][0], rows[0][1]

    def key_tiles(self, table: str, key: str, tiles: int) -> list[tuple[Any, Any, int]]:
        """(first key, last key, rows) of ``tiles`` runs of about equal row count, in key
        order: ``NTILE`` inside the database, one pass over the key. A database without
        window functions raises (the caller splits ``key_range`` by value instead)."""
        k = self.quote(key)
        sql = (
            f"SELECT min({k}), max({k}), count(*) FROM (SELECT {k}, NTILE({int(tiles)})"  # noqa: S608
            f" OVER (ORDER BY {k}) AS tile FROM {self.relation(table)} WHERE {k} IS NOT NULL)"
            " AS tiled GROUP BY tile ORDER BY tile"
        )
        rows = self._query(sql, doing=f"splitting {table!r} into {tiles} runs of {key!r}")
        return [(r[0], r[1], int(r[2])) for r in rows]

    def count_keys(
        self, table: str, key: str, ranges: Sequence[tuple[int, int]], *, inside: bool = True
    ) -> int:
        """Rows of ``table`` whose ``key`` is in one of the inclusive ``ranges`` (or, with
        ``inside=False``, in none of them: NULL and non-integer keys included)."""
        k = self.quote(key)
        within = " OR ".join(f"{k} BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in ranges)
        if inside:
            where = f"({within})" if within else "1 = 0"
        else:
            where = f"{k} IS NULL OR NOT ({within})" if within else "1 = 1"
        sql = f"SELECT count(*) FROM {self.relation(table)} WHERE {where}"  # noqa: S608
        return int(self._query(sql, doing=f"counting keys of {table!r}")[0][0])

    @abc.abstractmethod
    def stream(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        after: Sequence[Any] | None = None,
        upto: Sequence[Any] | None = None,
        batch_size: int = 10_000,
    ) -> Iterator[list[Row]]:
        """Rows of ``table`` ordered by ``key``, ``after`` < key <= ``upto``, in lists of
        ``batch_size``, read through a server-side cursor so memory stays flat.
        ``columns`` must include the key columns.
        """

    @abc.abstractmethod
    def stream_text(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        after: Sequence[Any] | None = None,
        upto: Sequence[Any] | None = None,
        batch_size: int = 10_000,
        since: tuple[str, Any] | None = None,
    ) -> Iterator[list[list[bytes]]]:
        """Like stream(), but each row is a list of PostgreSQL COPY text-format fields (bytes):
        the value's text form with backslash, tab, newline and carriage return escaped as COPY
        TEXT format does (\\\\, \\t, \\n, \\r), and NULL as the two bytes b'\\\\N'
        (see isthmus.copytext). ``since=(column, value)`` adds ``column >= value`` to the
        WHERE clause (an updated_at cursor). Timestamps are in UTC: load the fields on a
        session with TimeZone UTC.
        """

    def stream_columns(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        after: Sequence[Any] | None = None,
        upto: Sequence[Any] | None = None,
        batch_size: int = 10_000,
        since: tuple[str, Any] | None = None,
    ) -> Iterator[list[Sequence[bytes]]]:
        """What ``stream_text`` reads, a batch at a time as columns (one sequence of fields
        per column, all of the batch's length): the migration works column by column, and a
        dialect that gets its rows as columns anyway saves building and transposing rows."""
        for rows in self.stream_text(
            table, columns, key, after=after, upto=upto, batch_size=batch_size, since=since
        ):
            yield list(zip(*rows, strict=True))

    def max_value(self, table: str, column: str) -> Any:
        """The largest value of ``column`` (a change cursor's mark), None for an empty table."""
        sql = f"SELECT max({self.quote(column)}) FROM {self.relation(table)}"  # noqa: S608
        return self._query(sql, doing=f"reading the newest {table!r}.{column!r}")[0][0]

    def key_buckets(self, table: str, key: str, width: int) -> dict[int, tuple[int, int]]:
        """(row count, sum of keys) of each bucket of ``width`` keys (key / width truncated
        toward zero), counted inside the database: a key-only pass that sends back a few
        numbers per bucket, not the keys."""
        k = self.quote(key)
        div = self.capabilities.integer_division
        sql = (
            f"SELECT {k} {div} {int(width)}, count(*), sum({k}) FROM {self.relation(table)}"  # noqa: S608
            f" WHERE {k} IS NOT NULL GROUP BY 1"
        )
        rows = self._query(sql, doing=f"counting the keys of {table!r}")
        return {int(b): (int(n), int(total)) for b, n, total in rows}

    def orphans(
        self, table: str, key: Sequence[str], column: str, parent: str, parent_key: str
    ) -> list[Row]:
        """(key values…, ``column``) of the rows of ``table`` whose ``column`` is set but
        names no row of ``parent`` (``parent_key``): references already broken in the source."""
        c = self.quote(column)
        keys = ", ".join(f"c.{self.quote(k)}" for k in key)
        sql = (
            f"SELECT {keys}, c.{c} FROM {self.relation(table)} AS c WHERE c.{c} IS NOT NULL"  # noqa: S608
            f" AND NOT EXISTS (SELECT 1 FROM {self.relation(parent)} AS p"
            f" WHERE p.{self.quote(parent_key)} = c.{c})"
        )
        return self._query(sql, doing=f"looking for orphans in {table!r}.{column!r}")

    def segment_form(self, table: str, column: Column, target_kind: Any) -> str | None:
        """The column's segment form in this database's SQL (see dialects/segment_sql.py),
        None when this dialect cannot give one (segment checksums are then not used)."""
        return None

    def segment_sums(
        self, table: str, key: str, forms: Sequence[str], width: int
    ) -> Iterator[tuple[int, int, int]]:
        """(bucket, rows, sum of row hashes) of each bucket of ``width`` keys, computed in the
        database and streamed in bucket order (nothing of the size of the table held here)."""
        raise NotImplementedError(f"{self.capabilities.name}: no segment checksums")

    def keys_in_ranges(self, table: str, key: str, ranges: Sequence[tuple[int, int]]) -> list[int]:
        """The keys of ``table`` within the inclusive ``ranges``, ascending."""
        k = self.quote(key)
        out: list[int] = []
        for start in range(0, len(ranges), 200):
            part = ranges[start : start + 200]
            where = " OR ".join(f"({k} BETWEEN {int(lo)} AND {int(hi)})" for lo, hi in part)
            sql = f"SELECT {k} FROM {self.relation(table)} WHERE {where}"  # noqa: S608
            out.extend(int(r[0]) for r in self._query(sql, doing=f"reading keys of {table!r}"))
        return sorted(out)

    @abc.abstractmethod
    def fetch_keys(
        self, table: str, columns: Sequence[str], key: str, ids: Sequence[int]
    ) -> list[Row]:
        """Rows whose integer ``key`` is in ``ids`` (bounded by max_bind_parameters per query)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- writing back (target_wins, bidirectional sync) ---------------------------------------
    # Each call is one transaction on a writable connection of its own (a source opened for
    # reading stays read-only for reading), batched: never a round trip per row.

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: str,
        rows: Sequence[Sequence[Any]],
        *,
        guard: WriteGuard | None = None,
    ) -> int:
        """Write ``rows`` (values for ``columns``, which include the integer ``key``) into
        ``table``: rows whose key exists are updated, the others inserted with their key
        (with ``guard``: only the rows whose key it keeps). Returns the number written."""
        raise self._not_writable(table)

    def delete_keys(
        self, table: str, key: str, ids: Sequence[int], *, guard: WriteGuard | None = None
    ) -> int:
        """Delete the rows of ``table`` whose integer ``key`` is in ``ids`` (with ``guard``:
        only those it keeps); how many went."""
        raise self._not_writable(table)

    def insert_with_new_keys(
        self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Insert ``rows`` (values for ``columns``, without ``key``) into ``table``, the
        source's own key generator assigning ``key``; returns the new keys in row order
        (ascending)."""
        raise self._not_writable(table)

    def _not_writable(self, table: str) -> TerminalDatabaseError:
        return TerminalDatabaseError(
            f"{self.capabilities.name}: cannot write to table {table!r}: "
            "this source does not support writing back"
        )

    def take_warnings(self) -> list[str]:
        """Things read since the last call that a user should hear about (e.g. MySQL zero
        dates read as NULL), one line each; calling it clears them."""
        return []

    def quote(self, identifier: str) -> str:
        q = self.capabilities.identifier_quote
        return q + identifier.replace(q, q + q) + q

    def __enter__(self) -> SourceDialect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_key_position(
    table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
) -> int:
    """Where ``key`` is in ``columns`` of an upsert, after checking the rows: each as wide as
    ``columns``, each with an integer key, no key twice. UsageError naming the table otherwise."""
    if key not in columns:
        raise UsageError(f"writing to table {table!r}: the columns do not include the key {key!r}")
    if len(set(columns)) != len(columns):
        raise UsageError(f"writing to table {table!r}: a column is named twice in {list(columns)}")
    at = list(columns).index(key)
    seen: set[int] = set()
    for row in rows:
        check_row_width(table, columns, row)
        value = row[at]
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(
                f"writing to table {table!r}: key {key!r} = {value!r} is not an integer"
            )
        if value in seen:
            raise UsageError(f"writing to table {table!r}: key {key!r} = {value} appears twice")
        seen.add(value)
    return at


def check_new_rows(
    table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
) -> None:
    """What insert_with_new_keys is given: rows as wide as ``columns``, which leave ``key`` out."""
    if key in columns:
        raise UsageError(
            f"writing to table {table!r}: new rows get their key {key!r} from the source; "
            "leave it out of the columns"
        )
    if len(set(columns)) != len(columns):
        raise UsageError(f"writing to table {table!r}: a column is named twice in {list(columns)}")
    for row in rows:
        check_row_width(table, columns, row)


def check_row_width(table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
    if len(row) != len(columns):
        raise UsageError(
            f"writing to table {table!r}: a row of {len(row)} value(s) for {len(columns)} column(s)"
        )
