"""``completeness_check``: is every source row in the target once, and nothing more?

Two key streams in legacy-ID order meet here, as in the diff: the source's keys, and every
mapping of the entity with whether the target row it points at exists. Keys only: no value
is read, so this is the cheap check (the values are ``data_integrity``'s). What it finds:

``missing_in_target``       a source row with no target row (no mapping, or its mapping
                            points at no row)
``extra_in_target``         a target row whose legacy row is no longer in the source
``unmapped_target_row``     a target row no mapping points at
``mapping_to_missing_row``  a mapping of a legacy row gone from the source whose target row
                            is gone too (a stale mapping)
``duplicate_mapping``       a legacy ID mapped twice, or a UUID used by two mappings (of this
                            entity or across entities: one target row for two legacy rows)

Rows the migration quarantined (bad keys, orphans) are missing for a known reason, recorded
with the row: they are reported as notes (``quarantined``), not as discrepancies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psycopg import sql

from isthmus import mapping, quarantine
from isthmus.copytext import copy_lines
from isthmus.diff import gone_condition
from isthmus.diff_classify import DELETED, MISSING
from isthmus.diff_target import TargetSide

if TYPE_CHECKING:
    import psycopg

    from isthmus.loadplan import EntityLoad
    from isthmus.validate import EntityValidation
    from isthmus.validate_check import Check

KEY_BATCH = 50_000


def check_completeness(v: EntityValidation, check: Check) -> Check:
    load, conn = v.load, v.conn
    side = TargetSide(load, v.schema, gone_condition(load))
    quarantined = quarantine.open_keys(conn, v.schema, load.name)
    conn.commit()
    check.criteria.update(
        {
            "compared": "legacy IDs of the source with the ID map and the target rows",
            "soft_deleted_rows_count_as_missing": side.gone is not None,
            "quarantined_rows": "noted, not discrepancies (see `isthmus quarantine list`)",
        }
    )
    if v.comparison is not None:
        return _from_comparison(v, check, side, quarantined)
    source_rows = 0
    mappings = 0
    examined = 0  # legacy IDs, each once
    findings = check.findings
    src = _source_keys(v, quarantined, check)
    mpd = _mappings(conn, v.schema, load, side)
    s = next(src, None)
    m = next(mpd, None)
    previous: int | None = None
    while s is not None or m is not None:
        examined += 1
        if m is not None and m[0] == previous:
            findings.add("duplicate_mapping", {"legacy_id": m[0], "uuid": m[1]})
            m = next(mpd, None)
            continue
        if m is None or (s is not None and s < m[0]):
            assert s is not None
            findings.add("missing_in_target", {"legacy_id": s, "mapped": False})
            source_rows += 1
            s = next(src, None)
            continue
        mappings += 1
        legacy_id, uuid, present = m
        previous = legacy_id
        if s is None or legacy_id < s:
            if present:
                findings.add("extra_in_target", {"legacy_id": legacy_id, "uuid": uuid})
            else:
                findings.add("mapping_to_missing_row", {"legacy_id": legacy_id, "uuid": uuid})
            m = next(mpd, None)
            continue
        source_rows += 1
        if not present:
            findings.add(
                "missing_in_target",
                {"legacy_id": legacy_id, "mapped": True, "uuid": uuid, "mapping": "no such row"},
            )
        s = next(src, None)
        m = next(mpd, None)
    conn.commit()
    unmapped, samples = side.count_unmapped(conn, check.limit)
    conn.commit()
    findings.add_many("unmapped_target_row", [{"uuid": u} for u in samples], unmapped)
    for uuid, holders in v.duplicate_uuids(load.name):
        findings.add("duplicate_mapping", {"uuid": uuid, "mapped_from": holders})
    target_rows = _count(conn, side)
    check.records_validated = examined + unmapped
    check.metadata.update(
        {
            "source_rows": source_rows + check.notes.counts.get("quarantined", 0),
            "target_rows": target_rows,
            "mappings": mappings,
        }
    )
    return check.finish()


def _from_comparison(
    v: EntityValidation, check: Check, side: TargetSide, quarantined: set[str]
) -> Check:
    """The same findings, read off the whole-row comparison the run made for data_integrity
    (every legacy ID of both sides went through it): no second pass over the keys."""
    assert v.comparison is not None
    found, conn, findings = v.comparison.found, v.conn, check.findings
    unmapped_source = found.ids[MISSING].get("source", [])
    missing = [i for i in unmapped_source if str(i) not in quarantined]
    for key in sorted(quarantined):
        check.notes.add("quarantined", {"legacy_key": key})
    gone = sorted(i for s, ids in found.ids[MISSING].items() if s != "source" for i in ids)
    extra = found.of(DELETED)
    stale = sorted(found.stale_ids)
    uuids = _uuids(
        conn,
        v.schema,
        v.load.name,
        [*gone[: check.limit], *extra[: check.limit], *stale[: check.limit]],
    )
    kinds: list[tuple[str, list[Any], int]] = [
        ("missing_in_target", [{"legacy_id": i, "mapped": False} for i in missing], len(missing)),
        (
            "missing_in_target",
            [
                {"legacy_id": i, "mapped": True, "uuid": uuids.get(i), "mapping": "no such row"}
                for i in gone[: check.limit]
            ],
            len(gone),
        ),
        ("extra_in_target", [{"legacy_id": i, "uuid": uuids.get(i)} for i in extra], len(extra)),
        (
            "mapping_to_missing_row",
            [{"legacy_id": i, "uuid": uuids.get(i)} for i in stale[: check.limit]],
            len(stale),
        ),
    ]
    for kind, samples, total in kinds:
        findings.add_many(kind, samples[: check.limit], total)
    created = found.created_in_target
    findings.add_many("unmapped_target_row", [{"uuid": u} for u in created], len(created))
    for legacy_id, held in v.duplicate_legacy_ids(v.load.name):
        findings.add("duplicate_mapping", {"legacy_id": legacy_id, "uuids": held})
    for uuid, holders in v.duplicate_uuids(v.load.name):
        findings.add("duplicate_mapping", {"uuid": uuid, "mapped_from": holders})
    mappings = _mapped_count(conn, v.schema, v.load.name)
    source_rows = v.ws.source.count(v.load.source_table)
    check.records_validated = found.compared
    check.metadata.update(
        {"source_rows": source_rows, "target_rows": _count(conn, side), "mappings": mappings}
    )
    check.criteria["method"] = "read off the data_integrity comparison of every row"
    return check.finish()


def _uuids(
    conn: psycopg.Connection[Any], schema: str, entity: str, ids: list[int]
) -> dict[int, str]:
    """The UUIDs mapped from ``ids`` (samples only: a bounded number)."""
    if not ids:
        return {}
    query = sql.SQL(
        "SELECT legacy_id, uuid_id::text FROM {} WHERE entity_type = %s AND legacy_id = ANY(%s)"
    ).format(mapping.table(schema))
    out = {int(i): str(u) for i, u in conn.execute(query, (entity, ids))}
    conn.commit()
    return out


def _mapped_count(conn: psycopg.Connection[Any], schema: str, entity: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE entity_type = %s").format(mapping.table(schema))
    row = conn.execute(query, (entity,)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _source_keys(v: EntityValidation, quarantined: set[str], check: Check) -> Iterator[int]:
    """The source's integer keys, ascending; quarantined and non-integer keys become notes."""
    key = v.load.key_columns[0]
    for rows in v.ws.source.stream(v.load.source_table, [key], [key], batch_size=KEY_BATCH):
        for (value,) in rows:
            try:
                legacy_id = int(value)
            except (TypeError, ValueError):
                legacy_id = None
            text = str(value)
            if legacy_id is None or text in quarantined or str(legacy_id) in quarantined:
                check.notes.add("quarantined", {"legacy_key": text})
                continue
            yield legacy_id


