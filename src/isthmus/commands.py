"""The library face of the CLI: one public function per command, with the same name and arguments.

``isthmus plan`` is ``commands.plan(config)``; ``isthmus mappings import F`` is
``commands.mappings_import(config, F)``. Each returns a result object that the
CLI prints as a table or, with ``--json``, as its ``to_dict()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from isthmus import (
    jobs,
    mapping,
    mapping_io,
    migrate_chunks,
    output,
    quarantine,
    reports,
    review,
)
from isthmus.config import Config
from isthmus.demo_run import DemoResult, run_demo
from isthmus.diff import DiffResult, run_diff
from isthmus.errors import DifferencesFound, UsageError
from isthmus.migrate import run_migration
from isthmus.migrate_result import MigrationResult, Progress
from isthmus.plan import Plan
from isthmus.prune import PruneResult, run_prune
from isthmus.queue import QueuedRun, defer_run, install_queue
from isthmus.resolve import Resolution, ResolveResult, resolve_differentials
from isthmus.review import ReviewItem
from isthmus.state.enums import JobStatus
from isthmus.state.models import DataDifferential, MigrationCheckpoint, SynchronizationJob
from isthmus.state.schema import InitResult, require_current, upgrade_state_schema
from isthmus.state.store import StateStore
from isthmus.sync import JobRun, run_job
from isthmus.target_ddl import SchemaResult, apply_target_ddl, derive_target_ddl
from isthmus.validate import ValidationResult, run_validate
from isthmus.worker import WorkerResult, run_worker
from isthmus.workspace import Workspace

if TYPE_CHECKING:  # the HTTP stack is imported only by `serve`
    from isthmus.api.serve import ServeResult


def init(config: Config) -> InitResult:
    """Create or upgrade the state schema in the target, with the workers' queue in it;
    running it again changes nothing."""
    with Workspace(config) as ws:
        result = upgrade_state_schema(ws.engine, ws.state_schema)
        return dataclasses.replace(result, queue_created=install_queue(ws))


def plan(config: Config) -> Plan:
    """Entities in foreign-key order with their column maps and FK translations."""
    with Workspace(config) as ws:
        return ws.plan


def schema(config: Config, apply: bool = False) -> SchemaResult:
    """The target DDL derived from the source; with ``apply``, create the target tables that
    do not exist yet and park their keys, indexes and FKs in pending_ddl for after the load."""
    with Workspace(config) as ws:
        target_schema = config.target.schema_
        ddl = derive_target_ddl(ws.plan, target_schema, source_dialect=ws.source.capabilities.name)
        if not apply:
            return SchemaResult(ddl)
        require_current(ws.engine, ws.state_schema)
        with ws.connect_target() as conn:
            applied = apply_target_ddl(conn, ddl, ws.state_schema, target_schema)
            conn.commit()
        return SchemaResult(ddl, applied)


def migrate(
    config: Config,
    entities: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    *,
    chunk: str | tuple[int, int] | None = None,
    chunks: int | None = None,
    finish: bool = False,
) -> MigrationResult:
    """Differential migration of the entities (all when none given), resuming by itself.

    One entity split into key ranges (``migrate_chunks``): ``chunk="LO:HI"`` migrates that
    range (other processes may run other ranges at once); ``chunks=N`` plans N ranges and
    runs them here in turn, then finishes; ``finish`` closes a pass whose chunks all ran."""
    shapes = [
        name
        for name, given in (
            ("--chunk", chunk is not None),
            ("--chunks", chunks is not None),
            ("--finish", finish),
        )
        if given
    ]
    if not shapes:
        with Workspace(config) as ws:
            return run_migration(ws, entities, batch_size, progress)
    if len(shapes) > 1:
        raise UsageError(f"{' and '.join(shapes)} cannot be used together")
    if len(entities or []) != 1:
        raise UsageError(f"{shapes[0]} needs exactly one --entity")
    if chunks is not None and chunks < 1:
        raise UsageError(f"--chunks {chunks}: needs at least 1")
    (entity,) = list(entities or [])
    key_range = migrate_chunks.parse_chunk(chunk) if chunk is not None else None
    with Workspace(config) as ws:
        return migrate_chunks.run_chunked(
            ws,
            entity,
            chunk=key_range,
            chunks=chunks,
            finish=finish,
            batch_size=batch_size,
            progress=progress,
        )


def diff(
    config: Config, entities: Sequence[str] | None = None, progress: Progress | None = None
) -> DiffResult:
    """Compute and store the differentials of the entities (all when none given); the
    result's exit code is 1 while differences remain."""
    with Workspace(config) as ws:
        return run_diff(ws, entities, progress)


