"""What differs inside conflicted rows: a bounded sample, column by column, both values.

Only the checksums say *that* a row differs; for the first ``limit`` conflicted rows both
versions are read and compared field by field in canonical form, so a person sees which
columns changed and how without the differential growing with the table.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

from isthmus.canonical import NULL
from isthmus.copytext import unescape
from isthmus.dialects.base import SourceDialect
from isthmus.diff_classify import CONFLICTED, Found
from isthmus.diff_source import rows_by_ids
from isthmus.diff_target import TargetSide
from isthmus.loadplan import EntityLoad


def field_text(field: bytes) -> str | None:
    return None if field == NULL else unescape(field).decode("utf-8", "replace")


def conflict_details(
    source: SourceDialect,
    conn: psycopg.Connection[Any],
    load: EntityLoad,
    side: TargetSide,
    found: Found,
    *,
    limit: int,
) -> dict[str, Any]:
    """``conflicts`` (the sample), ``columns_differing`` (counts over the sample),
    ``conflicts_sampled`` and ``conflicts_total``; empty when nothing conflicts."""
    ids = found.of(CONFLICTED)
    if not ids:
        return {}
    sample = ids[:limit]
    side_of = {i: s for s, members in found.ids[CONFLICTED].items() for i in members}
    source_rows = rows_by_ids(source, load, sample)
    target_rows = side.fields_by_ids(conn, sample)
    positions = [load.columns.index(c) for c in load.checksummed]
    conflicts = []
    counter: Counter[str] = Counter()
    for legacy_id in sample:
        src = source_rows.get(legacy_id)
        tgt = target_rows.get(legacy_id)
        if src is None or tgt is None:
            continue  # changed again while we looked
        columns: dict[str, dict[str, str | None]] = {}
        for col, position, target_field in zip(load.checksummed, positions, tgt, strict=True):
            if src[position] != target_field:
                columns[col.source] = {
                    "source": field_text(src[position]),
                    "target": field_text(target_field),
                }
                counter[col.source] += 1
        conflicts.append(
            {"legacy_id": legacy_id, "side": side_of.get(legacy_id), "columns": columns}
        )
    return {
        "conflicts": conflicts,
        "columns_differing": dict(counter.most_common()),
        "conflicts_sampled": len(conflicts),
        "conflicts_total": len(ids),
    }