def _mappings(
    conn: psycopg.Connection[Any], schema: str, load: EntityLoad, side: TargetSide
) -> Iterator[tuple[int, str, bool]]:
    """(legacy ID, UUID, whether its target row exists) of every mapping, ascending."""
    present = sql.SQL("NOT {}").format(side.gone) if side.gone is not None else sql.SQL("true")
    query = sql.SQL(
        "COPY (SELECT m.legacy_id, m.uuid_id, t.{k} IS NOT NULL AND {present} FROM {m} AS m"
        " LEFT JOIN {t} AS t ON t.{k} = m.uuid_id WHERE m.entity_type = {e}"
        " ORDER BY m.legacy_id) TO STDOUT"
    ).format(
        k=side.key,
        present=present,
        m=mapping.table(schema),
        t=side.target,
        e=sql.Literal(load.name),
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for line in copy_lines(copy):
            legacy_id, uuid, exists = line.split(b"\t")
            yield int(legacy_id), uuid.decode(), exists == b"t"


def _count(conn: psycopg.Connection[Any], side: TargetSide) -> int:
    gone = sql.SQL("") if side.gone is None else sql.SQL(" WHERE NOT {}").format(side.gone)
    query = sql.SQL("SELECT count(*) FROM {t} AS t{gone}").format(t=side.target, gone=gone)
    row = conn.execute(query).fetchone()
    conn.commit()
    return int(row[0]) if row else 0
