"""The legacy-ID ↔ UUID map in the target database, read and written in bulk.

Every function takes a psycopg 3 connection and never commits: the caller owns
the transaction, so that a batch's target rows, its mappings and its checkpoint
commit together (an autocommit connection works too; each statement then
commits by itself). Nothing here runs one query per row: ``resolve`` sends one
``= ANY(bigint[])`` query per :data:`RESOLVE_CHUNK` IDs, ``assign`` a fixed
handful of statements per call (resolve, stage with binary COPY, one INSERT).

Existing mappings are authoritative: ``assign`` returns the UUID already mapped
to a legacy ID and generates only for unmapped IDs. Two processes assigning the
same IDs at once agree: the later insert waits on the unique index for the
earlier transaction, then skips what it lost and reads back the winners.

Related modules: :mod:`isthmus.uuids` (strategies), :mod:`isthmus.mapping_cache`
(the bounded in-memory cache), :mod:`isthmus.mapping_io` (CSV import/export) and
:mod:`isthmus.mapping_conflicts` (the import's checks).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.rows import tuple_row

from isthmus.dialects.pgconn import translated
from isthmus.errors import MappingConflict
from isthmus.uuids import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    UUIDGenerator,
    make_generator,
    uuid7_batch_prefix,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "RESOLVE_CHUNK",
    "STRATEGIES",
    "TABLE",
    "Int8Array",
    "MappingRecord",
    "UUIDGenerator",
    "analyze",
    "assign",
    "forget",
    "lookup",
    "lookup_record",
    "make_generator",
    "resolve",
    "reverse_lookup",
    "update_checksums",
]

TABLE = "legacy_id_mappings"
# IDs per resolve query: large enough that a 10k batch is one round trip, small
# enough that the array parameter and the result stay a few MB.
RESOLVE_CHUNK = 100_000
_STAGE = "isthmus_assign_stage"
_INT8_OID = 20

Connection = psycopg.Connection[Any]


def table(schema: str) -> sql.Composable:
    """``"schema".legacy_id_mappings``, quoted."""
    return sql.Identifier(schema, TABLE)


class Int8Array(bytes):
    """A bigint[] parameter already in PostgreSQL's binary array format.

    psycopg dumps a list of 100k ints in about 70 ms (a type check and a regex
    per item); ``struct`` packs it in 7.
    """

    @classmethod
    def of(cls, values: Sequence[int]) -> Int8Array:
        n = len(values)
        if n == 0:
            return cls(struct.pack(">iii", 0, 0, _INT8_OID))
        try:
            # header: 1 dimension, no NULLs, element type; then (length, lower bound);
            # then each item as (4-byte length 8, 8-byte value)
            return cls(
                struct.pack(
                    f">5i{'iq' * n}",
                    1,
                    0,
                    _INT8_OID,
                    n,
                    1,
                    *chain.from_iterable(zip(repeat(8), values)),
                )
            )
        except struct.error as exc:
            bad = next(
                (v for v in values if not (isinstance(v, int) and -(2**63) <= v < 2**63)), None
            )
            raise ValueError(f"legacy id {bad!r} is not a bigint") from exc


class _Int8ArrayDumper(Dumper):
    oid = psycopg.postgres.types["int8"].array_oid
    format = Format.BINARY

    def dump(self, obj: Buffer) -> Buffer:
        return obj


def cursor(conn: Connection, *, binary: bool = False) -> psycopg.Cursor[tuple[Any, ...]]:
    """A tuple-row cursor that sends :class:`Int8Array` parameters as they are."""
    cur = conn.cursor(binary=binary, row_factory=tuple_row)
    cur.adapters.register_dumper(Int8Array, _Int8ArrayDumper)
    return cur


def resolve(
    conn: Connection, schema: str, entity: str, legacy_ids: Iterable[int]
) -> dict[int, UUID]:
    """The mapped UUID of each legacy ID that has one (unmapped IDs are absent)."""
    wanted = list(dict.fromkeys(legacy_ids))
    found: dict[int, UUID] = {}
    if not wanted:
        return found
    # The BETWEEN repeats what ANY says, for the planner: with statistics taken
    # before an entity grew (mid-migration), it may scan all of the entity's
    # index entries and filter; the range bounds that scan to the batch's keys.
    query = sql.SQL(
        "SELECT legacy_id, uuid_id FROM {} WHERE entity_type = %s"
        " AND legacy_id = ANY(%s::int8[]) AND legacy_id BETWEEN %s AND %s"
    ).format(table(schema))
    with translated(), cursor(conn, binary=True) as cur:
        for start in range(0, len(wanted), RESOLVE_CHUNK):
            chunk = wanted[start : start + RESOLVE_CHUNK]
            cur.execute(query, (entity, Int8Array.of(chunk), min(chunk), max(chunk)), prepare=True)
            found.update(cur.fetchall())
    return found


def assign(
    conn: Connection,
    schema: str,
    entity: str,
    legacy_ids: Sequence[int],
    *,
    generator: UUIDGenerator,
    checksums: Sequence[str | None] | None = None,
    batch_id: str | None,
    source_table: str | None = None,
    target_table: str | None = None,
) -> list[UUID]:
    """The UUID of each legacy ID (parallel to ``legacy_ids``), creating missing mappings.

    New mappings get ``generator``'s UUIDs, ``checksums`` (parallel to
    ``legacy_ids``; only new mappings take them, see :func:`update_checksums`),
    ``migration_batch = batch_id`` and validation status ``pending``.
    Raises MappingConflict if a generated UUID is already mapped to another
    legacy ID of the entity (possible with uuid5 next to imported mappings).
    """
    if checksums is not None and len(checksums) != len(legacy_ids):
        raise ValueError(
            f"assign {entity}: {len(checksums)} checksums for {len(legacy_ids)} legacy ids"
        )
    known = resolve(conn, schema, entity, legacy_ids)
    fresh: dict[int, str | None] = {}
    for i, legacy_id in enumerate(legacy_ids):
        if legacy_id not in known and legacy_id not in fresh:
            fresh[legacy_id] = checksums[i] if checksums is not None else None
    if fresh:
        new_ids = list(fresh)
        new_uuids = generator(entity, new_ids)
        inserted = _insert_new(
            conn,
            schema,
            entity,
            zip(new_ids, new_uuids, fresh.values(), strict=True),
            batch_id=batch_id,
            source_table=source_table,
            target_table=target_table,
            strategy=generator.strategy,
        )
        if inserted == len(new_ids):
            known.update(zip(new_ids, new_uuids, strict=True))
        else:  # someone else mapped some of them first: theirs win
            winners = resolve(conn, schema, entity, new_ids)
            lost = [i for i in new_ids if i not in winners]
            if lost:
                mine = dict(zip(new_ids, new_uuids, strict=True))
                raise MappingConflict(
                    f"{entity}: {len(lost)} new UUID(s) already used by other legacy ids of "
                    f"{entity}, e.g. legacy_id {lost[0]} → {mine[lost[0]]} "
                    f"(table {schema}.{TABLE}; with uuid5, check imported mappings)"
                )
            known.update(winners)
    return [known[i] for i in legacy_ids]


def _insert_new(
    conn: Connection,
    schema: str,
    entity: str,
    rows: Iterable[tuple[int, UUID, str | None]],
    *,
    batch_id: str | None,
    source_table: str | None,
    target_table: str | None,
    strategy: str,
) -> int:
    """Stage ``rows`` with binary COPY, insert those not conflicting; returns how many went in.

    A plain INSERT first, in a savepoint: ON CONFLICT's speculative insertion
    costs some 40% more on every batch, and conflicts are rare (a concurrent
    process, or a re-run racing one). On a unique violation, the savepoint is
    undone and the same rows go in again with ON CONFLICT DO NOTHING.
    """
    stage = sql.Identifier(_STAGE)
    # The mapping's own primary key counts up from a fresh uuid7 prefix, in
    # legacy_id order: all three indexes then take the batch at their right edge
    # (with uuid7 mappings) instead of at random pages.
    insert = sql.SQL(
        """
        INSERT INTO {table} (id, entity_type, legacy_id, uuid_id, migration_batch,
                             validation_status, source_table, target_table, checksum, metadata)
        SELECT (%(prefix)s || lpad(to_hex(row_number() OVER (ORDER BY legacy_id)), 8, '0'))::uuid,
               %(entity)s, legacy_id, uuid_id, %(batch)s, 'pending', %(source)s, %(target)s,
               checksum, %(metadata)s::jsonb
        FROM {stage} ORDER BY legacy_id
        """
    ).format(table=table(schema), stage=stage)
    params = {
        "prefix": uuid7_batch_prefix(),
        "entity": entity,
        "batch": batch_id,
        "source": source_table,
        "target": target_table,
        "metadata": json.dumps({"source": "assign", "strategy": strategy}),
    }
    with translated(), cursor(conn) as cur:
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (legacy_id int8, uuid_id uuid, checksum text)"
            ).format(stage)
        )
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        with cur.copy(
            sql.SQL("COPY {} (legacy_id, uuid_id, checksum) FROM STDIN (FORMAT BINARY)").format(
                stage
            )
        ) as copy:
            copy.set_types(["int8", "uuid", "text"])
            for row in rows:
                copy.write_row(row)
        try:
            # a savepoint: the caller's transaction is open (resolve() ran first)
            with conn.transaction():
                cur.execute(insert, params)
                return cur.rowcount
        except psycopg.errors.UniqueViolation:
            cur.execute(insert + sql.SQL(" ON CONFLICT DO NOTHING"), params)
            return cur.rowcount


def update_checksums(
    conn: Connection, schema: str, entity: str, pairs: Iterable[tuple[int, str | None]]
) -> int:
    """Set the checksum of existing mappings in bulk; returns how many mappings changed.

    Legacy IDs without a mapping are ignored (``assign`` first).
    """
    items = dict(pairs)
    if not items:
        return 0
    query = sql.SQL(
        """
        UPDATE {table} AS m SET checksum = s.checksum
        FROM unnest(%s::int8[], %s::text[]) AS s(legacy_id, checksum)
        WHERE m.entity_type = %s AND m.legacy_id = s.legacy_id
          AND m.checksum IS DISTINCT FROM s.checksum
        """
    ).format(table=table(schema))
    ids, sums = list(items), list(items.values())
    changed = 0
    with translated(), cursor(conn) as cur:
        for start in range(0, len(ids), RESOLVE_CHUNK):
            end = start + RESOLVE_CHUNK
            cur.execute(query, (Int8Array.of(ids[start:end]), sums[start:end], entity))
            changed += cur.rowcount
    return changed


def forget(conn: Connection, schema: str, entity: str, legacy_ids: Sequence[int]) -> int:
    """Delete the mappings of ``legacy_ids`` (their rows are gone); how many went."""
    statement = sql.SQL("DELETE FROM {} WHERE entity_type = %s AND legacy_id = ANY(%s)")
    with translated(), cursor(conn) as cur:
        cur.execute(statement.format(table(schema)), (entity, Int8Array.of(legacy_ids)))
        return cur.rowcount


def analyze(conn: Connection, schema: str) -> None:
    """Refresh the planner's statistics of the mapping table.

    Worth calling after an entity's first few hundred thousand new mappings (a
    migration outruns autovacuum): with statistics that still count the entity
    as empty, the planner reads all of the entity's index entries for each
    resolve instead of probing the batch's IDs (measured 50-60 ms instead of
    15-45 ms per 10k at 200k mappings, growing with the entity).
    """
    with translated():
        conn.execute(sql.SQL("ANALYZE {}").format(table(schema)))


def lookup(conn: Connection, schema: str, entity: str, legacy_id: int) -> UUID | None:
    """The UUID mapped to one legacy ID, or None."""
    return resolve(conn, schema, entity, [legacy_id]).get(legacy_id)


def reverse_lookup(conn: Connection, schema: str, entity: str, uuid: UUID) -> int | None:
    """The legacy ID mapped to one UUID, or None."""
    query = sql.SQL("SELECT legacy_id FROM {} WHERE entity_type = %s AND uuid_id = %s").format(
        table(schema)
    )
    with translated(), cursor(conn) as cur:
        row = cur.execute(query, (entity, uuid)).fetchone()
    return None if row is None else int(row[0])


@dataclass(frozen=True)
class MappingRecord:
    """One mapping row as ``mappings lookup`` shows it."""

    entity_type: str
    legacy_id: int
    uuid_id: UUID
    migration_batch: str | None
    migration_timestamp: datetime
    validation_status: str
    source_table: str | None
    target_table: str | None
    checksum: str | None
    metadata: dict[str, Any]


def lookup_record(
    conn: Connection, schema: str, entity: str, legacy_id: int
) -> MappingRecord | None:
    """The whole mapping row of one legacy ID, or None."""
    query = sql.SQL(
        "SELECT entity_type, legacy_id, uuid_id, migration_batch, migration_timestamp,"
        " validation_status::text, source_table, target_table, checksum, metadata"
        " FROM {} WHERE entity_type = %s AND legacy_id = %s"
    ).format(table(schema))
    with translated(), cursor(conn) as cur:
        row = cur.execute(query, (entity, legacy_id)).fetchone()
    return None if row is None else MappingRecord(*row)
