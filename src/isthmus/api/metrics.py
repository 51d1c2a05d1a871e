"""``GET /metrics``: Prometheus text, read from the state tables at each scrape.

A handful of aggregate queries on the shared engine (indexed columns, grouped), so a scrape
costs milliseconds whatever the size of the migration. Values are gauges: they are what the
stored history says now, and ``isthmus prune`` removes old history, so a sum may go down.

- ``isthmus_rows_moved{entity,operation}``: records of completed migration and sync
  checkpoints (the summaries, not a chunked entity's chunks)
- ``isthmus_rows_per_second{entity,operation}``: the in-progress checkpoints' rate
- ``isthmus_records_in_progress{entity,operation}``: their records so far
- ``isthmus_differentials_open{entity,type}``, ``isthmus_differential_records_open{…}``
- ``isthmus_review_items_open{entity}``
- ``isthmus_validation_failing{entity,type}``: 1 when the newest report failed;
  ``isthmus_validation_discrepancies{entity,type}``: its discrepancies;
  ``isthmus_validation_reports_failed``: stored failed reports
- ``isthmus_job_average_duration_seconds{job}``, ``isthmus_job_last_run_duration_seconds{job}``,
  ``isthmus_job_records_synced{job}``, ``isthmus_job_success_rate{job}``,
  ``isthmus_job_last_run_timestamp_seconds{job}``
- ``isthmus_jobs{status}``: jobs by status (every status, zeros included)
- ``isthmus_quarantined_rows_open{entity}``
- ``isthmus_state_up``: 1 when the state tables answered this scrape (0: the rest is absent)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.dialects.postgresql import distinct_on

from isthmus.api.app_state import ApiState
from isthmus.api.errors import one_line
from isthmus.diff import REVIEW_KEY
from isthmus.migrate_chunks import CHUNK
from isthmus.state.enums import CheckpointStatus, JobStatus, OperationType
from isthmus.state.store import StateStore
from isthmus.state.tables import build_metadata

log = logging.getLogger("isthmus.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MOVING = (OperationType.DIFFERENTIAL_MIGRATION.value, OperationType.SYNC_OPERATION.value)


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class StateCollector(Collector):
    """Reads the control tables of ``state``'s state schema when Prometheus scrapes."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.store = StateStore(state.state_schema)
        tables = build_metadata(state.state_schema).tables
        self.quarantine = tables[f"{state.state_schema}.quarantined_rows"]

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = _gauge("isthmus_state_up", "1 when the state tables answered this scrape")
        started = time.perf_counter()
        try:
            with self.state.engine.connect() as conn:
                found = list(self._metrics(conn))
        except Exception as exc:
            log.warning("metrics: the state tables did not answer: %s", one_line(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found
        took = _gauge("isthmus_metrics_scrape_seconds", "time taken reading the state tables")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _metrics(self, conn: sa.Connection) -> Iterator[Metric]:
        yield from self._checkpoints(conn)
        yield from self._differentials(conn)
        yield from self._validation(conn)
        yield from self._jobs(conn)
        yield from self._quarantine(conn)

    def _checkpoints(self, conn: sa.Connection) -> Iterator[Metric]:
        c = self.store.checkpoints.c
        moved = _gauge(
            "isthmus_rows_moved",
            "records processed by completed migration and sync checkpoints still stored",
            ["entity", "operation"],
        )
        rows = conn.execute(
            sa.select(c.entity_type, c.operation_type, sa.func.sum(c.records_processed))
            .where(
                c.status == CheckpointStatus.COMPLETED.value,
                c.operation_type.in_(MOVING),
                ~c.metadata.has_key(CHUNK),
            )
            .group_by(c.entity_type, c.operation_type)
        )
        for entity, operation, total in rows:
            moved.add_metric([entity, str(operation)], float(total or 0))
        yield moved
        rate = _gauge(
            "isthmus_rows_per_second",
            "rate of the in-progress checkpoints (records over their running time)",
            ["entity", "operation"],
        )
        done = _gauge(
            "isthmus_records_in_progress",
            "records processed so far by the in-progress checkpoints",
            ["entity", "operation"],
        )
        seconds = sa.func.extract("epoch", c.updated_at - c.started_at)
        live = conn.execute(
            sa.select(
                c.entity_type,
                c.operation_type,
                sa.func.sum(c.records_processed),
                sa.func.sum(
                    sa.case((seconds > 0, c.records_processed / seconds), else_=sa.literal(0))
                ),
            )
            .where(c.status == CheckpointStatus.IN_PROGRESS.value, c.started_at.is_not(None))
            .group_by(c.entity_type, c.operation_type)
        )
        for entity, operation, records, per_second in live:
            labels = [entity, str(operation)]
            done.add_metric(labels, float(records or 0))
            rate.add_metric(labels, float(per_second or 0))
        yield rate
        yield done

    def _differentials(self, conn: sa.Connection) -> Iterator[Metric]:
        d = self.store.differentials.c
        entity = sa.func.coalesce(d.metadata["entity"].astext, d.source_table)
        is_review = sa.and_(
            d.resolution_strategy == "manual_review", d.metadata.has_key(REVIEW_KEY)
        )
        count = _gauge("isthmus_differentials_open", "unresolved differentials", ["entity", "type"])
        records = _gauge(
            "isthmus_differential_records_open",
            "records in the unresolved differentials",
            ["entity", "type"],
        )
        review = _gauge(
            "isthmus_review_items_open", "records waiting in the review queue", ["entity"]
        )
        rows = conn.execute(
            sa.select(
                entity,
                d.comparison_type,
                sa.func.count(),
                sa.func.sum(d.record_count),
                sa.func.count().filter(is_review),
            )
            .where(d.resolved.is_(False))
            .group_by(entity, d.comparison_type)
        )
        waiting: dict[str, int] = {}
        for name, kind, n, total, in_review in rows:
            count.add_metric([name, str(kind)], n)
            records.add_metric([name, str(kind)], float(total or 0))
            waiting[name] = waiting.get(name, 0) + int(in_review or 0)
        for name, n in sorted(waiting.items()):
            review.add_metric([name], n)
        yield count
        yield records
        yield review

    def _validation(self, conn: sa.Connection) -> Iterator[Metric]:
        r = self.store.reports.c
        entity = sa.func.coalesce(r.metadata["entity"].astext, r.source_entity)
        failing = _gauge(
            "isthmus_validation_failing",
            "1 when the newest report of the entity and type failed",
            ["entity", "type"],
        )
        found = _gauge(
            "isthmus_validation_discrepancies",
            "discrepancies of the newest report of the entity and type",
            ["entity", "type"],
        )
        newest = (
            sa.select(entity, r.validation_type, r.validation_passed, r.discrepancies_found)
            .ext(distinct_on(entity, r.validation_type))
            .order_by(entity, r.validation_type, r.generated_at.desc(), r.id.desc())
        )
        for name, kind, passed, discrepancies in conn.execute(newest):
            failing.add_metric([name, str(kind)], 0 if passed else 1)
            found.add_metric([name, str(kind)], discrepancies)
        yield failing
        yield found
        failed = _gauge("isthmus_validation_reports_failed", "stored reports that failed")
        total = conn.execute(
            sa.select(sa.func.count()).where(r.validation_passed.is_(False))
        ).scalar()
        failed.add_metric([], total or 0)
        yield failed

    def _jobs(self, conn: sa.Connection) -> Iterator[Metric]:
        jobs = self.store.list_jobs(conn)
        by_status = _gauge("isthmus_jobs", "jobs by status", ["status"])
        for status in JobStatus:
            by_status.add_metric([status.value], sum(1 for j in jobs if j.status == status))
        yield by_status
        average = _gauge(
            "isthmus_job_average_duration_seconds", "average run duration of the job", ["job"]
        )
        last = _gauge(
            "isthmus_job_last_run_duration_seconds", "duration of the job's newest run", ["job"]
        )
        synced = _gauge("isthmus_job_records_synced", "total_records_synced of the job", ["job"])
        rate = _gauge("isthmus_job_success_rate", "success_rate of the job (percent)", ["job"])
        when = _gauge(
            "isthmus_job_last_run_timestamp_seconds", "when the job last ran (Unix time)", ["job"]
        )
        for j in jobs:
            labels = [j.job_name]
            synced.add_metric(labels, j.total_records_synced)
            if j.average_duration_ms is not None:
                average.add_metric(labels, j.average_duration_ms / 1000)
            seconds = _last_run_seconds(j.metadata)
            if seconds is not None:
                last.add_metric(labels, seconds)
            if j.success_rate is not None:
                rate.add_metric(labels, float(j.success_rate))
            if isinstance(j.last_run_at, datetime):
                when.add_metric(labels, j.last_run_at.timestamp())
        yield from (average, last, synced, rate, when)

    def _quarantine(self, conn: sa.Connection) -> Iterator[Metric]:
        q = self.quarantine.c
        gauge = _gauge(
            "isthmus_quarantined_rows_open", "source rows isolated and not yet in", ["entity"]
        )
        rows = conn.execute(
            sa.select(q.entity_type, sa.func.count())
            .where(q.resolved.is_(False))
            .group_by(q.entity_type)
            .order_by(q.entity_type)
        )
        for entity, n in rows:
            gauge.add_metric([entity], n)
        yield gauge


def _last_run_seconds(metadata: dict[str, Any]) -> float | None:
    last = metadata.get("last_run")
    seconds = last.get("seconds") if isinstance(last, dict) else None
    return float(seconds) if isinstance(seconds, int | float) else None


def install(app: FastAPI, state: ApiState) -> CollectorRegistry:
    """Add ``GET /metrics`` with a registry of its own (nothing from the process-wide one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state))

    @app.get(
        "/metrics",
        tags=["metrics"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    def metrics() -> Response:
        """Prometheus text exposition of the state tables (see the module's docs)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    return registry


__all__ = ["StateCollector", "install"]
