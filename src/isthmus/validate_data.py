"""``data_integrity``: does every target row hold the values of its source row?

The diff's comparison does the work (:mod:`isthmus.diff`): canonical checksums of every
compared column, references read as the legacy ID of the parent they point at, segment
checksums inside both databases where the source can compute them, so that only the rows of
disagreeing segments leave the servers. Nothing is stored as a differential: the verdict
goes into the report. For the rows that differ, both versions are read and compared column
by column (``value_mismatch`` samples, ``columns_differing`` counts).

Rows present on one side only are ``completeness_check``'s findings; here they are a note.

With ``[validation] sample_rows = N`` a random sample of N mapped rows is compared instead,
and the report states what the sample proves: with no mismatch, an upper bound on the share
of rows that differ at the configured confidence (binomial); with mismatches, the estimate
and its one-sided Wilson upper bound.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from psycopg import sql

from isthmus import mapping
from isthmus.diff import DiffContext, EntityRun
from isthmus.diff_classify import CONFLICTED, DELETED, MISSING, Found, classify
from isthmus.diff_detail import conflict_details
from isthmus.diff_source import sums_by_ids
from isthmus.diff_target import Scope

if TYPE_CHECKING:
    from isthmus.validate import EntityValidation
    from isthmus.validate_check import Check

COLUMN_SCAN = 10_000  # mismatched rows read column by column for ``columns_differing``
SAMPLE_CHUNK = 5_000


def check_data(v: EntityValidation, check: Check, sample_rows: int, confidence: float) -> Check:
    shared = v.comparison
    run = (
        shared.run if shared else EntityRun(v.ws, v.conn, v.load, None, DiffContext(), cursor=False)
    )
    if shared is not None:
        found = shared.found
        check.started -= shared.seconds  # the comparison was made for this check
        check.metadata["method"] = run.result.method
    elif sample_rows > 0:
        found, population = _sampled(v, run, sample_rows)
        check.metadata["method"] = "random sample"
        check.metadata["sample"] = sample_statement(
            found.compared, population, len(found.of(CONFLICTED)), confidence
        )
    else:
        found = run.compare_every_row()
        check.metadata["method"] = run.result.method
    mismatched = found.of(CONFLICTED)
    if mismatched:
        details = conflict_details(
            v.ws.source, v.conn, v.load, run.side, found, limit=min(len(mismatched), COLUMN_SCAN)
        )
        v.conn.commit()
        samples = [
            {"legacy_id": c["legacy_id"], "changed_on": c["side"], "columns": c["columns"]}
            for c in details["conflicts"][: check.limit]
        ]
        check.findings.add_many("value_mismatch", samples, len(mismatched))
        check.extra_details["columns_differing"] = details["columns_differing"]
        check.extra_details["columns_counted_over"] = details["conflicts_sampled"]
    one_side = sorted(set(found.of(MISSING)) | set(found.of(DELETED)))
    check.notes.add_many(
        "not_on_both_sides", [{"legacy_id": i} for i in one_side[: check.limit]], len(one_side)
    )
    check.records_validated = found.compared
    check.metadata["rows_equal"] = found.equal
    check.criteria.update(run.criteria())
    check.criteria["compared"] = "canonical checksums of every compared column, row by row"
    if sample_rows > 0:
        check.criteria.update({"sample_rows": sample_rows, "confidence": confidence})
    return check.finish()


def _sampled(v: EntityValidation, run: EntityRun, n: int) -> tuple[Found, int]:
    """Compare ``n`` mapped rows drawn at random; also the number of mapped rows."""
    table = mapping.table(v.schema)
    row = v.conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE entity_type = %s").format(table), (v.load.name,)
    ).fetchone()
    population = int(row[0]) if row else 0
    ids = sorted(
        int(r[0])
        for r in v.conn.execute(
            sql.SQL(
                "SELECT legacy_id FROM {} WHERE entity_type = %s ORDER BY random() LIMIT %s"
            ).format(table),
            (v.load.name, n),
        )
    )
    v.conn.commit()
    found = Found(keep_rebase=False)
    for start in range(0, len(ids), SAMPLE_CHUNK):
        part = ids[start : start + SAMPLE_CHUNK]
        mapped = run.side.mapped(v.conn, Scope(ids=part), exact=True)
        classify(sums_by_ids(v.ws.source, v.load, part), mapped, found)
    v.conn.commit()
    return found, population


def sample_statement(n: int, population: int, mismatched: int, confidence: float) -> dict[str, Any]:
    """What a random sample of ``n`` rows with ``mismatched`` differences says about all
    ``population`` rows, at ``confidence`` (one-sided)."""
    out: dict[str, Any] = {
        "rows": n,
        "population": population,
        "mismatched": mismatched,
        "confidence": confidence,
    }
    if n == 0:
        out["statement"] = "no row sampled: nothing can be said"
        return out
    if mismatched == 0:
        upper = 1 - (1 - confidence) ** (1 / n)
        out["upper_rate"] = upper
        out["statement"] = (
            f"no mismatch in {n:,} of {population:,} rows: at {confidence:.0%} confidence, "
            f"fewer than {upper:.3%} of rows differ (about {math.ceil(upper * population):,})"
        )
        return out
    rate = mismatched / n
    upper = wilson_upper(mismatched, n, confidence)
    out.update({"rate": rate, "upper_rate": upper})
    out["statement"] = (
        f"{mismatched:,} of {n:,} sampled rows differ: about {rate:.3%} of {population:,} "
        f"rows (≈{round(rate * population):,}), at most {upper:.3%} at {confidence:.0%} confidence"
    )
    return out


def wilson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided upper bound of the Wilson score interval of ``k`` successes in ``n``."""
    z = NormalDist().inv_cdf(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))
