"""MySQL and MariaDB as a source (driver choice and error codes: mysql_driver.py).

Sessions are read-only (``SET SESSION TRANSACTION READ ONLY``) unless ``writable=True``,
in autocommit (no snapshot outlives a statement), with ``time_zone = '+00:00'`` so that
TIMESTAMP columns (kind ``timestamptz``) come back as naive datetimes in UTC.

Values are the driver's Python values, made the same whichever driver reads them:
- zero and impossible dates (``0000-00-00``, ``2020-02-31``) in DATE/DATETIME/TIMESTAMP
  columns come back as None; each is counted and reported by ``take_warnings()``. The server
  flags them in an extra mask column, because one driver hands back None and the other text;
- BIT columns come back as ints (``bit(1)`` as 0/1), SET columns as MySQL's text
  (``'a,c'``, members in definition order), both converted by the server;
- tinyint(1) stays an int.

``stream_text()`` reads the server's text bytes as they arrive (see mysql_text.py), with the
same select list, so zero dates, BITs and SETs come out the same way.

Each ``stream()`` reads on a connection of its own through an unbuffered cursor: nothing else
can use a connection while an unbuffered result is open, and a consumer that pauses between
batches must not be cut off by ``net_write_timeout``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

from isthmus.dialects import mysql_driver, mysql_reflect, mysql_text, segment_sql
from isthmus.dialects.base import (
    Capabilities,
    Column,
    Row,
    SchemaInfo,
)
from isthmus.dialects.keyset import (
    add_since,
    check_since,
    check_stream_args,
    chunked,
    in_list_query,
    keyset_where,
    select_ordered,
)
from isthmus.dialects.mysql_write import MySQLWriting
from isthmus.errors import DatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL

CAPABILITIES = Capabilities(
    name="mysql",
    server_side_cursors=True,
    # MySQL and MariaDB parse (a, b) > (x, y) but may not use an index range for it.
    row_value_comparison=False,
    in_database_checksums=True,
    transactional_ddl=False,
    read_only_transactions=True,
    returning=False,
    max_bind_parameters=65_535,
    identifier_quote="`",
    pads_fractional_seconds=True,
    integer_division="DIV",
    segment_flavor="mysql",
    writable_source=True,  # through a connection of its own, opened when first needed
    native_booleans=False,
    aware_datetimes=False,
)

# Turns a fetched batch into the rows the engine gets (mask columns stripped, zero dates None).
RowFixer = Callable[[Sequence[Row]], list[Row]]

_TEMPORAL = ("date", "datetime", "timestamp")
_MASK_WIDTH = 60  # temporal columns flagged per mask column (a BIGINT)
# Long enough for any pause between batches of a stream (the server maximum is a year).
_STREAM_NET_TIMEOUT = 7 * 24 * 3600


class Source(MySQLWriting):
    capabilities = CAPABILITIES

    def __init__(self, url: DatabaseURL, *, writable: bool = False) -> None:
        super().__init__(url)
        self.writable = writable
        self.database = url.database or ""
        self.driver = mysql_driver.choose(url)
        self.zero_dates: Counter[tuple[str, str]] = Counter()
        self._types: dict[str, dict[str, str]] = {}
        self._conn: Any = None
        self._write_conn: Any = None
        self._returning: bool | None = None  # INSERT ... RETURNING (MariaDB 10.5+)
        self.connection()  # fail now, naming the URL, rather than at the first read

    # -- connections and errors --------------------------------------------------------------

    def _session_sql(self, *, streaming: bool) -> list[str]:
        sql = ["SET time_zone = '+00:00'"]
        if not self.writable:
            sql.append("SET SESSION TRANSACTION READ ONLY")
        if streaming:
            sql.append(f"SET SESSION net_write_timeout = {_STREAM_NET_TIMEOUT}")
        return sql

    def connection(self) -> Any:
        if self._conn is None:
            self._conn = mysql_driver.connect(
                self.driver, self.url, session_sql=self._session_sql(streaming=False)
            )
        return self._conn

    def _failed(self, exc: BaseException, doing: str) -> DatabaseError:
        error = mysql_driver.translate(exc, doing)
        if isinstance(error, TransientDatabaseError):
            self._drop()  # the next call reconnects
        return error

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; dropping it is all that is left to do
                mysql_driver.abandon(conn)

    def _query(
        self, sql: str, params: Sequence[Any] = (), doing: str = "querying"
    ) -> list[tuple[Any, ...]]:
        with mysql_driver.driver_errors(lambda exc: self._failed(exc, doing)):
            cur = self.connection().cursor()
            try:
                cur.execute(*mysql_driver.bind(self.driver, self.connection(), sql, params))
                return list(cur.fetchall())
            finally:
                cur.close()

    def segment_form(self, table: str, column: Column, target_kind: Any) -> str | None:
        charset = self._charsets(table).get(column.name)
        return segment_sql.mysql_form(self.quote(column.name), column, target_kind, charset)

    def segment_sums(
        self, table: str, key: str, forms: Sequence[str], width: int
    ) -> Iterator[tuple[int, int, int]]:
        query = segment_sql.mysql_bucket_query(
            self.relation(table), self.quote(key), list(forms), width
        )
        for batch in self._read(
            query, [], _unchanged, 20_000, f"checksumming segments of {table!r}"
        ):
            for b, n, total in batch:
                yield int(b), int(n), int(total)

    def close(self) -> None:
        self._drop()
        self._drop_writer()

    def take_warnings(self) -> list[str]:
        lines = [
            f"{table}.{column}: {n} zero or impossible date(s) read as NULL"
            for (table, column), n in sorted(self.zero_dates.items())
        ]
        self.zero_dates.clear()
        return lines

    # -- reading -----------------------------------------------------------------------------

    def reflect(self) -> SchemaInfo:
        self._types.clear()
        return mysql_reflect.reflect(
            lambda sql, params: self._query(sql, params, "reflecting the schema"), self.database
        )

    def fetch_keys(
        self, table: str, columns: Sequence[str], key: str, ids: Sequence[Any]
    ) -> list[Row]:
        select, fix = self._select_list(table, columns)
        rows: list[Row] = []
        for part in chunked(list(ids), 10_000):
            sql = in_list_query(
                self.quote(table), select, self._qualified(table, key), len(part), "%s"
            )
            rows.extend(fix(self._query(sql, part, doing=f"reading rows of {table!r} by {key!r}")))
        return rows

    def stream(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        after: Sequence[Any] | None = None,
        upto: Sequence[Any] | None = None,
        batch_size: int = 10_000,
    ) -> Generator[list[Row], None, None]:
        cols, keys, low, high = check_stream_args(table, columns, key, after, upto)
        select, fix = self._select_list(table, cols)
        quoted_keys = [self._qualified(table, k) for k in keys]
        where, params = keyset_where(
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="%s"
        )
        sql = select_ordered(self.quote(table), select, quoted_keys, where)
        return self._read(sql, params, fix, batch_size, f"reading table {table!r}")

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
    ) -> Generator[list[list[bytes]], None, None]:
        bounds = {"after": after, "upto": upto, "since": since}
        return self._read_raw(
            table, columns, key, bounds, batch_size=batch_size, make_encoder=mysql_text.text_batch
        )

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
    ) -> Generator[list[Sequence[bytes]], None, None]:
        bounds = {"after": after, "upto": upto, "since": since}
        return self._read_raw(
            table, columns, key, bounds, batch_size=batch_size, make_encoder=mysql_text.column_batch
        )

    def _read_raw(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        bounds: dict[str, Any],
        *,
        batch_size: int,
        make_encoder: Callable[..., Callable[[Any], list[Any]]],
    ) -> Generator[list[Any], None, None]:
        """The server's text bytes of a keyset read, encoded per batch by ``make_encoder``'s
        function (rows or columns of COPY fields)."""
        sql, params, cols, masks, types = self._text_query(table, columns, key, **bounds)
        encode = make_encoder(
            [mysql_text.transform_of(types.get(c, "")) for c in cols],
            masks,
            [(table, c) for c in cols],
            self.zero_dates,
        )
        return self._read(sql, params, encode, batch_size, f"reading table {table!r}", raw=True)

    def _text_query(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        after: Sequence[Any] | None,
        upto: Sequence[Any] | None,
        since: tuple[str, Any] | None,
    ) -> tuple[str, list[Any], tuple[str, ...], Any, dict[str, str]]:
        cols, keys, low, high = check_stream_args(table, columns, key, after, upto)
        cursor_col = check_since(table, since)
        select, masks, types = self._select_parts(table, cols)
        quoted_keys = [self._qualified(table, k) for k in keys]
        # Marked with NUL (no identifier holds one), then "%s": _read binds them by
        # mysql_driver.bind, which keeps a "%" inside a quoted name a character.
        where, params = keyset_where(
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="\0"
        )
        if cursor_col is not None:
            column = self._qualified(table, cursor_col[0])
            where, params = add_since(where, params, column, cursor_col[1], mark="\0")
        sql = select_ordered(self.quote(table), select, quoted_keys, where)
        return sql.replace("\0", "%s"), params, cols, masks, types

    def _read(
        self,
        sql: str,
        params: list[Any],
        fix: Callable[[Any], list[Any]],
        batch_size: int,
        doing: str,
        *,
        raw: bool = False,
    ) -> Generator[list[Any], None, None]:
        """Batches of ``fix(fetched rows)``; ``raw``: values as the server's text bytes."""
        conn = mysql_driver.connect(
            self.driver, self.url, session_sql=self._session_sql(streaming=True), raw=raw
        )
        finished = False
        try:
            cur = mysql_driver.unbuffered_cursor(self.driver, conn, raw=raw)
            cur.execute(*mysql_driver.bind(self.driver, conn, sql, params))
            while True:
                batch = cur.fetchmany(batch_size)
                if not batch:
                    finished = True
                    break
                yield fix(batch)
        except DatabaseError:
            raise
        except Exception as exc:
            if not mysql_driver.is_driver_error(exc):
                raise
            raise mysql_driver.translate(exc, doing) from exc
        finally:
            if finished:
                try:
                    conn.close()
                except Exception:
                    mysql_driver.abandon(conn)
            else:
                mysql_driver.abandon(conn, self._kill_query)

    def _kill_query(self, connection_id: int) -> None:
        self._query(f"KILL QUERY {int(connection_id)}", doing="stopping an abandoned read")

    # -- select lists that make both drivers return the same values ---------------------------

    def _qualified(self, table: str, column: str) -> str:
        # Qualified so that ORDER BY / WHERE never bind to a select-list expression.
        return f"{self.quote(table)}.{self.quote(column)}"

    def _charsets(self, table: str) -> dict[str, str]:
        return mysql_reflect.charsets(
            lambda sql, params: self._query(sql, params, f"reading the columns of {table!r}"),
            self.database,
            table,
        )

    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._types:
            self._types[table] = mysql_reflect.column_types(
                lambda sql, params: self._query(sql, params, f"reading the columns of {table!r}"),
                self.database,
                table,
            )
        return self._types[table]

    def _select_list(self, table: str, columns: Sequence[str]) -> tuple[list[str], RowFixer]:
        select, masks, _ = self._select_parts(table, columns)
        if not masks:
            return select, _unchanged
        return select, _ZeroDateFixer(
            len(columns), masks, [(table, c) for c in columns], self.zero_dates
        )

    def _select_parts(
        self, table: str, columns: Sequence[str]
    ) -> tuple[list[str], list[list[int]], dict[str, str]]:
        """The select list (columns, then the zero-date mask columns), the column positions
        each mask column covers, and the DATA_TYPE of every column of ``table``."""
        types = self._column_types(table)
        select: list[str] = []
        temporal: list[int] = []
        for i, name in enumerate(columns):
            col = self._qualified(table, name)
            data_type = types.get(name, "")
            if data_type in ("bit", "year"):  # YEAR prints 0 as `0000`: read the number
                select.append(f"({col} + 0)")
            elif data_type == "set":
                select.append(f"CAST({col} AS CHAR)")
            else:
                select.append(col)
            if data_type in _TEMPORAL:
                temporal.append(i)
        masks = [temporal[i : i + _MASK_WIDTH] for i in range(0, len(temporal), _MASK_WIDTH)]
        for group in masks:
            select.append(
                "("
                + " | ".join(f"({_bad_date(select[i])} << {bit})" for bit, i in enumerate(group))
                + ")"
            )
        return select, masks, types


