"""How validations and stored reports print on a terminal (``--json`` prints ``to_dict``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table

from isthmus.output import console
from isthmus.reports import ReportList, ReportView, is_stale

_SHORT = {
    "completeness_check": "completeness",
    "data_integrity": "data",
    "relationship_integrity": "relationships",
    "performance_check": "performance",
}


def show_validation(result: Any) -> None:
    """Entity × type: pass/fail, records, discrepancies (by kind), time."""
    table = Table(title=f"validation {result.run_id}", title_justify="left")
    for name in ("entity", "type", "result", "records", "discrepancies", "found", "ms"):
        table.add_column(
            name,
            justify="right" if name in ("records", "discrepancies", "ms") else "left",
            no_wrap=name in ("type", "result"),
        )
    entity = None
    for c in result.checks:
        verdict = "[green]pass[/]" if c.passed else "[bold red]FAIL[/]"
        found = _kinds(c.findings.counts, c.notes.counts)
        table.add_row(
            "" if c.entity == entity else c.entity,
            _SHORT.get(c.validation_type, c.validation_type),
            verdict,
            "-" if c.skipped else f"{c.records_validated:,}",
            f"{c.discrepancies:,}",
            f"skipped: {c.skipped}" if c.skipped else found,
            f"{c.execution_time_ms:,}",
        )
        entity = c.entity
    console.print(table)
    failed = result.failed
    summary = (
        f"{len(failed)} of {len(result.checks)} validation(s) FAILED"
        if failed
        else f"all {len(result.checks)} validation(s) passed"
    )
    console.print(
        f"{summary} in {result.seconds:.1f}s; details: isthmus reports show {result.run_id}",
        markup=False,
    )
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)


def _kinds(counts: dict[str, int], notes: dict[str, int]) -> str:
    parts = [f"{k} {n:,}" for k, n in counts.items()]
    parts += [f"({k} {n:,}, not failing)" for k, n in notes.items()]
    return ", ".join(parts)


def show_reports(listing: ReportList) -> None:
    if not listing.reports:
        console.print("no validation reports yet (isthmus validate)", markup=False)
        return
    table = Table(title="validation reports", title_justify="left")
    for name in ("id", "run", "entity", "type", "result", "records", "discrepancies", "generated"):
        table.add_column(name, no_wrap=name in ("id", "run", "result"))
    for r in listing.reports:
        table.add_row(
            str(r.id)[:8],
            str(r.metadata.get("run_id", ""))[:8],
            str(r.metadata.get("entity", r.source_entity)),
            _SHORT.get(str(r.validation_type), str(r.validation_type)),
            _verdict(r.validation_passed, is_stale(r, listing.now)),
            f"{r.records_validated:,}",
            f"{r.discrepancies_found:,}",
            r.generated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    console.print(
        "show one: isthmus reports show ID (a unique prefix of the ID will do)", markup=False
    )


def _verdict(passed: bool, stale: bool) -> str:
    text = "[green]pass[/]" if passed else "[bold red]FAIL[/]"
    return text + (" [yellow](stale)[/]" if stale else "")


def show_report(view: ReportView) -> None:
    if view.format == "html":
        sys.stdout.write(view.html())
        return
    if view.format == "json":
        print(json.dumps(view.to_dict(), ensure_ascii=False, indent=2))
        return
    for r in view.reports:
        stale = is_stale(r, view.now)
        console.print(
            f"{r.metadata.get('entity', r.source_entity)} · {r.validation_type} · "
            f"{'pass' if r.validation_passed else 'FAIL'}{' (stale: expired ' if stale else ''}"
            f"{r.expires_at.strftime('%Y-%m-%d %H:%M') + ')' if stale else ''}",
            markup=False,
            style="bold",
        )
        console.print(
            f"  report {r.id}, {r.records_validated:,} records, "
            f"{r.discrepancies_found:,} discrepancies, {r.execution_time_ms:,} ms, "
            f"generated {r.generated_at.isoformat(timespec='seconds')}",
            markup=False,
        )
        _details("  ", r.discrepancy_details)
        notes = r.metadata.get("notes")
        if isinstance(notes, dict):
            console.print("  notes (not failing):", markup=False)
            _details("    ", notes)
    if view.stale:
        console.print("some reports are stale: run `isthmus validate` again", markup=False)


def _details(indent: str, details: Any) -> None:
    if not isinstance(details, dict):
        return
    counts = details.get("counts") or {}
    samples = details.get("samples") or {}
    for kind, n in counts.items():
        console.print(f"{indent}{kind}: {n:,}", markup=False)
        for sample in (samples.get(kind) or [])[:5]:
            console.print(
                f"{indent}  {json.dumps(sample, ensure_ascii=False)}", markup=False, highlight=False
            )
    if details.get("columns_differing"):
        console.print(
            f"{indent}columns differing: {json.dumps(details['columns_differing'])}", markup=False
        )
