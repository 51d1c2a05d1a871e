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