def _bad_date(col: str) -> str:
    """1 when a stored date cannot be a Python date: zero parts, or a day past the month's end."""
    return (
        f"COALESCE(YEAR({col}) = 0 OR MONTH({col}) = 0 OR DAYOFMONTH({col}) = 0"
        f" OR DAYOFMONTH({col}) > DAYOFMONTH(LAST_DAY({col})), 0)"
    )


def _unchanged(batch: Sequence[Row]) -> list[Row]:
    return batch if isinstance(batch, list) else list(batch)


class _ZeroDateFixer:
    """Strips the mask columns and turns flagged values into None, counting them."""

    def __init__(
        self,
        width: int,
        masks: list[list[int]],
        names: list[tuple[str, str]],
        counter: Counter[tuple[str, str]],
    ) -> None:
        self.width = width
        self.masks = masks
        self.names = names
        self.counter = counter

    def __call__(self, batch: Sequence[Row]) -> list[Row]:
        width = self.width
        if len(self.masks) == 1:  # the usual case, kept to one test and one slice per row
            return [row[:width] if not row[width] else self._fix(row) for row in batch]
        return [row[:width] if not any(row[width:]) else self._fix(row) for row in batch]

    def _fix(self, row: Row) -> Row:
        values = list(row[: self.width])
        for mask, group in zip(row[self.width :], self.masks, strict=True):
            for bit, i in enumerate(group):
                if mask and mask >> bit & 1:
                    values[i] = None
                    self.counter[self.names[i]] += 1
        return tuple(values)
