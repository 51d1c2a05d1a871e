"""``target_wins``: the legacy source takes the target's version of a differential's records.

Target rows are read with their references turned back into legacy parent IDs (through the
map), converted to the source column types (:mod:`isthmus.writeback`) and written into the
legacy table by its own key; rows the target no longer has are deleted from the source;
rows created in the target get a key from the source's own generator and a mapping. The
mappings' checksums become those of the versions written (the target's, which the source now
holds too), so the next diff sees both sides equal to their base, and a change the legacy
application makes to a row at the same moment is still seen as the source's.

In a sync (``unchanged_only``) the source's rows are written or deleted only where they are
still what their mapping's base says, checked inside the source's write transaction (a
compare-and-set): a row the legacy application changed since the comparison is left alone,
for the next run to see changed on both sides and apply the job's rule to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import sql

from isthmus import canonical, mapping
from isthmus.canonical import NULL
from isthmus.copytext import copy_lines
from isthmus.dialects.pgconn import translated
from isthmus.diff_source import sums_by_ids
from isthmus.diff_target import Scope, TargetSide
from isthmus.loadplan import EntityLoad
from isthmus.writeback import source_rows

if TYPE_CHECKING:
    from isthmus.resolve import Resolution
    from isthmus.workspace import Workspace


def target_wins(
    ws: Workspace,
    conn: psycopg.Connection[Any],
    load: EntityLoad,
    ids: list[int],
    *,
    created: list[UUID],
    result: Resolution,
    unchanged_only: bool = False,
) -> None:
    from isthmus.diff import gone_condition

    side = TargetSide(load, ws.state_schema, gone_condition(load))
    source = ws.source
    entity = load.planned.entity
    key = load.key_columns[0]
    names = [key] + [c.source for c in load.checksummed]
    columns = [entity.source.column(n) for n in names]
    if any(c is None for c in columns):
        raise RuntimeError(f"entity {load.name}: a compared column is not in the source table")
    described = [c for c in columns if c is not None]

    present = _target_rows(conn, side, Scope(ids=ids)) if ids else []
    usable = [r for r in present if not _unmapped(r, f"legacy id {r[0].decode()}", result)]
    guard = _Unchanged(ws, conn, load, ids) if unchanged_only else None
    written = {int(r[0]): _checksum(side, r[1:]) for r in usable}
    if usable:
        rows = source_rows(described, usable, source.capabilities)
        result.written += source.upsert_rows(load.source_table, names, key, rows, guard=guard)
    found = {int(r[0]) for r in present}
    gone = sorted(set(ids) - found)
    if gone:
        result.deleted += source.delete_keys(load.source_table, key, gone, guard=guard)
        mapping.forget(conn, ws.state_schema, load.name, guard.kept(gone) if guard else gone)
    if guard is not None:  # rows left alone keep their base: the next run sees both changes
        found = set(guard.kept(sorted(found)))

    new_ids: list[int] = []
    if created:
        rows_created = _created_rows(conn, side, created)
        keep = [(u, r) for u, r in rows_created if not _unmapped(r, f"target row {u}", result)]
        if keep:
            values = source_rows(described[1:], [r for _, r in keep], source.capabilities)
            new_ids = source.insert_with_new_keys(load.source_table, names[1:], key, values)
            _add_mappings(conn, ws.state_schema, load, new_ids, [u for u, _ in keep])
            written.update(zip(new_ids, (_checksum(side, r) for _, r in keep), strict=True))
            result.written += len(new_ids)
            result.notes.append(
                f"{len(new_ids)} row(s) created in the target now have legacy keys "
                f"{new_ids[0]}…{new_ids[-1]}"
            )
    touched = sorted(found | set(new_ids))
    # the checksums of what was written, not the source re-read: it may have changed since
    sums = [(i, written[i]) for i in touched if i in written]
    unwritten = [i for i in touched if i not in written]  # references with no legacy id yet
    sums.extend((i, s.decode()) for i, s in sums_by_ids(source, load, unwritten))
    if sums:
        mapping.update_checksums(conn, ws.state_schema, load.name, sums)
    conn.commit()


def _checksum(side: TargetSide, fields: list[bytes]) -> str:
    """The canonical checksum of a target row's compared fields (as ``_target_rows`` and
    ``_created_rows`` read them): the base of the version written into the source."""
    canon = [f(v) for f, v in zip(side.normalizers, fields, strict=True)]
    return canonical.checksum(canonical.checksum_line(canon))


class _Unchanged:
    """The compare-and-set of a sync's writes into the source (a ``WriteGuard``): of the keys
    asked about, those whose source row is still its mapping's base. Asked by the dialect
    inside its write transaction, with no other writer able to change those rows."""

    def __init__(
        self, ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad, ids: list[int]
    ) -> None:
        self.source, self.load = ws.source, load
        query = sql.SQL(
            "SELECT legacy_id, checksum FROM {} WHERE entity_type = %s AND legacy_id = ANY(%s)"
        ).format(mapping.table(ws.state_schema))
        with translated(), mapping.cursor(conn) as cur:
            found = cur.execute(query, (load.name, mapping.Int8Array.of(ids))).fetchall()
        self.base: dict[int, str | None] = {int(i): s for i, s in found}
        self.allowed: set[int] = set()

    def __call__(self, ids: list[int]) -> set[int]:
        now = {i: s.decode() for i, s in sums_by_ids(self.source, self.load, ids)}
        kept = {i for i in ids if i in now and now[i] == self.base.get(i)}
        self.allowed |= kept
        return kept

    def kept(self, ids: list[int]) -> list[int]:
        return [i for i in ids if i in self.allowed]


def _target_rows(
    conn: psycopg.Connection[Any], side: TargetSide, scope: Scope
) -> list[list[bytes]]:
    """[legacy ID, compared columns…] as COPY fields, of the mapped target rows present."""
    gone = sql.SQL("") if side.gone is None else sql.SQL(" AND NOT {}").format(side.gone)
    query = sql.SQL(
        "COPY (SELECT m.legacy_id, {items} FROM {m} AS m JOIN {t} AS t ON t.{k} = m.uuid_id"
        " {joins} WHERE m.entity_type = {e}{where}{gone} ORDER BY m.legacy_id) TO STDOUT"
    ).format(
        items=sql.SQL(", ").join(side.items),
        m=mapping.table(side.state_schema),
        t=side.target,
        k=side.key,
        joins=sql.SQL(" ").join(side.joins),
        e=sql.Literal(side.load.name),
        where=scope.where(sql.SQL("m.legacy_id")),
        gone=gone,
    )
    with translated(), conn.cursor() as cur, cur.copy(query) as copy:
        return [line.split(b"\t") for line in copy_lines(copy)]


def _created_rows(
    conn: psycopg.Connection[Any], side: TargetSide, keys: list[UUID]
) -> list[tuple[UUID, list[bytes]]]:
    query = sql.SQL(
        "COPY (SELECT t.{k}, {items} FROM {t} AS t {joins} WHERE t.{k} = ANY({ids}::uuid[])"
        " ORDER BY t.{k}) TO STDOUT"
    ).format(
        k=side.key,
        items=sql.SQL(", ").join(side.items),
        t=side.target,
        joins=sql.SQL(" ").join(side.joins),
        ids=sql.Literal("{" + ",".join(str(k) for k in keys) + "}"),
    )
    with translated(), conn.cursor() as cur, cur.copy(query) as copy:
        lines = [line.split(b"\t") for line in copy_lines(copy)]
    return [(UUID(f[0].decode()), f[1:]) for f in lines]


def _unmapped(row: list[bytes], label: str, result: Resolution) -> bool:
    """A reference to a target row that has no legacy ID: the source cannot hold it yet, so
    the row is left out and the differential stays open."""
    for field in row:
        if field != NULL and field.startswith(b"unmapped:"):
            result.left_open += 1
            result.notes.append(
                f"{label}: not applied, it references a target row with no legacy id "
                f"({field.decode()[len('unmapped:') :]}); resolve that row's entity first"
            )
            return True
    return False


def _add_mappings(
    conn: psycopg.Connection[Any],
    schema: str,
    load: EntityLoad,
    legacy_ids: list[int],
    uuids: list[UUID],
) -> None:
    statement = sql.SQL(
        "INSERT INTO {} (id, entity_type, legacy_id, uuid_id, migration_batch, validation_status,"
        " source_table, target_table, metadata)"
        " SELECT gen_random_uuid(), %s, l, u, 'resolve', 'pending', %s, %s,"
        ' \'{{"source": "target_wins"}}\'::jsonb FROM unnest(%s::int8[], %s::uuid[]) AS x(l, u)'
    ).format(mapping.table(schema))
    with translated(), mapping.cursor(conn) as cur:
        cur.execute(
            statement,
            (
                load.name,
                load.source_table,
                load.target.name,
                mapping.Int8Array.of(legacy_ids),
                uuids,
            ),
        )
