"""How differentials print on a terminal (``--json`` prints their ``to_dict`` instead)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from isthmus.output import console

_TYPES = (
    ("missing_records", "missing"),
    ("conflicted_records", "changed"),
    ("deleted_records", "deleted"),
)
_SIDES = ("source", "target", "both", "unknown")


def show_diff(result: Any) -> None:
    """A row per entity and comparison type with counts by side (who changed the row)."""
    table = Table(title="differentials", title_justify="left")
    rows = [e.to_dict() for e in result.entities]
    sides = [s for s in _SIDES if s != "unknown" or any(_has(r, s) for r in rows)]
    for name in ("entity", "method", "rows", "type", *sides, "s"):
        right = name not in ("entity", "method", "type")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for r in rows:
        head = [r["entity"], r["method"], f"{r['rows_compared']:,}"]
        seconds = f"{r['seconds']:.2f}"
        if r["skipped"]:
            table.add_row(*head, f"skipped: {r['skipped']}", *[""] * len(sides), seconds)
            continue
        kinds = [(k, t) for k, t in _TYPES if r["counts"].get(k)]
        if not kinds:
            table.add_row(*head, "same", *[""] * len(sides), seconds)
        for n, (kind, title) in enumerate(kinds):
            counts = r["counts"][kind]
            cells = [f"{counts[s]:,}" if counts.get(s) else "" for s in sides]
            table.add_row(*(head if n == 0 else ["", "", ""]), title, *cells, seconds)
    console.print(table)
    if any(_has(r, "target", "deleted_records") for r in rows):
        console.print("deleted on the target side: rows created in the target (no mapping)")
    total = result.total
    if total:
        console.print(
            f"{total:,} difference(s) stored in {result.seconds:.1f}s: resolve them with "
            "`isthmus differentials resolve ID` (see `isthmus differentials list`)",
            markup=False,
        )
    else:
        console.print(f"no differences ({result.seconds:.1f}s)", markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)


def _has(row: dict[str, Any], side: str, kind: str | None = None) -> bool:
    kinds = [kind] if kind else [k for k, _ in _TYPES]
    return any(row["counts"].get(k, {}).get(side) for k in kinds)


def show_differentials(items: list[Any]) -> None:
    """Stored differentials: id, entity, type, records, strategy, resolved."""
    table = Table(title="differentials", title_justify="left")
    for name in ("id", "entity", "type", "records", "sides", "strategy", "resolved", "created"):
        table.add_column(name, no_wrap=name in ("id", "type"))
    for d in items:
        sides = d.metadata.get("sides", {})
        text = ", ".join(f"{k} {len(v)}" for k, v in sides.items())
        created = d.metadata.get("created_in_target") or []
        if created:
            text = (text + ", " if text else "") + f"created in target {len(created)}"
        table.add_row(
            str(d.id),
            str(d.metadata.get("entity") or d.source_table),
            str(d.comparison_type),
            f"{d.record_count:,}",
            text,
            str(d.resolution_strategy),
            d.resolved_at.strftime("%Y-%m-%d %H:%M:%S") if d.resolved_at else "no",
            d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    if not items:
        console.print("no differentials", markup=False)


def show_resolutions(result: Any) -> None:
    for r in result.resolutions:
        show_resolution(r)
    if not result.resolutions:
        console.print("nothing to resolve", markup=False)
    if result.waiting_for_review:
        console.print(
            f"{result.waiting_for_review:,} differential(s) with strategy manual_review left"
            " for a person (isthmus review list, or --strategy to apply them anyway)",
            markup=False,
        )


def show_resolution(r: Any) -> None:
    if r.already_resolved:
        console.print(f"{r.differential_id}: already resolved, nothing done", markup=False)
        return
    console.print(
        f"{r.differential_id}: {r.entity} {r.comparison_type} by {r.strategy}:"
        f" {r.written:,} written, {r.deleted:,} deleted"
        + (f", {r.quarantined:,} quarantined" if r.quarantined else "")
        + (f", {r.left_open:,} left open (not resolved)" if r.left_open else ""),
        markup=False,
    )
    for note in r.notes:
        console.print(f"  {note}", markup=False)
