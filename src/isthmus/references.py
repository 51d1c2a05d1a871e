"""The second pass: references inside cycles and self-references, once every row exists.

The first pass writes such columns as NULL (a row may point at one that comes later). This
pass reads the key and those columns again, translates them through the ID map, and sets
the ones that differ, batch by batch. It is idempotent, so every run simply does it again.
A reference to a row that is not in the target is an orphan, handled by ``on_orphan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import sql

from isthmus import quarantine
from isthmus.batch_writer import OrphanRefused, Outcome
from isthmus.canonical import NULL
from isthmus.loadplan import EntityLoad
from isthmus.quarantine import Quarantined
from isthmus.transform import Orphan, translate_references

if TYPE_CHECKING:
    from isthmus.migrate import _Run


def link(run: _Run, load: EntityLoad, outcome: Outcome | None = None) -> int:
    """Set the deferred reference columns of ``load``'s target rows; returns rows changed.
    Orphans set NULL (``on_orphan = "null"``) are counted in ``outcome``."""
    deferred = load.deferred
    key = load.columns[0]
    names = [c.target for c in deferred]
    stage = sql.Identifier(f"isthmus_link_{abs(hash(load.name)) % 10**8}")
    target = sql.Identifier(load.target.schema, load.target.name)
    ident = sql.Identifier
    create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({})").format(
        stage,
        sql.SQL(", ").join(sql.SQL("{} uuid").format(ident(n)) for n in [key.target, *names]),
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        stage, sql.SQL(", ").join(map(ident, [key.target, *names]))
    )
    update = sql.SQL(
        "UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE t.{k} = s.{k}"
        " AND ({tc}) IS DISTINCT FROM ({sc})"
    ).format(
        t=target,
        s=stage,
        k=ident(key.target),
        sets=sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=ident(n)) for n in names),
        tc=sql.SQL(", ").join(sql.SQL("t.{}").format(ident(n)) for n in names),
        sc=sql.SQL(", ").join(sql.SQL("s.{}").format(ident(n)) for n in names),
    )
    changed = 0
    conn = run.conn
    with conn.cursor() as cur:
        cur.execute(create)
    waiting = _waiting(run, load)  # rows quarantined by an earlier pass for a deferred orphan
    conn.commit()
    for rows in run.ws.source.stream_text(
        load.source_table,
        [key.source, *(c.source for c in deferred)],
        [key.source],
        batch_size=run.batch_size,
    ):
        columns = list(zip(*rows, strict=True))
        legacy = [key.normalizer.canonical(v) for v in columns[0]]
        ids = [int(v) for v in legacy if v != NULL]
        mine = run.resolve(load.name, ids)
        orphans: list[Orphan] = []
        translated = [
            translate_references(
                col, [col.normalizer.canonical(v) for v in columns[i + 1]], run.resolve, orphans
            )
            for i, col in enumerate(deferred)
        ]
        lines: list[bytes] = []
        present: set[int] = set()
        for i, value in enumerate(legacy):
            uuid = mine.get(int(value)) if value != NULL else None
            if uuid is None:
                continue  # the row itself is not in the target (quarantined)
            present.add(i)
            fields = [uuid, *(t[i] for t in translated)]
            lines.append(b"\t".join(fields) + b"\n")
        orphans = [o for o in orphans if o.index in present]
        if outcome is not None and run.on_orphan == "null":
            outcome.orphans_nulled += len(orphans)
        bad = _orphans(run, load, rows, orphans, legacy)
        lost = {o.index for o in orphans}
        healed = [legacy[i].decode() for i in present - lost if legacy[i].decode() in waiting]
        with conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
            with cur.copy(copy) as out:
                out.write(b"".join(lines))
            cur.execute(update)
            changed += cur.rowcount
        if bad:
            quarantine.record(
                conn, run.schema, load.name, load.source_table, bad, checkpoint_id=None
            )
        if healed:
            quarantine.resolve_keys(conn, run.schema, load.name, healed)
        conn.commit()
    return changed


def _waiting(run: _Run, load: EntityLoad) -> set[str]:
    """Legacy keys of open orphan entries on the deferred columns: once their reference
    translates, this pass resolves them (the row itself did not change, so nothing else will)."""
    statement = sql.SQL(
        "SELECT legacy_key FROM {} WHERE entity_type = %s AND NOT resolved AND kind = 'orphan'"
        " AND column_name = ANY(%s)"
    ).format(sql.Identifier(run.schema, quarantine.TABLE))
    with run.conn.cursor() as cur:
        rows = cur.execute(statement, (load.name, [c.source for c in load.deferred])).fetchall()
    return {r[0] for r in rows}


def _orphans(
    run: _Run, load: EntityLoad, rows: list[Any], orphans: list[Orphan], legacy: list[bytes]
) -> list[Quarantined]:
    if run.on_orphan == "fail" and orphans:
        o = orphans[0]
        raise OrphanRefused(
            f"entity {load.name}: row {legacy[o.index].decode()} has {o.column} = {o.value}, "
            f'and no {o.parent} row with that legacy id was migrated (on_orphan = "fail")'
        )
    if run.on_orphan == "null":
        return []
    return [
        Quarantined(
            legacy_key=legacy[o.index].decode(),
            kind="orphan",
            column=o.column,
            reason=f"{o.column} = {o.value}: no {o.parent} row with legacy id {o.value} is in "
            "the target (missing from the source, or quarantined); left NULL",
        )
        for o in orphans
    ]
