"""PostgreSQL as a source (psycopg 3), including the embedded server.

``?schema=NAME`` on the URL picks the schema (default: the connection's ``current_schema()``,
i.e. the first of its search_path, usually ``public``). Sessions are read-only
(``default_transaction_read_only``) unless ``writable=True``, with ``TimeZone = UTC`` so
timestamptz values come back as aware datetimes in UTC.

Each ``stream()`` reads through a named (server-side) cursor in a transaction on a
connection of its own, so other calls on the Source can run in between and a commit
elsewhere never closes the cursor. Plain tables are read with ``ONLY``, so an inheritance
parent does not repeat its children's rows (they are reported as tables of their own).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Generator, Iterator, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from isthmus.dialects import pg_reflect, pgconn, segment_sql
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
    keyset_where,
    select_ordered,
)
from isthmus.dialects.pg_write import PostgreSQLWriting
from isthmus.errors import DatabaseError, TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, parse_url

CAPABILITIES = Capabilities(
    name="postgresql",
    server_side_cursors=True,
    row_value_comparison=True,
    in_database_checksums=True,
    transactional_ddl=True,
    read_only_transactions=True,
    returning=True,
    max_bind_parameters=65_535,
    identifier_quote='"',
    can_be_target=True,
    binary_copy=True,
    writable_source=True,  # through a connection of its own, opened when first needed
    segment_flavor="postgresql",
)

# Connection failures that retrying cannot fix (psycopg reports them without a SQLSTATE).
_TERMINAL_CONNECT_MESSAGES = (
    "does not exist",
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "permission denied",
    "no pg_hba.conf entry",
)
_cursor_names = itertools.count(1)
# What stream_text's COPY writes must read back the same on a target session: UTF-8, ISO dates,
# timestamptz in UTC, intervals in the postgres style, bytea as hex, floats exactly.
_COPY_SETTINGS = (
    "SET client_encoding = 'UTF8'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET bytea_output = 'hex'",
    "SET extra_float_digits = 1",
)


def _without_schema(url: DatabaseURL) -> tuple[DatabaseURL, str | None]:
    """libpq rejects unknown URI parameters: take ``schema`` out before connecting."""
    query = dict(url.query)
    schema = query.pop("schema", None)
    if schema is None or url.dialect == "embedded":
        return url, schema
    raw = urlsplit(url.raw)._replace(query=urlencode(query)).geturl()
    return parse_url(raw), schema


class Source(PostgreSQLWriting):
    capabilities = CAPABILITIES

    def __init__(self, url: DatabaseURL, *, writable: bool = False) -> None:
        super().__init__(url)
        self.writable = writable
        self._connect_url, schema = _without_schema(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._write_conn: psycopg.Connection[Any] | None = None
        self._relkinds: dict[str, str] | None = None
        self.connection()  # fail now, naming the URL, rather than at the first read
        if schema is None:
            schema = self._query("SELECT current_schema()", doing="finding the schema")[0][0]
            if schema is None:
                raise TerminalDatabaseError(
                    f"PostgreSQL: {url.masked()}: no schema of the search_path exists; add ?schema=NAME"
                )
        self.schema: str = schema

    # -- connections and errors --------------------------------------------------------------

    def _open(
        self, *, streaming: bool, copy_text: bool = False, writing: bool = False
    ) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                pgconn.conninfo(self._connect_url),
                autocommit=not streaming,
                application_name="isthmus-source",
                connect_timeout=10,
            )
        except psycopg.Error as exc:
            raise self._connect_error(exc) from exc
        settings = ["SET TimeZone = 'UTC'"]
        if not (self.writable or writing):
            settings.append("SET default_transaction_read_only = on")
        if streaming:  # the consumer may pause between batches for as long as it needs
            settings.append("SET idle_in_transaction_session_timeout = 0")
        if copy_text:
            settings.extend(_COPY_SETTINGS)
        try:
            for sql in settings:
                conn.execute(sql)
            if streaming:
                conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc, "setting up the session") from exc
        return conn

    def _connect_error(self, exc: psycopg.Error) -> DatabaseError:
        error = self._translate(exc, f"connecting to {self.url.masked()}")
        if any(m in str(error) for m in _TERMINAL_CONNECT_MESSAGES):
            return TerminalDatabaseError(str(error))
        return error

    def _translate(self, exc: psycopg.Error, doing: str) -> DatabaseError:
        error = pgconn.translate(exc)
        message = str(error).removeprefix("PostgreSQL: ")
        return type(error)(f"PostgreSQL: {doing}: {message}")

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._open(streaming=False)
        return self._conn

    def _query(
        self, sql: str, params: Sequence[Any] = (), doing: str = "querying"
    ) -> list[tuple[Any, ...]]:
        try:
            with self.connection().cursor() as cur:
                cur.execute(*_percent_safe(sql, params))
                return cur.fetchall()
        except psycopg.Error as exc:
            error = self._translate(exc, doing)
            if isinstance(error, TransientDatabaseError):
                self._drop()
            raise error from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def segment_form(self, table: str, column: Column, target_kind: Any) -> str | None:
        return segment_sql.pg_form(self.quote(column.name), column.kind, target_kind)

    def segment_sums(
        self, table: str, key: str, forms: Sequence[str], width: int
    ) -> Iterator[tuple[int, int, int]]:
        query = segment_sql.pg_bucket_query(
            self.relation(table), self.quote(key), list(forms), width
        )
        # buckets aggregated in memory, not sorted on disk; no JIT for a single pass
        prelude = (
            "SET LOCAL work_mem = '512MB'",
            "SET LOCAL jit = off",
            "SET LOCAL cursor_tuple_fraction = 1.0",  # every bucket is read
        )
        doing = f"checksumming segments of {table!r}"
        for batch in self._read(query, [], 20_000, doing, prelude=prelude):
            for b, n, total in batch:
                yield int(b), int(n), int(total)

    def close(self) -> None:
        self._drop()
        self._drop_writer()

    # -- names -------------------------------------------------------------------------------

    def relation(self, table: str) -> str:
        """``ONLY "schema"."table"`` for plain tables, without ONLY for partitioned ones."""
        if self._relkinds is None or table not in self._relkinds:
            query = lambda sql, params: self._query(sql, params, "listing tables")  # noqa: E731
            self._relkinds = {r[0]: r[1] for r in pg_reflect.relations(query, self.schema)}
        name = f"{self.quote(self.schema)}.{self.quote(table)}"
        return name if self._relkinds.get(table) == "p" else f"ONLY {name}"

    # -- reading -----------------------------------------------------------------------------

    def reflect(self) -> SchemaInfo:
        self._relkinds = None
        engine = create_engine(
            "postgresql+psycopg://", creator=lambda: self._open(streaming=False), poolclass=NullPool
        )
        try:
            with engine.connect() as sa_conn:
                return pg_reflect.reflect(
                    lambda sql, params: self._query(sql, params, "reflecting the schema"),
                    sa_conn,
                    self.schema,
                    self.count,
                )
        except psycopg.Error as exc:
            raise self._translate(exc, "reflecting the schema") from exc
        except Exception as exc:  # SQLAlchemy wraps driver errors
            orig = getattr(exc, "orig", None)
            if isinstance(orig, psycopg.Error):
                raise self._translate(orig, "reflecting the schema") from exc
            raise
        finally:
            engine.dispose()

    def fetch_keys(
        self, table: str, columns: Sequence[str], key: str, ids: Sequence[Any]
    ) -> list[Row]:
        cols = ", ".join(self.quote(c) for c in columns)
        k = self.quote(key)
        relation = self.relation(table)
        sql = f"SELECT {cols} FROM {relation} WHERE {k} = ANY(%s) ORDER BY {k}"  # noqa: S608
        return self._query(sql, (list(ids),), doing=f"reading rows of {table!r} by {key!r}")

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
        quoted_keys = [self.quote(k) for k in keys]
        where, params = keyset_where(
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="%s"
        )
        sql = select_ordered(
            self.relation(table), [self.quote(c) for c in cols], quoted_keys, where
        )
        return self._read(sql, params, batch_size, f"reading table {table!r}")

    def _read(
        self,
        sql: str,
        params: list[Any],
        batch_size: int,
        doing: str,
        *,
        prelude: Sequence[str] = (),
    ) -> Generator[list[Row], None, None]:
        conn = self._open(streaming=True)
        try:
            for statement in prelude:  # settings of this read's transaction
                conn.execute(statement)
            cur = conn.cursor(name=f"isthmus_stream_{next(_cursor_names)}")
            cur.itersize = batch_size
            cur.execute(*_percent_safe(sql, params))
            while batch := cur.fetchmany(batch_size):
                yield batch
            cur.close()
            conn.rollback()  # nothing was written; ends the read-only transaction
        except psycopg.Error as exc:
            raise self._translate(exc, doing) from exc
        finally:
            conn.close()

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
        """``COPY (SELECT ...) TO STDOUT``: the server writes the text; we split it.

        COPY takes no server-side parameters, so psycopg merges the bounds into the statement
        client-side as quoted literals; a ``%`` in an identifier is doubled to survive that.
        """
        cols, keys, low, high = check_stream_args(table, columns, key, after, upto)
        cursor_col = check_since(table, since)
        bound = low is not None or high is not None or cursor_col is not None

        def name(sql: str) -> str:
            return sql.replace("%", "%%") if bound else sql

        quoted_keys = [name(self.quote(k)) for k in keys]
        where, params = keyset_where(
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="%s"
        )
        if cursor_col is not None:
            column = name(self.quote(cursor_col[0]))
            where, params = add_since(where, params, column, cursor_col[1], mark="%s")
        select = select_ordered(
            name(self.relation(table)), [name(self.quote(c)) for c in cols], quoted_keys, where
        )
        sql = f"COPY ({select}) TO STDOUT"
        return self._read_text(sql, params, batch_size, f"reading table {table!r}")

    def _read_text(
        self, sql: str, params: list[Any], batch_size: int, doing: str
    ) -> Generator[list[list[bytes]], None, None]:
        conn = self._open(streaming=True, copy_text=True)
        try:
            with conn.cursor() as cur, cur.copy(sql, params or None) as copy:
                chunks: list[Any] = []  # the server sends one row per chunk; not relied upon
                lines: list[bytes] = []
                for chunk in copy:
                    chunks.append(chunk)
                    if len(chunks) >= batch_size:
                        lines.extend(_complete_lines(chunks))
                        while len(lines) >= batch_size:
                            yield [line.split(b"\t") for line in lines[:batch_size]]
                            del lines[:batch_size]
                lines.extend(_complete_lines(chunks))
                if chunks:  # COPY ends every row with a newline: a tail means a broken stream
                    raise TerminalDatabaseError(
                        f"PostgreSQL: {doing}: COPY output ended inside a row"
                    )
                for start in range(0, len(lines), batch_size):
                    yield [line.split(b"\t") for line in lines[start : start + batch_size]]
            conn.rollback()  # nothing was written; ends the read-only transaction
        except psycopg.Error as exc:
            raise self._translate(exc, doing) from exc
        finally:
            conn.close()


# A quoted name or string of a statement (a doubled quote stays inside it).
_QUOTED = re.compile(r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'")


def _percent_safe(sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any] | None]:
    """``sql`` and ``params`` as psycopg must get them for a ``%`` in a name (``"50% off"``)
    to stay a character: psycopg reads every ``%`` of a statement given parameters (even
    none) as a placeholder or an escape, so no parameters are passed when there are none,
    and a ``%`` inside a quoted name or string is doubled when there are."""
    if not params:
        return sql, None
    return _QUOTED.sub(lambda m: m[0].replace("%", "%%"), sql), params


def _complete_lines(chunks: list[Any]) -> list[bytes]:
    """The complete lines in ``chunks``; ``chunks`` is left holding the unfinished tail."""
    data = b"".join(chunks)
    chunks.clear()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        chunks.append(data[end:])
    return data[: end - 1].split(b"\n") if end else []
