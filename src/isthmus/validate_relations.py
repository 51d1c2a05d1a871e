"""``relationship_integrity``: does every reference in the target lead where the source's does?

For each reference column (an FK to a UUID-keyed parent):

``orphan_in_target``  the target row's reference names no row of the parent's target table;
``wrong_parent``      the reference exists but is not the UUID of the *same legacy parent*
                      the source row points at (or it is NULL where the source's is set, or
                      names a parent row no mapping knows).

The second is found by the diff's comparison restricted to the key and the reference columns
(each target reference read back as its parent's legacy ID through the map): segment
checksums inside both databases, so only disagreeing segments are read.

References already broken in the legacy source (the parent row does not exist there) are
not the migration's doing: they are reported apart, as ``legacy_orphan`` notes, whatever the
migration did with them (quarantined the row, or set the reference to NULL).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from psycopg import sql

from isthmus import mapping
from isthmus.diff import DiffContext, EntityRun
from isthmus.diff_classify import CONFLICTED
from isthmus.diff_detail import field_text
from isthmus.diff_source import rows_by_ids
from isthmus.target import reflect_table

if TYPE_CHECKING:
    from isthmus.diff_target import TargetSide
    from isthmus.loadplan import ColumnLoad, EntityLoad
    from isthmus.validate import EntityValidation
    from isthmus.validate_check import Check


_CHUNK = 5_000


def references(load: EntityLoad) -> list[ColumnLoad]:
    return [c for c in load.columns if c.parent is not None and c.role in ("reference", "deferred")]


def check_relationships(v: EntityValidation, check: Check) -> Check:
    load = v.load
    refs = references(load)
    check.criteria.update(
        {
            "references": {c.source: c.parent for c in refs},
            "compared": "each target reference's parent, as its legacy ID, with the source's",
            "legacy_orphans": "noted apart: broken in the source before the migration",
        }
    )
    if not refs:
        check.skipped = "no references to UUID-keyed parents"
        return check.finish()
    legacy = _legacy_orphans(v, refs, check)
    broken = _target_orphans(v, refs, check)
    checked = 0
    if load.uuid_keyed:
        checked = _translations(v, refs, check, exclude=legacy | broken)
    else:
        check.metadata["translations"] = "kept-key entity: compared by data_integrity"
    check.records_validated = checked or v.target_rows()
    return check.finish()


def _legacy_orphans(v: EntityValidation, refs: list[ColumnLoad], check: Check) -> set[int]:
    """Legacy IDs of source rows with a reference to a parent row the source lacks."""
    load = v.load
    out: set[int] = set()
    for col in refs:
        assert col.parent is not None
        parent = v.ws.plan[col.parent].entity
        if parent.key is None:
            continue
        rows = v.ws.source.orphans(
            load.source_table, load.key_columns, col.source, parent.source_table, parent.key
        )
        for row in rows:
            key = row[: load.key_count]
            check.notes.add(
                "legacy_orphan",
                {"key": _plain(key), "column": col.source, "points_at": _plain([row[-1]])},
            )
            if load.uuid_keyed:
                try:
                    out.add(int(key[0]))
                except (TypeError, ValueError):
                    continue
    return out


def _target_orphans(v: EntityValidation, refs: list[ColumnLoad], check: Check) -> set[int]:
    """Legacy IDs (UUID-keyed entities) of target rows with a reference to no parent row."""
    load, conn = v.load, v.conn
    out: set[int] = set()
    key = [sql.Identifier(k) for k in load.target_key]
    for col in refs:
        assert col.parent is not None
        parent = v.ws.plan[col.parent].entity
        parent_table = reflect_table(conn, load.target.schema, parent.target_table)
        conn.commit()
        if parent_table is None or parent.target_key is None:
            continue
        legacy = (
            sql.SQL(
                "(SELECT m.legacy_id FROM {m} AS m WHERE m.entity_type = {e} AND m.uuid_id = t.{k})"
            ).format(m=mapping.table(v.schema), e=sql.Literal(load.name), k=key[0])
            if load.uuid_keyed
            else sql.SQL("NULL::int8")
        )
        query = sql.SQL(
            "SELECT {legacy}, concat_ws(',', {keys}), t.{c}::text FROM {t} AS t"
            " WHERE t.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} AS p"
            " WHERE p.{pk} = t.{c})"
        ).format(
            legacy=legacy,
            keys=sql.SQL(", ").join(sql.SQL("t.{}::text").format(k) for k in key),
            c=sql.Identifier(col.target),
            t=sql.Identifier(load.target.schema, load.target.name),
            p=sql.Identifier(parent_table.schema, parent_table.name),
            pk=sql.Identifier(parent.target_key),
        )
        with conn.cursor() as cur:
            for legacy_id, target_key, value in cur.execute(query):
                check.findings.add(
                    "orphan_in_target",
                    {
                        "legacy_id": legacy_id,
                        "target_key": target_key,
                        "column": col.target,
                        "points_at": value,
                        "parent": f"{parent_table.schema}.{parent_table.name}",
                    },
                )
                if legacy_id is not None:
                    out.add(int(legacy_id))
        conn.commit()
    return out


def _translations(
    v: EntityValidation, refs: list[ColumnLoad], check: Check, *, exclude: set[int]
) -> int:
    """Compare the references of every row with the source's; returns the rows looked at.
    When the run compared whole rows already, only the rows that differ are looked at again,
    reference by reference; else the comparison is made on the key and the references."""
    load = v.load
    if v.comparison is not None:
        run, found = v.comparison.run, v.comparison.found
        check.metadata["method"] = f"{run.result.method} (the data_integrity comparison)"
        wrong, samples = _differing_references(v, run.side, refs, found.of(CONFLICTED), exclude)
    else:
        restricted = replace(load, columns=(load.columns[0], *refs))
        run = EntityRun(v.ws, v.conn, restricted, None, DiffContext(), cursor=False)
        found = run.compare_every_row()
        check.metadata["method"] = run.result.method
        ids = [i for i in found.of(CONFLICTED) if i not in exclude]
        wrong, samples = _differing_references(v, run.side, refs, ids, set())
    check.findings.add_many("wrong_parent", samples[: check.limit], wrong)
    return found.compared


def _differing_references(
    v: EntityValidation, side: TargetSide, refs: list[ColumnLoad], ids: list[int], exclude: set[int]
) -> tuple[int, list[dict[str, Any]]]:
    """How many of the rows ``ids`` (not in ``exclude``) have a reference that reads as
    another legacy parent than the source's, and samples naming the column and both
    parents; both versions are read in chunks (the cost follows the differing rows)."""
    load = side.load
    positions = [(c.source, load.columns.index(c), load.checksummed.index(c)) for c in refs]
    wanted = [i for i in ids if i not in exclude]
    wrong = 0
    samples: list[dict[str, Any]] = []
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        source_rows = rows_by_ids(v.ws.source, load, part)
        target_rows = side.fields_by_ids(v.conn, part)
        v.conn.commit()
        for legacy_id in part:
            src, tgt = source_rows.get(legacy_id), target_rows.get(legacy_id)
            if src is None or tgt is None:
                continue  # changed again meanwhile, or on one side only (completeness)
            differing = [(name, src[s], tgt[t]) for name, s, t in positions if src[s] != tgt[t]]
            if not differing:
                continue
            wrong += 1
            for name, a, b in differing:
                if len(samples) < v.ws.config.validation.samples:
                    samples.append(
                        {
                            "legacy_id": legacy_id,
                            "column": name,
                            "source_parent": field_text(a),
                            "target_parent": field_text(b),
                        }
                    )
    return wrong, samples


def _plain(values: Any) -> Any:
    out = [v if isinstance(v, int | float | str) or v is None else str(v) for v in values]
    return out[0] if len(out) == 1 else out
