"""SQLite as a source: the standard library's sqlite3, opened read-only (``mode=ro``).

Values come back as SQLite stores them (its types are affinities: a DATETIME column holds
text, a BOOLEAN column integers); reflection reports the declared type and the kind it
suggests, and the canonical form reconciles the two. ``?timeout=SECONDS`` on the URL sets
how long a read waits for a writer's lock before the read counts as transient (default 5).
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Generator, Sequence
from itertools import islice
from typing import Any
from urllib.parse import quote as url_quote

from isthmus.copytext import NULL, escape, float_text, hex_bytea
from isthmus.dialects.base import (
    Capabilities,
    Column,
    ForeignKey,
    Index,
    Row,
    SchemaInfo,
    Table,
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
from isthmus.dialects.sqlite_write import SQLiteWriting
from isthmus.dialects.typemap import sqlite_type
from isthmus.errors import (
    ConfigError,
    DatabaseError,
    TerminalDatabaseError,
    TransientDatabaseError,
)
from isthmus.urls import DatabaseURL

_VERSION = sqlite3.sqlite_version_info

CAPABILITIES = Capabilities(
    name="sqlite",
    server_side_cursors=False,  # a plain cursor already steps through the file lazily
    row_value_comparison=_VERSION >= (3, 15, 0),
    in_database_checksums=False,
    transactional_ddl=True,
    read_only_transactions=True,  # the whole connection is read-only (mode=ro)
    returning=_VERSION >= (3, 35, 0),
    max_bind_parameters=32766 if _VERSION >= (3, 32, 0) else 999,
    identifier_quote='"',
    typed_values=False,
    writable_source=True,  # through a connection of its own, opened mode=rw when first needed
    native_booleans=False,
)

# sqlite_sequence, sqlite_stat1... are SQLite's own.
_TABLE_LIST = (
    "SELECT name, type, wr FROM pragma_table_list "
    "WHERE schema = 'main' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)
_MASTER_LIST = (
    "SELECT name, type, sql FROM sqlite_master "
    "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)
# SQLITE_BUSY and SQLITE_LOCKED (primary result codes): another connection holds the lock.
_TRANSIENT_CODES = {5, 6}
_READONLY_ROLLBACK = 776  # SQLITE_READONLY_ROLLBACK: a hot journal a read-only open cannot undo
# Below this size an exact COUNT(*) per table during reflection costs next to nothing.
_EXACT_COUNT_MAX_BYTES = 256 * 1024 * 1024


class Source(SQLiteWriting):
    capabilities = CAPABILITIES

    def __init__(self, url: DatabaseURL, *, writable: bool = False) -> None:
        super().__init__(url)
        self.writable = writable
        if not url.database:
            raise ConfigError(f"source.url: {url.masked()} names no SQLite file")
        self.path = url.database
        options = dict(url.query)
        try:
            self.timeout = float(options.get("timeout", "5"))
        except ValueError as exc:
            raise ConfigError(f"source.url: timeout in {url.masked()} is not a number") from exc
        self._conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self.connection()  # fail now, with the file named, rather than at the first read

    # -- connection and errors ---------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if not os.path.isfile(self.path):
            raise TerminalDatabaseError(
                f"SQLite: database file {self.path!r} does not exist ({self.url.masked()})"
            )
        mode = "rw" if self.writable else "ro"  # never "rwc": a typo must not create a new file
        try:
            conn = self._open(mode)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) != _READONLY_ROLLBACK:
                raise self._translate(exc, "opening the database") from exc
            # a writer died mid-transaction (a hot journal): a read-only connection cannot roll
            # it back, a read-write one does on its first read; then read-only as asked
            try:
                self._open("rw").close()
                conn = self._open(mode)
            except sqlite3.Error as again:
                raise self._translate(again, "opening the database") from again
        self._conn = conn
        return conn

    def _open(self, mode: str) -> sqlite3.Connection:
        uri = f"file:{url_quote(os.path.abspath(self.path))}?mode={mode}"
        conn = sqlite3.connect(
            uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _translate(self, exc: sqlite3.Error, doing: str) -> DatabaseError:
        message = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        code = getattr(exc, "sqlite_errorcode", None)
        text = f"SQLite: {doing} in {self.path!r}: {message}"
        if (code is not None and code & 0xFF in _TRANSIENT_CODES) or "locked" in message:
            return TransientDatabaseError(text)
        return TerminalDatabaseError(text)

    def _query(self, sql: str, params: Sequence[Any] = (), doing: str = "querying") -> list[Any]:
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    # -- reading -----------------------------------------------------------------------------

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
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="?"
        )
        sql = select_ordered(self.quote(table), [self.quote(c) for c in cols], quoted_keys, where)
        return self._read(sql, params, batch_size, f"reading table {table!r}")

    def _read(
        self, sql: str, params: list[Any], batch_size: int, doing: str
    ) -> Generator[list[Row], None, None]:
        try:
            cursor = self.connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc
        try:
            while True:
                batch: list[Row] = []
                try:
                    try:  # (extend keeps the rows read before an error; fetchmany would not)
                        batch.extend(islice(cursor, batch_size))
                    except sqlite3.OperationalError as exc:
                        if not str(exc).startswith(_NOT_UTF8):
                            raise
                        # Text that is not UTF-8: the cursor stays on that row, read again
                        # keeping its bytes (surrogateescape); the target refuses the value and
                        # the row is quarantined, naming the column, instead of stopping the read.
                        self.connection().text_factory = _text_keeping_bytes
                        batch.extend(islice(cursor, batch_size - len(batch)))
                except sqlite3.Error as exc:
                    raise self._translate(exc, doing) from exc
                if not batch:
                    return
                yield batch
        finally:
            cursor.close()

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
        cols, keys, low, high = check_stream_args(table, columns, key, after, upto)
        cursor_col = check_since(table, since)
        quoted_keys = [self.quote(k) for k in keys]
        where, params = keyset_where(
            quoted_keys, low, high, row_values=self.capabilities.row_value_comparison, mark="?"
        )
        if cursor_col is not None:
            where, params = add_since(
                where, params, self.quote(cursor_col[0]), cursor_col[1], mark="?"
            )
        sql = select_ordered(self.quote(table), [self.quote(c) for c in cols], quoted_keys, where)
        return self._read_text(sql, params, batch_size, f"reading table {table!r}")

    def _read_text(
        self, sql: str, params: list[Any], batch_size: int, doing: str
    ) -> Generator[list[list[bytes]], None, None]:
        batches = self._read(sql, params, batch_size, doing)
        try:
            for batch in batches:
                yield _text_batch(batch)
        finally:
            batches.close()

    def fetch_keys(
        self, table: str, columns: Sequence[str], key: str, ids: Sequence[Any]
    ) -> list[Row]:
        rows: list[Row] = []
        cols = [self.quote(c) for c in columns]
        for part in chunked(list(ids), self.capabilities.max_bind_parameters):
            sql = in_list_query(self.quote(table), cols, self.quote(key), len(part), "?")
            rows.extend(self._query(sql, part, doing=f"reading rows of {table!r} by {key!r}"))
        return rows

    # -- reflection --------------------------------------------------------------------------

    def reflect(self) -> SchemaInfo:
        notes: list[str] = []
        tables: dict[str, Table] = {}
        views: list[str] = []
        for name, kind, without_rowid in self._objects():
            if kind == "view":
                views.append(name)
            elif kind in ("virtual", "shadow"):
                notes.append(f"table {name!r} skipped: SQLite {kind} table")
            else:
                tables[name] = self._table(name, without_rowid, notes)
        return SchemaInfo(tables=tables, views=tuple(sorted(views)), notes=tuple(notes))

    def _objects(self) -> list[tuple[str, str, bool]]:
        """(name, table|view|virtual|shadow, without_rowid) of every user object in main."""
        if _VERSION >= (3, 37, 0):
            rows = self._query(_TABLE_LIST, doing="listing tables")
            return [(r[0], r[1], bool(r[2])) for r in rows]
        rows = self._query(_MASTER_LIST, doing="listing tables")
        found = []
        for name, kind, sql in rows:
            ddl = " ".join((sql or "").upper().split())
            virtual = ddl.startswith("CREATE VIRTUAL TABLE")
            found.append((name, "virtual" if virtual else kind, ddl.endswith("WITHOUT ROWID")))
        return found

    def _table(self, name: str, without_rowid: bool, notes: list[str]) -> Table:
        doing = f"reflecting table {name!r}"
        info = self._query(
            'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_xinfo(?) ORDER BY cid',
            (name,),
            doing,
        )
        pk = tuple(r[0] for r in sorted((r for r in info if r[4]), key=lambda r: r[4]))
        rowid_alias = (
            not without_rowid
            and len(pk) == 1
            and any(r[0] == pk[0] and r[1].upper() == "INTEGER" for r in info)
        )
        columns = []
        for col_name, declared, notnull, default, _ in info:
            t = sqlite_type(declared or "")
            is_alias = rowid_alias and col_name == pk[0]
            columns.append(
                Column(
                    name=col_name,
                    type_name=(declared or "").lower(),
                    kind=t.kind,
                    nullable=not (notnull or is_alias),
                    bits=t.bits,
                    unsigned=t.unsigned,
                    length=t.length,
                    precision=t.precision,
                    scale=t.scale,
                    default=default,
                    autoincrement=is_alias,
                )
            )
        return Table(
            name=name,
            columns=tuple(columns),
            primary_key=pk,
            foreign_keys=self._foreign_keys(name, notes),
            indexes=self._indexes(name, notes),
            row_estimate=self._row_estimate(name),
        )

    def _foreign_keys(self, table: str, notes: list[str]) -> tuple[ForeignKey, ...]:
        rows = self._query(
            'SELECT id, "table", "from", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq',
            (table,),
            f"reflecting foreign keys of {table!r}",
        )
        grouped: dict[int, list[tuple[str, str, str | None]]] = {}
        for fk_id, parent, child_col, parent_col in rows:
            grouped.setdefault(fk_id, []).append((parent, child_col, parent_col))
        fks = []
        for parts in grouped.values():
            parent = parts[0][0]
            ref_cols: tuple[str, ...] = tuple(p[2] for p in parts if p[2] is not None)
            if len(ref_cols) != len(parts):  # REFERENCES parent without columns: its primary key
                ref_cols = self._primary_key(parent)
                if not ref_cols:
                    notes.append(
                        f"table {table!r}: foreign key to {parent!r} names no columns and {parent!r} has no primary key"
                    )
                    continue
            fks.append(
                ForeignKey(
                    columns=tuple(p[1] for p in parts), ref_table=parent, ref_columns=ref_cols
                )
            )
        return tuple(fks)

    def _primary_key(self, table: str) -> tuple[str, ...]:
        rows = self._query(
            "SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (table,)
        )
        return tuple(r[0] for r in rows)

    def _indexes(self, table: str, notes: list[str]) -> tuple[Index, ...]:
        doing = f"reflecting indexes of {table!r}"
        indexes = []
        for idx_name, unique, origin in self._query(
            'SELECT name, "unique", origin FROM pragma_index_list(?) ORDER BY name', (table,), doing
        ):
            if origin == "pk":
                continue
            cols = [
                r[0]
                for r in self._query(
                    "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (idx_name,), doing
                )
            ]
            if any(c is None for c in cols):
                notes.append(f"table {table!r}: index {idx_name!r} on an expression not reported")
                continue
            indexes.append(Index(name=idx_name, columns=tuple(cols), unique=bool(unique)))
        return tuple(indexes)

    def _row_estimate(self, table: str) -> int | None:
        if os.path.getsize(self.path) <= _EXACT_COUNT_MAX_BYTES:
            return self.count(table)
        has_stats = self._query("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if has_stats:
            stat = self._query("SELECT stat FROM sqlite_stat1 WHERE tbl = ? LIMIT 1", (table,))
            if stat and str(stat[0][0]).split(" ", 1)[0].isdigit():
                return int(str(stat[0][0]).split(" ", 1)[0])
        return None


# -- COPY text of SQLite's values: each value has its own storage class, so dispatch per value --


_TEXT_OF_OTHER: dict[type, Any] = {float: float_text, bytes: hex_bytea}
_NOT_UTF8 = "Could not decode to UTF-8"  # sqlite3's error for TEXT that is not UTF-8
_text_keeping_bytes = functools.partial(bytes.decode, encoding="utf-8", errors="surrogateescape")


def _text_batch(batch: list[Row]) -> list[list[bytes]]:
    # None, int and str (nearly every value) inline; the rest by its type.
    other = _TEXT_OF_OTHER
    return [
        [
            NULL
            if v is None
            else b"%d" % v
            if type(v) is int
            else escape(v.encode("utf-8", "surrogateescape"))
            if type(v) is str
            else other[type(v)](v)
            for v in row
        ]
        for row in batch
    ]
