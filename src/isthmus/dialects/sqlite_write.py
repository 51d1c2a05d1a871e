"""SQLite write-back (``target_wins``, bidirectional sync): the part of the source dialect
that writes into the legacy tables."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote as url_quote

from isthmus.dialects.base import SourceDialect, WriteGuard, check_new_rows, write_key_position
from isthmus.dialects.keyset import chunked
from isthmus.errors import DatabaseError, TerminalDatabaseError


class SQLiteWriting(SourceDialect):
    """The writing half of the SQLite dialect (``sqlite.Source`` is all of it)."""

    path: str
    timeout: float
    _write_conn: sqlite3.Connection | None

    def _translate(self, exc: sqlite3.Error, doing: str) -> DatabaseError:
        raise NotImplementedError

    def _objects(self) -> list[tuple[str, str, bool]]:
        raise NotImplementedError

    # -- writing back --------------------------------------------------------------------------
    # On a connection of its own (mode=rw, foreign keys enforced), in BEGIN IMMEDIATE ...
    # COMMIT: the write lock is taken up front, so a busy database fails at once as transient;
    # no other connection writes while a ``guard`` looks at the rows.
    # executemany runs in-process: no round trips to save.

    def _writer(self) -> sqlite3.Connection:
        if self._write_conn is None:
            if not os.path.isfile(self.path):
                raise TerminalDatabaseError(
                    f"SQLite: database file {self.path!r} does not exist ({self.url.masked()})"
                )
            uri = f"file:{url_quote(os.path.abspath(self.path))}?mode=rw"
            try:
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise self._translate(exc, "opening the database for writing") from exc
            self._write_conn = conn
        return self._write_conn

    @contextmanager
    def _write_transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        conn = self._writer()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self._write_conn = None  # unusable; the next write opens another
                    conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc, doing) from exc
            raise

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: str,
        rows: Sequence[Sequence[Any]],
        *,
        guard: WriteGuard | None = None,
    ) -> int:
        at = write_key_position(table, columns, key, rows)
        if not rows:
            return 0
        t, k = self.quote(table), self.quote(key)
        others = [i for i, c in enumerate(columns) if c != key]
        with self._write_transaction(f"writing rows to table {table!r}") as conn:
            if guard is not None:
                kept = guard([row[at] for row in rows])
                rows = [row for row in rows if row[at] in kept]
            existing: set[int] = set()
            ids = [row[at] for row in rows]
            for part in chunked(ids, self.capabilities.max_bind_parameters):
                marks = ", ".join("?" * len(part))
                sql = f"SELECT {k} FROM {t} WHERE {k} IN ({marks})"  # noqa: S608
                existing.update(r[0] for r in conn.execute(sql, part))
            if others and existing:
                sets = ", ".join(f"{self.quote(columns[i])} = ?" for i in others)
                conn.executemany(
                    f"UPDATE {t} SET {sets} WHERE {k} = ?",  # noqa: S608
                    ([*(row[i] for i in others), row[at]] for row in rows if row[at] in existing),
                )
            new = [row for row in rows if row[at] not in existing]
            if new:
                cols = ", ".join(self.quote(c) for c in columns)
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {t} ({cols}) VALUES ({marks})", new)  # noqa: S608
        return len(rows)

    def delete_keys(
        self, table: str, key: str, ids: Sequence[int], *, guard: WriteGuard | None = None
    ) -> int:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0
        t, k = self.quote(table), self.quote(key)
        deleted = 0
        with self._write_transaction(f"deleting rows of table {table!r}") as conn:
            if guard is not None:
                kept = guard(unique)
                unique = [i for i in unique if i in kept]
            for part in chunked(unique, self.capabilities.max_bind_parameters):
                marks = ", ".join("?" * len(part))
                deleted += conn.execute(f"DELETE FROM {t} WHERE {k} IN ({marks})", part).rowcount  # noqa: S608
        return deleted

    def insert_with_new_keys(
        self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """SQLite gives an INTEGER PRIMARY KEY (a rowid alias) one more than the largest rowid
        (or than the AUTOINCREMENT counter), and the write lock is held throughout: the new
        rows are exactly those above the largest key before, in insertion order."""
        check_new_rows(table, columns, key, rows)
        if not rows:
            return []
        self._check_rowid_alias(table, key)
        t, k = self.quote(table), self.quote(key)
        with self._write_transaction(f"inserting rows into table {table!r}") as conn:
            before = conn.execute(f"SELECT max({k}) FROM {t}").fetchone()[0]  # noqa: S608
            if columns:
                cols = ", ".join(self.quote(c) for c in columns)
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {t} ({cols}) VALUES ({marks})", rows)  # noqa: S608
            else:
                conn.executemany(f"INSERT INTO {t} DEFAULT VALUES", [()] * len(rows))
            where, params = ("", []) if before is None else (f" WHERE {k} > ?", [before])
            sql = f"SELECT {k} FROM {t}{where} ORDER BY {k}"  # noqa: S608
            keys = [int(r[0]) for r in conn.execute(sql, params)]
            if len(keys) != len(rows):
                raise TerminalDatabaseError(
                    f"SQLite: inserting rows into table {table!r}: {len(rows)} row(s) inserted "
                    f"but {len(keys)} new key(s) above {before} found (the rowid is at its "
                    "maximum, or a trigger inserts rows): nothing was written"
                )
        return keys

    def _check_rowid_alias(self, table: str, key: str) -> None:
        doing = f"reading the key of table {table!r}"
        info = self._query(
            "SELECT name, type, pk FROM pragma_table_xinfo(?) WHERE pk > 0", (table,), doing
        )
        without_rowid = any(n == table and w for n, _, w in self._objects())
        if (
            without_rowid
            or len(info) != 1
            or info[0][0] != key
            or str(info[0][1]).upper() != "INTEGER"
        ):
            raise TerminalDatabaseError(
                f"SQLite: table {table!r}: {key!r} is not an INTEGER PRIMARY KEY of a rowid "
                "table, so SQLite assigns it no values"
            )
