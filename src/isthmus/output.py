"""How results look: rich tables on a terminal, one JSON document with --json."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from isthmus.plan import Plan
from isthmus.state.schema import InitResult
from isthmus.urls import mask_secrets

console = Console()


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_secrets(record.getMessage())
        record.args = None
        return True


def configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_MaskingFilter())
    handler.setFormatter(logging.Formatter("isthmus: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        return mask_secrets(value)
    return value


def print_json(result: Any) -> None:
    print(json.dumps(to_jsonable(result), ensure_ascii=False, indent=2))


def show_init(result: InitResult) -> None:
    if result.created:
        console.print(
            f"created state schema [bold]{result.schema}[/] at revision {result.revision_after}"
        )
    elif result.upgraded:
        console.print(
            f"upgraded state schema [bold]{result.schema}[/] from {result.revision_before} to {result.revision_after}"
        )
    else:
        console.print(
            f"state schema [bold]{result.schema}[/] is up to date (revision {result.revision_after})"
        )
    if result.queue_created:
        console.print(f"created the worker queue (procrastinate) in [bold]{result.schema}[/]")


def show_plan(plan: Plan) -> None:
    table = Table(title="migration plan", title_justify="left")
    for header in ("#", "entity", "source → target", "key", "references", "second pass", "columns"):
        table.add_column(header)
    for p in plan.entities:
        e = p.entity
        refs = ", ".join(f"{c} → {parent}" for c, parent in e.references.items()) or "-"
        renamed = [f"{s}→{t}" for s, t in e.columns.items() if s != t]
        cols = f"{len(e.columns)}" + (f" ({', '.join(renamed)})" if renamed else "")
        key = f"{e.key} → {e.target_key} (uuid)" if e.key else f"{', '.join(e.key_columns)} (kept)"
        table.add_row(
            str(p.position),
            e.name,
            f"{e.source_table} → {e.target_table}",
            key,
            refs,
            ", ".join(p.deferred) or "-",
            cols,
        )
    console.print(table)
    for view in plan.views:
        console.print(f"view {view}: not copied (views are not tables)")
    for note in plan.notes:
        console.print(f"note: {note}")
    for p in plan.entities:
        for note in p.entity.notes:
            console.print(f"note: {p.name}: {note}")


def show_schema(result: Any) -> None:
    """Without --apply the SQL itself (plain, so it can be piped to a file); with it, a summary."""
    applied = result.applied
    if applied is None:
        print(result.ddl.script(), end="")
        return
    where = applied.target_schema
    if applied.created:
        console.print(
            f"created {len(applied.created)} tables in {where}: {', '.join(applied.created)}",
            markup=False,
        )
    if applied.skipped:
        console.print(
            f"skipped {len(applied.skipped)} tables that already exist (not altered):"
            f" {', '.join(applied.skipped)}",
            markup=False,
        )
    console.print(
        f"{len(applied.pending)} keys, indexes and foreign keys wait in pending_ddl until their tables are loaded",
        markup=False,
    )
    for name in applied.clashing:
        console.print(
            f"warning: pending_ddl already holds {name!r} for another statement; not parked",
            markup=False,
        )
    for table in result.ddl.tables:
        if table.target_table in applied.created:
            for note in table.notes:
                console.print(f"note: {table.entity}: {note}", markup=False, highlight=False)


def show_migration(result: Any) -> None:
    """Per entity: rows read, inserted, updated, unchanged, quarantined, seconds, rows/s."""
    table = Table(title="migration", title_justify="left")
    table.add_column("entity", no_wrap=True)
    for name in ("read", "new", "changed", "same", "quarantined", "s", "rows/s"):
        table.add_column(name, justify="right", no_wrap=True)
    for e in result.entities:
        d = e.to_dict()
        label = e.entity if e.chunk is None else f"{e.entity} {e.chunk[0]}:{e.chunk[1]}"
        table.add_row(
            label if e.status in ("completed", "failed") else f"{label} ({e.status})",
            f"{d['rows_read']:,}",
            f"{d['inserted']:,}",
            f"{d['updated']:,}",
            f"{d['unchanged']:,}",
            f"{d['quarantined']:,}",
            f"{d['seconds']:.1f}",
            f"{d['rows_per_second']:,.0f}",
        )
    console.print(table)
    total = result.to_dict()
    moved = sum(e.outcome.inserted + e.outcome.updated for e in result.entities)
    if moved == 0 and total["rows_read"]:
        console.print("nothing new or changed in the source since the last run", markup=False)
    console.print(
        f"{total['rows_read']:,} rows read in {total['seconds']:.1f}s"
        f" ({total['rows_per_second']:,.0f} rows/s); {moved:,} written",
        markup=False,
    )
    failed = [item for item in result.pending_ddl if item.get("error")]
    if result.pending_ddl:
        console.print(
            f"deferred keys, indexes and foreign keys: {len(result.pending_ddl) - len(failed)}"
            f" applied, {len(failed)} failed",
            markup=False,
        )
    for item in failed:
        console.print(
            f"failed: {item.get('kind')} {item.get('name')}: {item.get('error')}", markup=False
        )
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if result.open_quarantine:
        console.print(
            f"{result.open_quarantine:,} row(s) quarantined: see `isthmus quarantine list`",
            markup=False,
        )


def show_quarantine(entries: list[Any]) -> None:
    if not entries:
        console.print("no quarantined rows", markup=False)
        return
    table = Table(title="quarantined rows")
    for name in ("entity", "legacy key", "kind", "column", "reason", "attempts"):
        table.add_column(name)
    for e in entries:
        table.add_row(
            e.entity_type, e.legacy_key, e.kind, e.column_name or "", e.reason, str(e.attempts)
        )
    console.print(table)


def step(message: str) -> None:
    """A progress line for long work, on stderr, only on a terminal."""
    if console.is_terminal:
        console.print(f"[dim]…[/] {message}", highlight=False)


def show_demo(result: Any) -> None:
    table = Table(title="legacy database (SQLite)", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in result.legacy_rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    show_init(result.init)
    show_plan(result.plan)
    console.print("\nfirst migration:", style="bold")
    show_migration(result.migration)
    changes = result.changes
    console.print(
        f"\nthe legacy side changed meanwhile: {changes['updated']} rows updated,"
        f" {changes['inserted']} inserted",
        markup=False,
    )
    console.print("differential migration:", style="bold")
    show_migration(result.differential)
    if result.diff is not None:
        from isthmus.output_diff import show_diff

        both = result.both_changed
        console.print(
            f"\nboth sides changed: {both.get('legacy_updated', 0)} legacy rows,"
            f" {both.get('target_updated', 0)} target rows updated,"
            f" {both.get('target_inserted', 0)} inserted in the target",
            markup=False,
        )
        show_diff(result.diff)
    if result.sync is not None:
        from isthmus.output_jobs import show_run

        console.print(
            "\nbidirectional sync (job demo-sync, conflict rule source_wins):", style="bold"
        )
        show_run(result.sync)
    if result.after_sync is not None:
        left = result.after_sync.total
        console.print(
            "a diff after the sync: "
            + ("nothing differs" if not left else f"{left} differences left"),
            markup=False,
        )
    if result.validation is not None:
        from isthmus.output_validate import show_validation

        console.print("\nvalidation of the target against the legacy database:", style="bold")
        show_validation(result.validation)
    if result.report_html is not None:
        console.print(f"HTML report: {result.report_html}", markup=False)
    console.print(
        f"config written to {result.config_path}: try `isthmus --config {result.config_path}"
        " jobs show demo-sync`, `checkpoints list`, `diff` or `reports list`",
        markup=False,
    )


def show_checkpoints(rows: list[Any]) -> None:
    if not rows:
        console.print("no checkpoints yet")
        return
    table = Table(title="checkpoints", title_justify="left")
    for header in (
        "entity",
        "operation",
        "status",
        "processed",
        "total",
        "last id",
        "updated",
        "error",
    ):
        table.add_column(header)
    for cp in rows:
        chunk = cp.metadata.get("chunk")  # a key-range chunk of the entity (migrate_chunks)
        table.add_row(
            cp.entity_type if not chunk else f"{cp.entity_type} {chunk[0]}:{chunk[1]}",
            str(cp.operation_type),
            str(cp.status),
            f"{cp.records_processed:,}",
            "-" if cp.records_total is None else f"{cp.records_total:,}",
            cp.last_processed_id or "-",
            cp.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            (cp.error_message or "")[:60],
        )
    console.print(table)


def show_import(result: Any) -> None:
    console.print(
        f"imported {result.path}: {result.new:,} new mappings, {result.already_present:,} already present"
        f" ({result.lines:,} lines, {result.seconds:.1f}s, batch {result.batch})"
    )


def show_export(result: dict[str, Any]) -> None:
    console.print(f"exported {result['rows']:,} mappings to {result['path']}")


def show_mapping(record: Any) -> None:
    console.print(f"{record.entity_type} {record.legacy_id} → [bold]{record.uuid_id}[/]")
    console.print(
        f"  status {record.validation_status}, batch {record.migration_batch or '-'},"
        f" {record.source_table or '-'} → {record.target_table or '-'}, checksum {record.checksum or '-'}"
    )


def show_prune(result: Any) -> None:
    """Rows removed per table (or that would be, with --dry-run) and the cutoff."""
    verb = "would remove" if result.dry_run else "removed"
    table = Table(title=f"prune: older than {result.days} days", title_justify="left")
    table.add_column("table")
    table.add_column(verb, justify="right")
    for name, count in result.counts().items():
        table.add_row(name, "-" if count is None else f"{count:,}")
    console.print(table)
    done = "would be removed (dry run: nothing changed)" if result.dry_run else "removed"
    console.print(
        f"{result.total:,} rows {done}; cutoff {result.cutoff:%Y-%m-%d %H:%M:%S %Z}",
        markup=False,
    )
