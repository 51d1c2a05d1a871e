"""Writes one transformed batch into the target, inside the caller's transaction.

New rows of a UUID-keyed entity go in with two COPYs (target rows, then their mappings);
rows whose checksum differs from the one in their mapping are staged and applied with one
UPDATE (and an INSERT for mapped rows missing from the target); unchanged rows cost
nothing. A table that keeps its key is upserted through the same stage by that key.

A COPY or a statement that fails is undone to its savepoint and the rows are split in two
and tried again, down to the single rows the target refuses: those are quarantined with
the database's reason, and the rest of the batch goes in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from isthmus import mapping, quarantine
from isthmus.copytext import escape, unescape
from isthmus.dialects.pgconn import translate
from isthmus.errors import IsthmusError, TransientDatabaseError
from isthmus.loadplan import EntityLoad
from isthmus.quarantine import Quarantined
from isthmus.transform import Batch, take
from isthmus.uuids import UUIDGenerator, uuid7_batch_prefix


class OrphanRefused(IsthmusError):
    """``on_orphan = "fail"`` and a row points at a parent that is not there."""

    exit_code = 3


@dataclass
class Outcome:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    orphans_nulled: int = 0
    new_mappings: dict[int, int] = field(default_factory=dict)  # legacy ID → UUID as an int

    def add(self, other: Outcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        self.orphans_nulled += other.orphans_nulled


class BatchWriter:
    """Writes the batches of one entity's pass; ``write`` runs inside the caller's transaction."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        load: EntityLoad,
        *,
        state_schema: str,
        generator: UUIDGenerator,
        on_orphan: str,
        fresh: bool,
        force: bool = False,
    ) -> None:
        self.conn = conn
        # rewrite mapped rows even when their checksum says unchanged (a resolution
        # puts back a row the target lost or changed on its own)
        self.force = force
        self.load = load
        self.state_schema = state_schema
        self.generator = generator
        self.on_orphan = on_orphan
        self.fresh = fresh
        self.open_quarantine = quarantine.open_keys(conn, state_schema, load.name)
        self._stage_ready = False
        target = sql.Identifier(load.target.schema, load.target.name)
        self._target = target
        self._written = [c.target for c in load.written]
        self._keys = load.target_key
        self._copy_target = sql.SQL("COPY {} ({}) FROM STDIN").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self._written))
        )
        self._stage = sql.Identifier(f"isthmus_stage_{abs(hash(load.name)) % 10**8}")
        self._copy_stage = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self._stage, sql.SQL(", ").join(map(sql.Identifier, self._written))
        )
        self._mapping_table = mapping.table(state_schema)
        names = (load.name, load.source_table, load.target.name)
        self._entity_text, self._source_text, self._target_text = (
            escape(n.encode()) for n in names
        )

    # -- the batch ----------------------------------------------------------------------------

    def write(self, batch: Batch, batch_id: str, checkpoint_id: UUID | None) -> Outcome:
        outcome = Outcome()
        bad: dict[int, Quarantined] = {}
        for i, reason in batch.unreadable.items():
            bad[i] = self._entry(batch, i, "unreadable", reason)
        for orphan in batch.orphans:
            if self.on_orphan == "fail":
                raise OrphanRefused(
                    f"entity {self.load.name}: row {self._key_text(batch, orphan.index)} has "
                    f"{orphan.column} = {orphan.value}, and no {orphan.parent} row with that "
                    'legacy id was migrated (on_orphan = "fail")'
                )
            if self.on_orphan == "null":
                outcome.orphans_nulled += 1
            elif orphan.index not in bad:
                bad[orphan.index] = self._entry(
                    batch,
                    orphan.index,
                    "orphan",
                    f"{orphan.column} = {orphan.value}: no {orphan.parent} row with legacy id "
                    f"{orphan.value} is in the target (missing from the source, or quarantined)",
                    column=orphan.column,
                )
        candidates = [i for i in range(len(batch)) if i not in bad]
        if self.load.uuid_keyed:
            written = self._write_uuid_keyed(batch, candidates, batch_id, outcome, bad)
        else:
            written = self._write_kept_key(batch, candidates, outcome, bad)
        outcome.quarantined = len(bad)
        if bad:
            quarantine.record(
                self.conn,
                self.state_schema,
                self.load.name,
                self.load.source_table,
                bad.values(),
                checkpoint_id=checkpoint_id,
            )
        if self.open_quarantine:
            healed = [
                k for k in (self._key_text(batch, i) for i in written) if k in self.open_quarantine
            ]
            quarantine.resolve_keys(self.conn, self.state_schema, self.load.name, healed)
            self.open_quarantine.difference_update(healed)
        return outcome

    # -- UUID-keyed entities ------------------------------------------------------------------

    def _write_uuid_keyed(
        self,
        batch: Batch,
        candidates: list[int],
        batch_id: str,
        outcome: Outcome,
        bad: dict[int, Quarantined],
    ) -> list[int]:
        if not candidates:
            return []
        keys = batch.keys
        existing = self._existing([keys[i] for i in candidates])
        new: list[int] = []
        changed: list[int] = []
        sums = batch.checksums or []
        for i in candidates:
            known = existing.get(keys[i])
            if known is None:
                new.append(i)
            elif known != sums[i] or self.force:
                changed.append(i)
            else:
                outcome.unchanged += 1
        new_ids = [keys[i] for i in new]
        ints = self.generator.ints(self.load.name, new_ids)
        hexes = list(map(b"%032x".__mod__, ints))
        position = {i: n for n, i in enumerate(new)} if len(new) != len(batch) else None

        def insert(part: Sequence[int]) -> None:
            if len(part) == len(new):  # all of them (usually the whole batch): no picking
                rows = None if position is None else part
                self._copy(self._copy_target, batch.lines(rows, hexes))
                self._copy_mappings(batch, part, hexes, batch_id)
                return
            where = position or {i: i for i in new}
            keys_hex = [hexes[where[i]] for i in part]
            self._copy(self._copy_target, batch.lines(part, keys_hex))
            self._copy_mappings(batch, part, keys_hex, batch_id)

        inserted = self._bisect(new, insert, batch, bad)
        outcome.inserted += len(inserted)
        if len(inserted) == len(new):
            outcome.new_mappings.update(zip(new_ids, ints, strict=True))
        else:
            where = position or {i: i for i in new}
            outcome.new_mappings.update((keys[i], ints[where[i]]) for i in inserted)
        written = list(inserted)

        mapped = self._uuid_hex([keys[i] for i in changed]) if changed else {}

        def update(part: Sequence[int]) -> None:
            self._stage_rows(batch.lines(part, [mapped[keys[i]] for i in part]))
            self._apply_stage()
            self._update_checksums(batch, part, batch_id)

        updated = self._bisect(changed, update, batch, bad)
        outcome.updated += len(updated)
        written.extend(updated)
        return written

    def _existing(self, ids: Sequence[int]) -> dict[int, bytes]:
        """Checksum of each mapped legacy ID of ``ids`` (b"" when it has none yet, as an
        imported mapping): a differential run reads this for every batch, so no UUIDs. A
        batch of consecutive keys reads their range; a sparse one (a sync's changed rows,
        scattered over the table) only its own keys."""
        low, high = min(ids), max(ids)
        params: list[object]
        if high - low < 4 * len(ids):
            where, params = sql.SQL("legacy_id BETWEEN %s AND %s"), [low, high]
        else:
            where, params = sql.SQL("legacy_id = ANY(%s)"), [mapping.Int8Array.of(ids)]
        statement = sql.SQL(
            "SELECT legacy_id, coalesce(checksum, '') FROM {} WHERE entity_type = %s AND {}"
        ).format(self._mapping_table, where)
        with mapping.cursor(self.conn) as cur:
            rows = cur.execute(statement, (self.load.name, *params), prepare=True).fetchall()
        return {legacy: checksum.encode() for legacy, checksum in rows}

    def _uuid_hex(self, ids: Sequence[int]) -> dict[int, bytes]:
        statement = sql.SQL(
            "SELECT legacy_id, replace(uuid_id::text, '-', '') FROM {}"
            " WHERE entity_type = %s AND legacy_id = ANY(%s)"
        ).format(self._mapping_table)
        with mapping.cursor(self.conn) as cur:
            rows = cur.execute(
                statement, (self.load.name, mapping.Int8Array.of(ids)), prepare=True
            ).fetchall()
        return {legacy: text.encode() for legacy, text in rows}

    def _copy_mappings(
        self, batch: Batch, part: Sequence[int], keys_hex: list[bytes], batch_id: str
    ) -> None:
        """The mapping rows of ``part`` (whose new UUIDs are ``keys_hex``), joined in C.

        Their own primary key counts up from a fresh uuid7 prefix, in legacy-ID order, so all
        three indexes of the mapping table take the batch at their right edge.
        """
        prefix = uuid7_batch_prefix().encode()
        ids = [b"%s%08x" % (prefix, n) for n in range(len(part))]
        legacy = take(batch.key_text, None if len(part) == len(batch) else part)
        sums = batch.checksums
        checksums = [sums[i] for i in part] if sums is not None else [b"\\N"] * len(part)
        middle = b"\t".join((escape(batch_id.encode()), self._source_text, self._target_text))
        entity = repeat(self._entity_text)
        body = b"\n".join(
            map(b"\t".join, zip(ids, entity, legacy, keys_hex, repeat(middle), checksums))
        )
        statement = sql.SQL(
            "COPY {} (id, entity_type, legacy_id, uuid_id, migration_batch, source_table,"
            " target_table, checksum) FROM STDIN"
        ).format(self._mapping_table)
        self._copy(statement, body + b"\n")

    def _update_checksums(self, batch: Batch, part: Sequence[int], batch_id: str) -> None:
        statement = sql.SQL(
            """
            UPDATE {} AS m SET checksum = u.checksum, migration_batch = %s
            FROM unnest(%s::int8[], %s::text[]) AS u(legacy_id, checksum)
            WHERE m.entity_type = %s AND m.legacy_id = u.legacy_id
            """
        ).format(self._mapping_table)
        ids = [batch.keys[i] for i in part]
        checksums = batch.checksums or []
        sums = [checksums[i].decode() for i in part]
        with mapping.cursor(self.conn) as cur:  # registers the Int8Array dumper
            cur.execute(statement, (batch_id, mapping.Int8Array.of(ids), sums, self.load.name))

    # -- entities that keep their key ----------------------------------------------------------

    def _write_kept_key(
        self, batch: Batch, candidates: list[int], outcome: Outcome, bad: dict[int, Quarantined]
    ) -> list[int]:
        if self.fresh:
            written = self._bisect(
                candidates,
                lambda part: self._copy(self._copy_target, batch.lines(part)),
                batch,
                bad,
            )
            outcome.inserted += len(written)
            return written
        counts = [0, 0]

        def upsert(part: Sequence[int]) -> None:
            self._stage_rows(batch.lines(part))
            updated, inserted = self._apply_stage(only_changed=True)
            counts[0] += updated
            counts[1] += inserted

        written = self._bisect(candidates, upsert, batch, bad)
        outcome.updated += counts[0]
        outcome.inserted += counts[1]
        outcome.unchanged += len(written) - counts[0] - counts[1]
        return written

    # -- staging -------------------------------------------------------------------------------

    def _stage_rows(self, lines: bytes) -> None:
        with self.conn.cursor() as cur:
            if not self._stage_ready:
                cur.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {})").format(
                        self._stage, self._target
                    )
                )
                self._stage_ready = True
            cur.execute(sql.SQL("TRUNCATE {}").format(self._stage))
        self._copy(self._copy_stage, lines)

    def _apply_stage(self, *, only_changed: bool = False) -> tuple[int, int]:
        """UPDATE the target from the stage, INSERT what it lacks; (updated, inserted)."""
        ident = sql.Identifier
        match = sql.SQL(" AND ").join(self._key_match(k) for k in self._keys)
        values = [c for c in self._written if c not in self._keys]
        updated = 0
        with self.conn.cursor() as cur:
            if values:
                changed: sql.Composable = sql.SQL("")
                if only_changed:
                    changed = sql.SQL(" AND ({}) IS DISTINCT FROM ({})").format(
                        sql.SQL(", ").join(sql.SQL("t.{}").format(ident(c)) for c in values),
                        sql.SQL(", ").join(sql.SQL("s.{}").format(ident(c)) for c in values),
                    )
                cur.execute(
                    sql.SQL(
                        "UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE {match}{changed}"
                    ).format(
                        t=self._target,
                        s=self._stage,
                        sets=sql.SQL(", ").join(
                            sql.SQL("{c} = s.{c}").format(c=ident(c)) for c in values
                        ),
                        match=match,
                        changed=changed,
                    )
                )
                updated = cur.rowcount
            cols = sql.SQL(", ").join(map(ident, self._written))
            cur.execute(
                sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} AS s"
                    " WHERE NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {match})"
                ).format(t=self._target, s=self._stage, cols=cols, match=match)
            )
            inserted = cur.rowcount
        return updated, inserted

    def _key_match(self, key: str) -> sql.Composable:
        """``=`` where the key column cannot be NULL (an index lookup per staged row; IS NOT
        DISTINCT FROM would make PostgreSQL scan the whole target table for a few rows)."""
        column = self.load.target.column(key)
        op = "=" if column is not None and not column.nullable else "IS NOT DISTINCT FROM"
        return sql.SQL("t.{k} {op} s.{k}").format(k=sql.Identifier(key), op=sql.SQL(op))

    # -- shared --------------------------------------------------------------------------------

    def _copy(self, statement: sql.Composed, data: bytes) -> None:
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(data)

    def _bisect(
        self,
        items: list[int],
        attempt: Callable[[Sequence[int]], None],
        batch: Batch,
        bad: dict[int, Quarantined],
    ) -> list[int]:
        """Run ``attempt`` on ``items``, halving around failures; returns the rows that went in."""
        done: list[int] = []
        pending = [items] if items else []
        while pending:
            part = pending.pop()
            try:
                with self.conn.transaction():
                    attempt(part)
            except psycopg.Error as exc:
                # the rolled-back savepoint may have taken the stage's CREATE TEMP TABLE with it
                self._stage_ready = False
                error = translate(exc)
                if isinstance(error, TransientDatabaseError) or self.conn.broken:
                    raise error from exc
                if len(part) == 1:
                    column = self._refused_column(exc, batch.rows[part[0]])
                    bad[part[0]] = self._entry(
                        batch, part[0], "rejected", _reason(exc, column), column=column
                    )
                else:
                    mid = len(part) // 2
                    pending.append(part[mid:])
                    pending.append(part[:mid])
                continue
            done.extend(part)
        done.sort()
        return done

    def _refused_column(self, exc: psycopg.Error, row: Sequence[bytes]) -> str | None:
        """The source column of the value the target refused, when the error tells."""
        diag = exc.diag
        by_target = {c.target: c.source for c in self.load.columns}
        if diag.column_name:
            return by_target.get(diag.column_name, diag.column_name)
        found = _CONTEXT_COLUMN.search(diag.context or "")
        if found:
            return by_target.get(found[1], found[1])
        if diag.sqlstate == "22021":  # a NUL byte or invalid UTF-8: COPY names no column
            for col, f in zip(self.load.columns, row, strict=False):
                if b"\x00" in f or not _is_utf8(f):
                    return col.source
        return None

    def _key_text(self, batch: Batch, i: int) -> str:
        key = batch.keys[i]
        if key is None:
            return unescape(batch.rows[i][0]).decode("utf-8", "replace")
        if isinstance(key, tuple):
            return key[0] if len(key) == 1 else json.dumps(list(key), ensure_ascii=False)
        return str(key)

    def _entry(
        self, batch: Batch, i: int, kind: str, reason: str, *, column: str | None = None
    ) -> Quarantined:
        values = [
            None if f == b"\\N" else unescape(f).decode("utf-8", "replace") for f in batch.rows[i]
        ]
        return Quarantined(
            legacy_key=self._key_text(batch, i),
            kind=kind,
            reason=reason,
            column=column,
            row=quarantine.row_data(self.load.read_columns, values),
        )


# COPY's error context names the field it was parsing: 'COPY t, line 1, column a: "70000"'.
_CONTEXT_COLUMN = re.compile(r"^COPY .*?, line \d+, column (.+?): ")


def _is_utf8(field: bytes) -> bool:
    try:
        field.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reason(exc: psycopg.Error, column: str | None = None) -> str:
    diag = exc.diag
    text = (diag.message_primary or str(exc).splitlines()[0] or type(exc).__name__).strip()
    if diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    column = column or diag.column_name
    if column:
        text = f"column {column}: {text}"
    return text