def validate(
    config: Config,
    types: Sequence[str] | None = None,
    entities: Sequence[str] | None = None,
    *,
    sample_rows: int | None = None,
    html: str | Path | None = None,
    progress: Progress | None = None,
) -> ValidationResult:
    """Run the validations (all four types when none given) of the entities (all when none
    given) and store a report each; with ``html``, also write the run's HTML report there.
    The result's exit code is 1 when any validation failed."""
    with Workspace(config) as ws:
        result = run_validate(ws, types, entities, sample_rows=sample_rows, progress=progress)
        if html is not None:
            view = reports.show_report(ws, str(result.run_id), "html")
            Path(html).write_text(view.html(), encoding="utf-8")
        return result


def reports_list(
    config: Config,
    entity: str | None = None,
    validation_type: str | None = None,
    failed_only: bool = False,
    limit: int = 50,
) -> reports.ReportList:
    """The newest validation reports (stale ones marked)."""
    with Workspace(config) as ws:
        return reports.list_reports(
            ws, entity=entity, validation_type=validation_type, failed_only=failed_only, limit=limit
        )


def reports_show(config: Config, report_id: str, format: str = "table") -> reports.ReportView:
    """A report, or every report of a validation run (``report_id`` may name either, or be
    ``latest``), for printing as a table, JSON or a self-contained HTML page."""
    with Workspace(config) as ws:
        return reports.show_report(ws, report_id, format)


def differentials_list(
    config: Config,
    entity: str | None = None,
    include_resolved: bool = False,
    limit: int = 100,
) -> list[DataDifferential]:
    """Stored differentials, newest last: the open ones, or all with ``include_resolved``."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        source_table = ws.plan[entity].entity.source_table if entity else None
        with ws.engine.connect() as conn:
            return StateStore(ws.state_schema).list_differentials(
                conn,
                source_table=source_table,
                resolved=None if include_resolved else False,
                limit=limit,
                newest=True,
            )


def differentials_resolve(
    config: Config,
    ids: Sequence[str] = (),
    strategy: str | None = None,
    every_open: bool = False,
    entities: Sequence[str] | None = None,
) -> ResolveResult:
    """Apply differentials by their stored strategy (or ``strategy``) and mark them resolved;
    applying a resolved one again changes nothing."""
    from uuid import UUID

    try:
        keys = [UUID(i) for i in ids]
    except ValueError as exc:
        raise UsageError(f"not a differential id: {exc}") from None
    with Workspace(config) as ws:
        return resolve_differentials(
            ws, keys, strategy=strategy, every_open=every_open, entities=entities
        )


def quarantine_list(
    config: Config, entity: str | None = None, include_resolved: bool = False, limit: int = 1000
) -> list[quarantine.QuarantineEntry]:
    """Rows the migration isolated (refused by the target, or orphans), with key and reason."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        with ws.connect_target() as conn:
            return quarantine.list_entries(
                conn, ws.state_schema, entity=entity, include_resolved=include_resolved, limit=limit
            )


def demo(
    scale: int = 20, workdir: str | Path = "isthmus-demo", progress: Progress | None = None
) -> DemoResult:
    """The whole story on the embedded default: generate, derive the target, migrate,
    change the legacy side, migrate again (only the changes move)."""
    return run_demo(scale, Path(workdir), step=output.step, progress=progress)


def checkpoints_list(
    config: Config, entity: str | None = None, status: str | None = None, limit: int = 100
) -> list[MigrationCheckpoint]:
    """Progress: the newest checkpoints, optionally of one entity or status."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        with ws.engine.connect() as conn:
            return StateStore(ws.state_schema).list_checkpoints(
                conn, entity_type=entity, status=status, limit=limit
            )


def prune(config: Config, days: int | None = None, dry_run: bool = False) -> PruneResult:
    """Remove finished history older than ``days`` (default ``[retention] days``): old
    checkpoints, resolved differentials, expired reports, resolved quarantine entries,
    consumed target deletions and finished worker jobs, keeping the newest of each per
    entity and job; with ``dry_run``, only count them."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        return run_prune(ws, days=days, dry_run=dry_run)


def mappings_import(config: Config, file: str | Path) -> mapping_io.ImportResult:
    """Import a CSV of ``entity_type,legacy_id,uuid_id``: all of it or, on any bad row, none of it.
    A line naming no entity of the plan is a bad line (a mapping no run would ever use)."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        tables = {p.name: (p.entity.source_table, p.entity.target_table) for p in ws.plan.entities}
        with ws.connect_target() as conn:
            return mapping_io.import_mappings(conn, ws.state_schema, file, entity_tables=tables)


def mappings_export(
    config: Config, file: str | Path, entity: str | None = None
) -> dict[str, object]:
    """Write the ID map (of one entity, or all) to a CSV with a header."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        with ws.connect_target() as conn:
            rows = mapping_io.export_mappings(conn, ws.state_schema, file, entity)
    return {"path": str(file), "rows": rows, "entity": entity}


def mappings_lookup(config: Config, entity: str, legacy_id: int) -> mapping.MappingRecord:
    """The mapping of one legacy ID; exit 1 when there is none."""
    with Workspace(config) as ws:
        require_current(ws.engine, ws.state_schema)
        with ws.connect_target() as conn:
            record = mapping.lookup_record(conn, ws.state_schema, entity, legacy_id)
    if record is None:
        raise DifferencesFound(f"no mapping for {entity} legacy id {legacy_id}")
    return record


