"""Thin command line: parse, call ``isthmus.commands``, print. Nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from isthmus import (
    commands,
    output,
    output_diff,
    output_jobs,
    output_validate,
    output_worker,
    progress,
)
from isthmus.config import Config, load_config
from isthmus.errors import IsthmusError
from isthmus.urls import mask_secrets

T = TypeVar("T")


class Context:
    def __init__(self, config_path: Path | None, as_json: bool, debug: bool) -> None:
        self.config_path = config_path
        self.as_json = as_json
        self.debug = debug

    def config(self) -> Config:
        return load_config(self.config_path)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (default ./isthmus.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="isthmus")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, as_json: bool, debug: bool) -> None:
    """isthmus: move a legacy integer-keyed database onto UUID-keyed PostgreSQL and keep both in step."""
    output.configure_logging(debug)
    ctx.obj = Context(config_path, as_json, debug)


def run(ctx: Context, call: Callable[[], T], render: Callable[[T], None]) -> T:
    """Call the library; print its result, or one clean error line with the contract's exit code."""
    try:
        result = call()
    except IsthmusError as exc:
        fail(ctx, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail(ctx, "interrupted", 130)
    except Exception as exc:
        if ctx.debug:
            raise
        fail(ctx, f"{type(exc).__name__}: {exc}", 3)
    if ctx.as_json:
        output.print_json(result)
    else:
        render(result)
    exit_code = getattr(result, "exit_code", 0)
    if exit_code:
        sys.exit(exit_code)
    return result


def fail(ctx: Context, message: str, code: int) -> Any:
    message = mask_secrets(message.strip().splitlines()[0] if message.strip() else "failed")
    if ctx.debug:
        logging.getLogger("isthmus").exception("failed")
    if ctx.as_json:
        click.echo(json.dumps({"ok": False, "error": message, "exit_code": code}))
    click.echo(f"isthmus: error: {message}", err=True)
    sys.exit(code)


@main.command()
@pass_ctx
def init(ctx: Context) -> None:
    """Create or upgrade the state schema in the target database."""
    run(ctx, lambda: commands.init(ctx.config()), output.show_init)


@main.command()
@pass_ctx
def plan(ctx: Context) -> None:
    """Show entities in foreign-key order, column maps and FK translations."""
    run(ctx, lambda: commands.plan(ctx.config()), output.show_plan)


@main.command()
@click.option(
    "--apply",
    is_flag=True,
    help="Create the missing target tables; keys, indexes and FKs wait for the load.",
)
@pass_ctx
def schema(ctx: Context, apply: bool) -> None:
    """Derive the target DDL from the source (integer keys → UUID); print it or apply it."""
    run(ctx, lambda: commands.schema(ctx.config(), apply), output.show_schema)


@main.command()
@click.option("--entity", "entities", multiple=True, help="Only this entity (repeatable).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    help="Rows per batch (default: migration.batch_size).",
)
@click.option(
    "--chunk",
    default=None,
    metavar="LO:HI",
    help="Only the keys LO..HI of the one --entity (other processes may run other chunks).",
)
@click.option(
    "--chunks",
    type=int,
    default=None,
    metavar="N",
    help="Split the one --entity into N key ranges, run them in turn, then finish.",
)
@click.option(
    "--finish", is_flag=True, help="Finish the one --entity once all its chunks have run."
)
@pass_ctx
def migrate(
    ctx: Context,
    *,
    entities: tuple[str, ...],
    batch_size: int | None,
    chunk: str | None,
    chunks: int | None,
    finish: bool,
) -> None:
    """Differential migration into the target; resumes from checkpoints by itself."""
    shape: dict[str, Any] = {"chunk": chunk, "chunks": chunks, "finish": finish}

    def call() -> Any:
        config = ctx.config()
        if not progress.wanted(ctx.as_json):
            return commands.migrate(config, list(entities), batch_size, **shape)
        with progress.RowProgress() as bars:
            return commands.migrate(config, list(entities), batch_size, bars, **shape)

    with progress.sigterm_as_interrupt():
        run(ctx, call, output.show_migration)


@main.command()
@click.option("--entity", "entities", multiple=True, help="Only this entity (repeatable).")
@pass_ctx
def diff(ctx: Context, entities: tuple[str, ...]) -> None:
    """Compare source and target through the ID map; store and summarise the differences
    (exit 1 while any remain)."""
    run(ctx, lambda: commands.diff(ctx.config(), list(entities)), output_diff.show_diff)


@main.command()
@click.option(
    "--type",
    "types",
    multiple=True,
    help="completeness_check, data_integrity, relationship_integrity or performance_check "
    "(repeatable, or comma-separated; default: all four).",
)
@click.option("--entity", "entities", multiple=True, help="Only this entity (repeatable).")
@click.option(
    "--sample",
    "sample_rows",
    type=click.IntRange(min=0),
    default=None,
    help="data_integrity compares a random sample of N rows per entity (0: every row; "
    "default: validation.sample_rows).",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the run's self-contained HTML report to this file.",
)
@pass_ctx
def validate(
    ctx: Context,
    types: tuple[str, ...],
    entities: tuple[str, ...],
    sample_rows: int | None,
    html: Path | None,
) -> None:
    """Validate the target against the source (completeness, data, relationships,
    performance); store a report each (exit 1 if any fails)."""

    def call() -> Any:
        config = ctx.config()
        args = (config, list(types), list(entities))
        if not progress.wanted(ctx.as_json):
            return commands.validate(*args, sample_rows=sample_rows, html=html)
        with progress.RowProgress() as bars:
            return commands.validate(*args, sample_rows=sample_rows, html=html, progress=bars)

    run(ctx, call, output_validate.show_validation)


@main.group()
def reports() -> None:
    """Stored validation reports."""


@reports.command("list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--type", "validation_type", default=None, help="Only this validation type.")
@click.option("--failed", "failed_only", is_flag=True, help="Only failed validations.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_ctx
def reports_list(
    ctx: Context, entity: str | None, validation_type: str | None, failed_only: bool, limit: int
) -> None:
    """The newest validation reports (stale ones marked)."""
    run(
        ctx,
        lambda: commands.reports_list(ctx.config(), entity, validation_type, failed_only, limit),
        output_validate.show_reports,
    )


@reports.command("show")
@click.argument("report_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@pass_ctx
def reports_show(ctx: Context, report_id: str, fmt: str, output_file: Path | None) -> None:
    """Show a report, or every report of a validation run (REPORT_ID: a report's or a
    run's ID, a unique prefix of one, or 'latest')."""

    def render(view: Any) -> None:
        if output_file is None:
            output_validate.show_report(view)
            return
        text = view.html() if fmt == "html" else json.dumps(view.to_dict(), indent=2)
        if fmt == "table":
            with output.console.capture() as captured:
                output_validate.show_report(view)
            text = captured.get()
        output_file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output_file}", err=True)

    run(ctx, lambda: commands.reports_show(ctx.config(), report_id, fmt), render)


@main.group()
def differentials() -> None:
    """Stored differentials and their resolution (addition)."""


@differentials.command("list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved ones.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def differentials_list(
    ctx: Context, entity: str | None, include_resolved: bool, limit: int
) -> None:
    """The newest differentials (open ones unless --all)."""
    run(
        ctx,
        lambda: commands.differentials_list(ctx.config(), entity, include_resolved, limit),
        output_diff.show_differentials,
    )


@differentials.command("resolve")
@click.argument("ids", nargs=-1)
@click.option(
    "--strategy",
    type=click.Choice(["source_wins", "target_wins", "manual_review", "skip"]),
    default=None,
    help="Override the stored resolution strategy.",
)
@click.option("--all", "every_open", is_flag=True, help="Every unresolved differential.")
@click.option("--entity", "entities", multiple=True, help="With --all: only this entity.")
@pass_ctx
def differentials_resolve(
    ctx: Context,
    ids: tuple[str, ...],
    strategy: str | None,
    every_open: bool,
    entities: tuple[str, ...],
) -> None:
    """Apply differentials IDS (or --all) and mark them resolved; idempotent."""
    run(
        ctx,
        lambda: commands.differentials_resolve(
            ctx.config(), list(ids), strategy, every_open, list(entities)
        ),
        output_diff.show_resolutions,
    )


@main.group()
def quarantine() -> None:
    """Source rows the migration isolated: refused by the target, or orphans."""


@quarantine.command("list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved entries.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def quarantine_list(ctx: Context, entity: str | None, include_resolved: bool, limit: int) -> None:
    """The quarantined rows with their legacy key and reason."""
    run(
        ctx,
        lambda: commands.quarantine_list(ctx.config(), entity, include_resolved, limit),
        output.show_quarantine,
    )


@main.command()
@click.option(
    "--scale",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Offices (1,208 rows each).",
)
@click.option(
    "--workdir", default="isthmus-demo", show_default=True, type=click.Path(path_type=Path)
)
@pass_ctx
def demo(ctx: Context, scale: int, workdir: Path) -> None:
    """The whole story on the embedded default: SQLite legacy database, embedded PostgreSQL target."""

    def call() -> Any:
        if not progress.wanted(ctx.as_json):
            return commands.demo(scale, workdir)
        with progress.RowProgress() as bars:
            return commands.demo(scale, workdir, bars)

    run(ctx, call, output.show_demo)


@main.group()
def checkpoints() -> None:
    """Progress of migrations, syncs and validations."""


@checkpoints.command("list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--status", default=None, help="Only this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def checkpoints_list(ctx: Context, entity: str | None, status: str | None, limit: int) -> None:
    """The newest checkpoints."""
    run(
        ctx,
        lambda: commands.checkpoints_list(ctx.config(), entity, status, limit),
        output.show_checkpoints,
    )


@main.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many days of history (default: retention.days, 30).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@pass_ctx
def prune(ctx: Context, days: int | None, dry_run: bool) -> None:
    """Remove old checkpoints, resolved differentials, expired reports and finished jobs,
    keeping the newest of each per entity and job."""
    run(ctx, lambda: commands.prune(ctx.config(), days, dry_run), output.show_prune)


@main.group()
def mappings() -> None:
    """The legacy ID ↔ UUID map."""


@mappings.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@pass_ctx
def mappings_import(ctx: Context, file: Path) -> None:
    """Import FILE (CSV entity_type,legacy_id,uuid_id); all or nothing."""
    run(ctx, lambda: commands.mappings_import(ctx.config(), file), output.show_import)


@mappings.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--entity", default=None, help="Only this entity.")
@pass_ctx
def mappings_export(ctx: Context, file: Path, entity: str | None) -> None:
    """Export the map to FILE (CSV with a header)."""
    run(ctx, lambda: commands.mappings_export(ctx.config(), file, entity), output.show_export)


@mappings.command("lookup")
@click.argument("entity")
@click.argument("legacy_id", type=int)
@pass_ctx
def mappings_lookup(ctx: Context, entity: str, legacy_id: int) -> None:
    """The UUID of ENTITY's LEGACY_ID."""
    run(ctx, lambda: commands.mappings_lookup(ctx.config(), entity, legacy_id), output.show_mapping)


@main.group()
def jobs() -> None:
    """Synchronization jobs: create, list, show, run, pause, resume, cancel."""


@jobs.command("create")
@click.argument("name")
@click.option(
    "--type",
    "job_type",
    required=True,
    type=click.Choice(["scheduled_sync", "manual_sync", "differential_migration"]),
)
@click.option("--entities", default=None, help="Comma-separated entities (default: all).")
@click.option(
    "--direction",
    default="source_to_target",
    show_default=True,
    type=click.Choice(["source_to_target", "bidirectional"]),
)
@click.option(
    "--conflict",
    default="source_wins",
    show_default=True,
    type=click.Choice(["source_wins", "target_wins", "manual"]),
    help="Who wins a record changed on both sides (manual: the review queue).",
)
@click.option("--cron", default=None, help="Cron schedule, UTC (scheduled_sync: required).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    help="max_records_per_batch (default: migration.batch_size).",
)
@click.option(
    "--validate",
    "validate_types",
    default=None,
    help="After each completed run, validate the job's entities: 'all' or comma-separated "
    "validation types (reports linked to the job).",
)
@pass_ctx
def jobs_create(
    ctx: Context,
    *,
    name: str,
    job_type: str,
    entities: str | None,
    direction: str,
    conflict: str,
    cron: str | None,
    batch_size: int | None,
    validate_types: str | None,
) -> None:
    """Create the job NAME (status scheduled)."""
    chosen = [e.strip() for e in entities.split(",") if e.strip()] if entities else None
    checks = [validate_types] if validate_types else None
    run(
        ctx,
        lambda: commands.jobs_create(
            ctx.config(),
            name,
            job_type,
            entities=chosen,
            direction=direction,
            conflict=conflict,
            cron=cron,
            batch_size=batch_size,
            validate=checks,
        ),
        output_jobs.show_job_change,
    )


@jobs.command("list")
@pass_ctx
def jobs_list(ctx: Context) -> None:
    """Every job: status, last/next run, statistics."""
    run(ctx, lambda: commands.jobs_list(ctx.config()), output_jobs.show_jobs)


@jobs.command("show")
@click.argument("name")
@pass_ctx
def jobs_show(ctx: Context, name: str) -> None:
    """One job with its recent checkpoints."""
    run(ctx, lambda: commands.jobs_show(ctx.config(), name), output_jobs.show_job)


@jobs.command("run")
@click.argument("name")
@click.option("--queue", is_flag=True, help="Hand the run to the workers (isthmus worker).")
@pass_ctx
def jobs_run(ctx: Context, name: str, queue: bool) -> None:
    """Run the job NAME once, in this process (or, with --queue, by a worker)."""
    with progress.sigterm_as_interrupt():
        run(
            ctx,
            lambda: commands.jobs_run(ctx.config(), name, queue=queue),
            output_worker.show_run_or_queued,
        )


@jobs.command("pause")
@click.argument("name")
@pass_ctx
def jobs_pause(ctx: Context, name: str) -> None:
    """Pause a running job (it stops at its next batch)."""
    run(ctx, lambda: commands.jobs_pause(ctx.config(), name), output_jobs.show_job_change)


@jobs.command("resume")
@click.argument("name")
@click.option("--queue", is_flag=True, help="Hand the run to the workers (isthmus worker).")
@pass_ctx
def jobs_resume(ctx: Context, name: str, queue: bool) -> None:
    """Resume a paused job, in this process (or, with --queue, by a worker)."""
    with progress.sigterm_as_interrupt():
        run(
            ctx,
            lambda: commands.jobs_resume(ctx.config(), name, queue=queue),
            output_worker.show_run_or_queued,
        )


@jobs.command("cancel")
@click.argument("name")
@pass_ctx
def jobs_cancel(ctx: Context, name: str) -> None:
    """Cancel a running job (it stops at its next batch, for good)."""
    run(ctx, lambda: commands.jobs_cancel(ctx.config(), name), output_jobs.show_job_change)


@main.group()
def review() -> None:
    """The manual-review queue: records changed on both sides under a manual rule."""


@review.command("list")
@click.option("--entity", default=None, help="Only this entity.")
@click.option("--job", default=None, help="Only this job's items.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def review_list(ctx: Context, entity: str | None, job: str | None, limit: int) -> None:
    """Waiting records, both versions side by side."""
    run(
        ctx, lambda: commands.review_list(ctx.config(), entity, job, limit), output_jobs.show_review
    )


@review.command("resolve")
@click.argument("item_id")
@click.option("--winner", required=True, type=click.Choice(["source", "target", "skip"]))
@pass_ctx
def review_resolve(ctx: Context, item_id: str, winner: str) -> None:
    """Apply the winner's version of ITEM_ID to the other side (or skip) and close it."""
    run(
        ctx,
        lambda: commands.review_resolve(ctx.config(), item_id, winner),
        output_diff.show_resolution,
    )


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Job runs executed at once by this worker.",
)
@click.option("--once", is_flag=True, help="Queue what is due, execute the queue, exit when empty.")
@pass_ctx
def worker(ctx: Context, concurrency: int, once: bool) -> None:
    """Execute job runs from the queue in the target database; queue cron-scheduled jobs
    when due; prune daily. Ctrl-C/SIGTERM: finish the runs in progress, then stop."""
    run(ctx, lambda: commands.worker(ctx.config(), concurrency, once), output_worker.show_worker)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Let mutations through without a token (only on 127.0.0.1, localhost or ::1).",
)
@pass_ctx
def serve(ctx: Context, host: str, port: int, no_auth: bool) -> None:
    """HTTP API (OpenAPI at /docs) and Prometheus /metrics until Ctrl-C. POSTs need
    'Authorization: Bearer $ISTHMUS_API_TOKEN'; without that variable it refuses to start
    unless --no-auth on a loopback address."""
    run(
        ctx,
        lambda: commands.serve(ctx.config(), host, port, no_auth),
        lambda result: click.echo(f"isthmus: stopped serving on {result.host}:{result.port}"),
    )


if __name__ == "__main__":
    main()
