"""PostgreSQL write-back (``target_wins``, bidirectional sync): the part of the source
dialect that writes into the legacy tables."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from isthmus.dialects.base import SourceDialect, WriteGuard, check_new_rows, write_key_position
from isthmus.errors import DatabaseError, TerminalDatabaseError, TransientDatabaseError

_write_names = itertools.count(1)
_DELETE_BATCH = 50_000  # keys per DELETE ... = ANY(array): one parameter, any length


class PostgreSQLWriting(SourceDialect):
    """The writing half of the PostgreSQL source dialect (``postgresql.Source`` is all of it)."""

    schema: str
    _write_conn: psycopg.Connection[Any] | None

    def _open(
        self, *, streaming: bool, copy_text: bool = False, writing: bool = False
    ) -> psycopg.Connection[Any]:
        raise NotImplementedError

    def _translate(self, exc: psycopg.Error, doing: str) -> DatabaseError:
        raise NotImplementedError

    # -- writing back ------------------------------------------------------------------------
    # On a writable connection of its own (TimeZone UTC), one transaction per call. Rows are
    # COPYed into a temporary table made from the table's own columns (so each value is parsed
    # by its column's type, as a plain INSERT would), then applied with one UPDATE ... FROM and
    # one INSERT ... SELECT (OVERRIDING SYSTEM VALUE: an identity key takes the given value).

    def _writer(self) -> psycopg.Connection[Any]:
        if self._write_conn is None or self._write_conn.closed:
            self._write_conn = self._open(streaming=False, copy_text=True, writing=True)
        return self._write_conn

    def _drop_writer(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            conn.close()

    @contextmanager
    def _write_transaction(self, doing: str) -> Iterator[psycopg.Cursor[Any]]:
        conn = self._writer()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            error = self._translate(exc, doing)
            if isinstance(error, TransientDatabaseError) or conn.broken:
                self._drop_writer()
            raise error from exc

    def _qualified(self, table: str) -> str:
        """``"schema"."table"``: what INSERT takes (it has no ONLY)."""
        return f"{self.quote(self.schema)}.{self.quote(table)}"

    def _stage(
        self, cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Any
    ) -> str:
        """A temporary table (dropped at commit) of ``columns`` typed as in ``table``, holding
        ``rows``; its quoted name."""
        tmp = self.quote(f"isthmus_write_{next(_write_names)}")
        cols = ", ".join(self.quote(c) for c in columns)
        cur.execute(
            f"CREATE TEMP TABLE {tmp} ON COMMIT DROP AS "  # noqa: S608
            f"SELECT {cols} FROM {self.relation(table)} WITH NO DATA"
        )
        with cur.copy(f"COPY {tmp} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return tmp

    def _guarded(
        self, cur: psycopg.Cursor[Any], table: str, key: str, ids: list[int], guard: WriteGuard
    ) -> set[int]:
        """The keys ``guard`` keeps, asked once the rows of ``ids`` are locked by this
        transaction against every other writer."""
        relation = self.relation(table).replace("%", "%%")
        k = self.quote(key).replace("%", "%%")
        cur.execute(f"SELECT FROM {relation} WHERE {k} = ANY(%s) FOR UPDATE", (ids,))
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
        relation = self.relation(table)
        k = self.quote(key)
        quoted = [self.quote(c) for c in columns]
        with self._write_transaction(f"writing rows to table {table!r}") as cur:
            if guard is not None:
                kept = self._guarded(cur, table, key, [row[at] for row in rows], guard)
                rows = [row for row in rows if row[at] in kept]
            tmp = self._stage(cur, table, columns, rows)
            sets = ", ".join(f"{q} = s.{q}" for q in quoted if q != k)
            if sets:
                cur.execute(
                    f"UPDATE {relation} AS t SET {sets} FROM {tmp} AS s WHERE t.{k} = s.{k}"  # noqa: S608
                )
            cols = ", ".join(quoted)
            cur.execute(
                f"INSERT INTO {self._qualified(table)} ({cols}) OVERRIDING SYSTEM VALUE "  # noqa: S608
                f"SELECT {', '.join('s.' + q for q in quoted)} FROM {tmp} AS s "
                f"WHERE NOT EXISTS (SELECT FROM {relation} AS t WHERE t.{k} = s.{k})"
            )
            if cur.rowcount:
                self._advance_sequence(cur, table, key)
        return len(rows)

    def _advance_sequence(self, cur: psycopg.Cursor[Any], table: str, key: str) -> None:
        """Keys written explicitly may be beyond the key's sequence (serial or identity): move
        it past them, so that the legacy application's next insert does not collide."""
        seq = self._key_sequence(cur, table, key)
        if seq is None:
            return
        k = self.quote(key)
        literal = "'" + seq.replace("'", "''") + "'"
        cur.execute(
            f"SELECT setval({literal}::regclass, m) FROM (SELECT max({k}) AS m FROM {self.relation(table)}) AS x "  # noqa: S608
            f"WHERE m > (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {seq})"
        )

    def _key_sequence(self, cur: psycopg.Cursor[Any], table: str, key: str) -> str | None:
        """The sequence of a serial or identity key column (its quoted, qualified name)."""
        row = cur.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", (self._qualified(table), key)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def delete_keys(
        self, table: str, key: str, ids: Sequence[int], *, guard: WriteGuard | None = None
    ) -> int:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0
        relation = self.relation(table).replace("%", "%%")
        k = self.quote(key).replace("%", "%%")
        deleted = 0
        with self._write_transaction(f"deleting rows of table {table!r}") as cur:
            if guard is not None:
                kept = self._guarded(cur, table, key, unique, guard)
                unique = [i for i in unique if i in kept]
            for start in range(0, len(unique), _DELETE_BATCH):
                part = unique[start : start + _DELETE_BATCH]
                cur.execute(f"DELETE FROM {relation} WHERE {k} = ANY(%s)", (part,))  # noqa: S608
                deleted += cur.rowcount
        return deleted

    def insert_with_new_keys(
        self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """The keys are drawn first from the key's own generator (its serial or identity
        sequence, else its default expression), one per row, and the rows then inserted with
        them in ascending order: every row's key is known, whatever order an INSERT ... SELECT
        would evaluate its defaults in."""
        check_new_rows(table, columns, key, rows)
        if not rows:
            return []
        doing = f"inserting rows into table {table!r}"
        with self._write_transaction(doing) as cur:
            keys = self._draw_keys(cur, table, key, len(rows), doing)
            quoted = [self.quote(c) for c in (key, *columns)]
            tmp = self._stage(
                cur, table, [key, *columns], ([k, *row] for k, row in zip(keys, rows, strict=True))
            )
            cols = ", ".join(quoted)
            cur.execute(
                f"INSERT INTO {self._qualified(table)} ({cols}) OVERRIDING SYSTEM VALUE "  # noqa: S608
                f"SELECT {cols} FROM {tmp}"
            )
        return keys

    def _draw_keys(
        self, cur: psycopg.Cursor[Any], table: str, key: str, n: int, doing: str
    ) -> list[int]:
        seq = self._key_sequence(cur, table, key)
        if seq is not None:
            cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (seq, n))
        else:
            row = cur.execute(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                "JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped",
                (self._qualified(table), key),
            ).fetchone()
            if row is None or row[0] is None:
                raise TerminalDatabaseError(
                    f"PostgreSQL: {doing}: {table}.{key} has no sequence and no default, so "
                    "PostgreSQL assigns it no values"
                )
            cur.execute(f"SELECT {row[0]} FROM generate_series(1, {int(n)})")  # noqa: S608
        keys = sorted(int(r[0]) for r in cur.fetchall())
        if len(set(keys)) != n:
            raise TerminalDatabaseError(
                f"PostgreSQL: {doing}: the default of {table}.{key} gave the same key twice"
            )
        return keys