def jobs_create(
    config: Config,
    name: str,
    job_type: str,
    *,
    entities: Sequence[str] | None = None,
    direction: str = "source_to_target",
    conflict: str = "source_wins",
    cron: str | None = None,
    batch_size: int | None = None,
    validate: Sequence[str] | None = None,
) -> SynchronizationJob:
    """A new synchronization job (status ``scheduled``); scheduled_sync jobs need ``cron``;
    with ``validate`` (validation types, or ``all``) each completed run is validated."""
    with Workspace(config) as ws:
        return jobs.create_job(
            ws,
            name,
            job_type=job_type,
            entities=entities,
            direction=direction,
            conflict=conflict,
            cron=cron,
            batch_size=batch_size,
            validate=validate,
        )


def jobs_list(config: Config) -> list[SynchronizationJob]:
    """Every job with its status, last/next run and statistics."""
    with Workspace(config) as ws:
        return jobs.list_jobs(ws)


def jobs_show(config: Config, name: str) -> jobs.JobDetail:
    """One job: status, statistics, schedule, recent checkpoints, review items waiting."""
    with Workspace(config) as ws:
        return jobs.show_job(ws, name)


@overload
def jobs_run(
    config: Config, name: str, progress: Progress | None = None, queue: Literal[False] = False
) -> JobRun: ...
@overload
def jobs_run(
    config: Config, name: str, progress: Progress | None = None, *, queue: Literal[True]
) -> QueuedRun: ...
@overload
def jobs_run(
    config: Config, name: str, progress: Progress | None = None, queue: bool = False
) -> JobRun | QueuedRun: ...
def jobs_run(
    config: Config, name: str, progress: Progress | None = None, queue: bool = False
) -> JobRun | QueuedRun:
    """Run the job once in this process (a paused job resumes); with ``queue``, hand the run
    to the workers instead (``isthmus worker``) and return the queued job."""
    with Workspace(config) as ws:
        if queue:
            return defer_run(ws, name)
        return run_job(ws, name, progress)


def jobs_pause(config: Config, name: str) -> SynchronizationJob:
    """running → paused: its run stops at the next batch boundary."""
    with Workspace(config) as ws:
        return jobs.set_status(ws, name, JobStatus.PAUSED)


@overload
def jobs_resume(
    config: Config, name: str, progress: Progress | None = None, queue: Literal[False] = False
) -> JobRun: ...
@overload
def jobs_resume(
    config: Config, name: str, progress: Progress | None = None, *, queue: Literal[True]
) -> QueuedRun: ...
@overload
def jobs_resume(
    config: Config, name: str, progress: Progress | None = None, queue: bool = False
) -> JobRun | QueuedRun: ...
def jobs_resume(
    config: Config, name: str, progress: Progress | None = None, queue: bool = False
) -> JobRun | QueuedRun:
    """paused → running: run the paused job again from where its checkpoints stand (with
    ``queue``, by the workers)."""
    with Workspace(config) as ws:
        detail = jobs.show_job(ws, name, checkpoints=0)
        if detail.job.status != JobStatus.PAUSED:
            raise UsageError(f"job {name} is {detail.job.status}, not paused: nothing to resume")
        if queue:
            return defer_run(ws, name)
        return run_job(ws, name, progress)


def jobs_cancel(config: Config, name: str) -> SynchronizationJob:
    """running → cancelled: its run stops at the next batch boundary, for good."""
    with Workspace(config) as ws:
        return jobs.set_status(ws, name, JobStatus.CANCELLED)


def review_list(
    config: Config, entity: str | None = None, job: str | None = None, limit: int = 100
) -> list[ReviewItem]:
    """Records changed on both sides waiting for a person, with both versions."""
    with Workspace(config) as ws:
        return review.open_items(ws, entity=entity, job=job, limit=limit)


def review_resolve(config: Config, item_id: str, winner: str) -> Resolution:
    """Apply the winner's version (source, target) or skip, and close the item."""
    with Workspace(config) as ws:
        return review.resolve_item(ws, item_id, winner)


def worker(config: Config, concurrency: int = 1, once: bool = False) -> WorkerResult:
    """Execute queued job runs, ``concurrency`` at a time, queue scheduled jobs when due and
    prune daily, until SIGINT/SIGTERM (runs in progress finish first); with ``once``, queue
    what is due, execute the queue until it is empty and return."""
    return run_worker(config, concurrency, once)


def serve(
    config: Config, host: str = "127.0.0.1", port: int = 8000, no_auth: bool = False
) -> ServeResult:
    """The HTTP API (and dashboard) until SIGINT/SIGTERM. Mutations need the bearer token
    ``ISTHMUS_API_TOKEN``; without it the server refuses to start (exit 2) unless
    ``no_auth`` and ``host`` is a loopback address."""
    from isthmus.api.serve import run_server

    return run_server(config, host, port, no_auth)
