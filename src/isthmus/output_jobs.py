"""How jobs, job runs and the review queue print on a terminal (``--json``: their dicts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table

from isthmus.output import console, show_checkpoints


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def show_jobs(jobs: list[Any]) -> None:
    if not jobs:
        console.print("no jobs yet (isthmus jobs create …)", markup=False)
        return
    table = Table(title="jobs", title_justify="left")
    for name in ("name", "status", "type", "direction", "conflict", "last run", "next run",
                 "synced", "success %", "avg ms"):  # fmt: skip
        table.add_column(name, no_wrap=name in ("name", "status"))
    for j in jobs:
        table.add_row(
            j.job_name,
            str(j.status),
            str(j.job_type),
            str(j.sync_direction),
            str(j.conflict_resolution),
            _when(j.last_run_at),
            _when(j.next_run_at),
            f"{j.total_records_synced:,}",
            "-" if j.success_rate is None else f"{j.success_rate}",
            "-" if j.average_duration_ms is None else f"{j.average_duration_ms:,}",
        )
    console.print(table)


def show_job(detail: Any) -> None:
    show_jobs([detail.job])
    j = detail.job
    console.print(f"entities: {', '.join(j.entities_to_sync)}", markup=False)
    cron = (j.schedule_config or {}).get("cron")
    if cron:
        console.print(f"schedule: {cron} (UTC)", markup=False)
    last = j.metadata.get("last_run")
    if isinstance(last, dict):
        console.print(
            f"last run {last.get('run_id')}: {last.get('status')}, "
            f"{last.get('records_synced', 0):,} synced, {last.get('records_failed', 0):,} failed,"
            f" {last.get('seconds', 0)} s",
            markup=False,
        )
    if detail.open_review_items:
        console.print(
            f"{detail.open_review_items:,} record(s) wait in the review queue (isthmus review list)",
            markup=False,
        )
    show_checkpoints(detail.checkpoints)


def show_job_change(job: Any) -> None:
    console.print(f"job {job.job_name}: {job.status}", markup=False)


def show_run(run: Any) -> None:
    table = Table(title=f"job {run.job} run {run.run_id}: {run.status}", title_justify="left")
    for name in ("entity", "method", "found", "to target", "to source", "deleted", "review",
                 "failed"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("entity", "method") else "right")
    for e in run.entities:
        d = e.to_dict()
        found = sum(n for sides in d["found"].values() for n in sides.values())
        flow = d["flow"]
        table.add_row(
            d["entity"],
            d["method"],
            f"{found:,}",
            f"{flow.get('to_target', 0):,}",
            f"{flow.get('to_source', 0) + flow.get('created_to_source', 0):,}",
            f"{flow.get('delete_in_target', 0) + flow.get('delete_in_source', 0):,}",
            f"{d['parked_for_review']:,}",
            f"{d['failed']:,}",
        )
    console.print(table)
    console.print(
        f"{run.records_synced:,} record(s) applied, {run.records_failed:,} failed, "
        f"{run.seconds:.2f} s"
        + (f"; next run {_when(run.next_run_at)}" if run.next_run_at else ""),
        markup=False,
    )
    if run.validation:
        v = run.validation
        verdict = "passed" if v["passed"] else f"FAILED ({', '.join(v['failed'])})"
        console.print(
            f"validation {verdict}: {v['reports']} report(s) in {v['seconds']:.1f} s; "
            f"isthmus reports show {v['run_id']}",
            markup=False,
        )
    if run.took_over:
        console.print("took over a run whose process had stopped", markup=False)
    if run.reconciled:
        console.print(
            f"{run.reconciled:,} row(s) an interrupted run had inserted into the source were "
            "mapped (not inserted again)",
            markup=False,
        )


def show_review(items: list[Any]) -> None:
    """Each waiting record with both versions side by side, differing columns marked."""
    if not items:
        console.print("the review queue is empty", markup=False)
        return
    for item in items:
        table = Table(
            title=f"{item.id}  {item.entity} #{item.legacy_id}  ({item.comparison_type}, "
            f"changed on {item.side}; job {item.job})",
            title_justify="left",
        )
        for name in ("column", "source", "target", ""):
            table.add_column(name)
        for column in item.columns:
            src = "(deleted)" if item.source is None else item.source.get(column)
            tgt = "(deleted)" if item.target is None else item.target.get(column)
            table.add_row(column, str(src), str(tgt), "≠" if src != tgt else "")
        console.print(table)
    console.print(f"{len(items)} record(s) waiting: isthmus review resolve ID --winner "
                  "source|target|skip", markup=False)  # fmt: skip
