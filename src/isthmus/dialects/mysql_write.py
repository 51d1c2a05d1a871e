"""MySQL/MariaDB write-back (``target_wins``, bidirectional sync): the part of the dialect
that writes into the legacy tables.

On a writable connection of its own, one explicit transaction per call. Rows go in as
multi-row INSERTs (bounded by max_bind_parameters and _MAX_STATEMENT_BYTES); an upsert
stages them in a temporary table and applies them with one UPDATE ... JOIN and one
INSERT ... SELECT. Tables of a non-transactional engine (MyISAM) get no atomicity.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from isthmus.dialects import mysql_driver
from isthmus.dialects.base import SourceDialect, WriteGuard, check_new_rows, write_key_position
from isthmus.dialects.keyset import chunked
from isthmus.errors import DatabaseError, TerminalDatabaseError, TransientDatabaseError

# Writing: UTC like reads; a value a column cannot hold is an error, never a silent truncation,
# in every engine (STRICT_TRANS_TABLES alone lets MyISAM adjust the rows after the first).
_WRITE_SESSION = [
    "SET time_zone = '+00:00'",
    "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'STRICT_ALL_TABLES', "
    "CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))",
]
# A multi-row INSERT stays under this many bytes of values (max_allowed_packet: 16 MiB by
# default on MariaDB, 64 MiB on MySQL 8); and IN lists under this many keys.
_MAX_STATEMENT_BYTES = 4 * 1024 * 1024
_IN_LIST = 10_000
_temp_names = itertools.count(1)


class MySQLWriting(SourceDialect):
    """The writing half of the MySQL dialect (``mysql.Source`` is the whole of it)."""

    driver: Any
    database: str
    _write_conn: Any
    _returning: bool | None

    # -- writing back ----------------------------------------------------------------------------
    # On a writable connection of its own, one explicit transaction per call. Rows go in as
    # multi-row INSERTs (bounded by max_bind_parameters and _MAX_STATEMENT_BYTES); an upsert
    # stages them in a temporary table and applies them with one UPDATE ... JOIN and one
    # INSERT ... SELECT. Tables of a non-transactional engine (MyISAM) get no atomicity.

    def _writer(self) -> Any:
        if self._write_conn is None:
            self._write_conn = mysql_driver.connect(
                self.driver, self.url, session_sql=_WRITE_SESSION
            )
        return self._write_conn

    def _drop_writer(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                mysql_driver.abandon(conn)

    def _write_failed(self, exc: BaseException, doing: str) -> DatabaseError:
        error = mysql_driver.translate(exc, doing)
        if isinstance(error, TransientDatabaseError):
            self._drop_writer()
        return error

    def _bound(self, sql: str, params: Sequence[Any]) -> tuple[Any, Any]:
        """``cursor.execute``'s arguments for ``sql`` with its parameters marked by NUL, such
        that a ``%`` in a name stays a character whichever the driver (mysql_driver.bind:
        connector would take the ``%s`` of a table named ``50%s off`` for a parameter)."""
        return mysql_driver.bind(self.driver, self._writer(), sql.replace("\0", "%s"), params)

    def _write_statement(self, doing: str, sql: str) -> None:
        """One statement without parameters on the writer, outside any transaction."""
        with mysql_driver.driver_errors(lambda exc: self._write_failed(exc, doing)):
            cur = self._writer().cursor()
            try:
                cur.execute(sql)
            finally:
                cur.close()

    @contextmanager
    def _write_transaction(self, doing: str, *, snapshot: bool = False) -> Iterator[Any]:
        """A cursor of the writer in a transaction, committed at the end, rolled back on error;
        ``snapshot``: REPEATABLE READ from a consistent snapshot taken at the start."""
        with mysql_driver.driver_errors(lambda exc: self._write_failed(exc, doing)):
            cur = self._writer().cursor()
            if snapshot:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            else:
                cur.execute("START TRANSACTION")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            self._rollback_writer()
            if isinstance(exc, DatabaseError) or not mysql_driver.is_driver_error(exc):
                raise
            raise self._write_failed(exc, doing) from exc
        finally:
            with contextlib.suppress(Exception):  # a broken connection: dropped already
                cur.close()

    def _rollback_writer(self) -> None:
        if self._write_conn is None:
            return
        try:
            cur = self._write_conn.cursor()
            cur.execute("ROLLBACK")
            cur.close()
        except Exception:  # a broken connection: dropping it rolls back
            self._drop_writer()

    def _inserts(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> Iterator[tuple[str, list[Any], int]]:
        """The multi-row INSERTs that put ``rows`` into ``table`` (quoted): each statement
        (parameters marked by NUL, see _bound), its parameters and its number of rows."""
        cols = ", ".join(self.quote(c) for c in columns)
        one = "(" + ", ".join(["\0"] * len(columns)) + ")"
        for batch in _value_batches(rows, len(columns), self.capabilities.max_bind_parameters):
            sql = f"INSERT INTO {table} ({cols}) VALUES " + ", ".join([one] * len(batch))  # noqa: S608
            yield sql, [v for row in batch for v in row], len(batch)

    def _guarded(
        self, cur: Any, table: str, key: str, ids: list[int], guard: WriteGuard
    ) -> set[int]:
        """The keys ``guard`` keeps, asked once their rows (and the gaps where absent ones
        would go) are locked by this transaction against every other writer."""
        size = min(_IN_LIST, self.capabilities.max_bind_parameters)
        for part in chunked(ids, size):
            marks = ", ".join(["\0"] * len(part))
            locking = f"SELECT {key} FROM {table} WHERE {key} IN ({marks}) FOR UPDATE"  # noqa: S608
            cur.execute(*self._bound(locking, part))
            cur.fetchall()
        return guard(ids)

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
        doing = f"writing rows to table {table!r}"
        t, k = self.quote(table), self.quote(key)
        tmp = self.quote(f"isthmus_write_{next(_temp_names)}")
        quoted = [self.quote(c) for c in columns]
        # Made before the transaction (CREATE ... SELECT inside one is refused under GTIDs);
        # a session's temporary table: no other connection sees it.
        self._write_statement(
            doing,
            f"CREATE TEMPORARY TABLE {tmp} (PRIMARY KEY ({k})) "  # noqa: S608
            f"SELECT {', '.join(quoted)} FROM {t} LIMIT 0",
        )
        try:
            with self._write_transaction(doing) as cur:
                if guard is not None:
                    kept = self._guarded(cur, t, k, [row[at] for row in rows], guard)
                    rows = [row for row in rows if row[at] in kept]
                for sql, params, _ in self._inserts(tmp, columns, rows):
                    cur.execute(*self._bound(sql, params))
                sets = ", ".join(f"{t}.{q} = s.{q}" for q in quoted if q != k)
                if sets:
                    cur.execute(f"UPDATE {t} JOIN {tmp} AS s ON {t}.{k} = s.{k} SET {sets}")  # noqa: S608
                new_rows = f"FROM {tmp} AS s LEFT JOIN {t} ON {t}.{k} = s.{k} WHERE {t}.{k} IS NULL"
                cur.execute(f"SELECT count(*) {new_rows}")
                if cur.fetchall()[0][0]:  # strict mode refuses even an empty INSERT ... SELECT
                    cur.execute(  # that leaves out a NOT NULL column without a default
                        f"INSERT INTO {t} ({', '.join(quoted)}) "
                        f"SELECT {', '.join('s.' + q for q in quoted)} {new_rows}"
                    )
        finally:
            self._drop_temporary(tmp)
        return len(rows)

    def _drop_temporary(self, tmp: str) -> None:
        if self._write_conn is None:
            return  # the session, and with it the table, is gone already
        try:
            self._write_statement(
                "dropping a temporary table", f"DROP TEMPORARY TABLE IF EXISTS {tmp}"
            )
        except DatabaseError:
            self._drop_writer()  # ending the session drops it

    def delete_keys(
        self, table: str, key: str, ids: Sequence[int], *, guard: WriteGuard | None = None
    ) -> int:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0
        t, k = self.quote(table), self.quote(key)
        deleted = 0
        size = min(_IN_LIST, self.capabilities.max_bind_parameters)
        with self._write_transaction(f"deleting rows of table {table!r}") as cur:
            if guard is not None:
                kept = self._guarded(cur, t, k, unique, guard)
                unique = [i for i in unique if i in kept]
            for part in chunked(unique, size):
                marks = ", ".join(["\0"] * len(part))
                cur.execute(*self._bound(f"DELETE FROM {t} WHERE {k} IN ({marks})", part))  # noqa: S608
                deleted += cur.rowcount
        return deleted

    def insert_with_new_keys(
        self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """AUTO_INCREMENT assigns the keys. MariaDB 10.5+ hands each back (``INSERT ...
        RETURNING``, in insertion order). Elsewhere each multi-row INSERT is followed by a read
        of its keys, from LAST_INSERT_ID() (its first) up, in a REPEATABLE READ transaction
        started from a consistent snapshot: whatever innodb_autoinc_lock_mode interleaves, a
        key allocated while this runs belongs to a row the snapshot does not show, and every
        row it shows from elsewhere got its key before this statement's first (MyISAM tables
        lock for the whole statement, so their keys are consecutive anyway)."""
        check_new_rows(table, columns, key, rows)
        if not rows:
            return []
        doing = f"inserting rows into table {table!r}"
        self._check_auto_increment(table, key, doing)
        returning = self._insert_returning(doing)
        t, k = self.quote(table), self.quote(key)
        keys: list[int] = []
        with self._write_transaction(doing, snapshot=not returning) as cur:
            for sql, params, n in self._inserts(t, columns, rows):
                if returning:
                    cur.execute(*self._bound(f"{sql} RETURNING {k}", params))
                    got = [int(r[0]) for r in cur.fetchall()]
                else:
                    cur.execute(*self._bound(sql, params))
                    cur.execute("SELECT LAST_INSERT_ID()")
                    first = int(cur.fetchall()[0][0])
                    read = f"SELECT {k} FROM {t} WHERE {k} >= \0 ORDER BY {k} LIMIT {n}"  # noqa: S608
                    cur.execute(*self._bound(read, [first]))
                    got = [int(r[0]) for r in cur.fetchall()]
                    if got[:1] != [first]:
                        got = []
                if len(got) != n or (keys and got and got[0] <= keys[-1]):
                    raise TerminalDatabaseError(
                        f"MySQL: {doing}: could not tell which keys AUTO_INCREMENT gave "
                        f"{n} inserted row(s) (found {len(got)}); nothing was written"
                    )
                keys.extend(got)
        return keys

    def _check_auto_increment(self, table: str, key: str, doing: str) -> None:
        rows = self._query(
            "SELECT EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND COLUMN_NAME = %s",
            (self.database, table, key),
            doing,
        )
        if not rows:
            raise TerminalDatabaseError(f"MySQL: {doing}: table {table!r} has no column {key!r}")
        extra = rows[0][0]
        extra = extra.decode() if isinstance(extra, bytes) else str(extra or "")
        if "auto_increment" not in extra.lower():
            raise TerminalDatabaseError(
                f"MySQL: {doing}: {table}.{key} is not AUTO_INCREMENT, so MySQL assigns it no values"
            )

    def _insert_returning(self, doing: str) -> bool:
        """Whether INSERT ... RETURNING works (MariaDB 10.5 and later)."""
        if self._returning is None:
            version = str(self._query("SELECT VERSION()", doing=doing)[0][0])
            numbers = [int(p) for p in version.split("-", 1)[0].split(".")[:2] if p.isdigit()]
            self._returning = "mariadb" in version.lower() and tuple(numbers) >= (10, 5)
        return self._returning


def _value_batches(
    rows: Sequence[Sequence[Any]], width: int, max_params: int
) -> Iterator[Sequence[Sequence[Any]]]:
    """``rows`` in runs that fit one multi-row INSERT: at most ``max_params`` values and about
    _MAX_STATEMENT_BYTES of them (a single larger row goes alone)."""
    per = max(1, max_params // max(width, 1))
    start, size = 0, 0
    for i, row in enumerate(rows):
        row_size = 8 + sum(2 * len(v) if isinstance(v, str | bytes | bytearray) else 8 for v in row)
        if i > start and (i - start >= per or size + row_size > _MAX_STATEMENT_BYTES):
            yield rows[start:i]
            start, size = i, 0
        size += row_size
    if start < len(rows):
        yield rows[start:]
