"""A ``differential_migration`` job's run: entity by entity in plan order, large entities
split into key-range chunks that every worker can take.

Run by ``isthmus jobs run`` (one process), it is ``migrate`` of the job's entities. Run by a
worker, an entity with at least ``[migration] chunk_rows`` × 2 source rows is planned into
chunks of about ``chunk_rows`` rows (:func:`isthmus.migrate_chunks.plan_chunks`); each chunk
is queued as a task of its own, so idle workers take them, and the run itself works through
the same chunks in key order, skipping any that another worker holds
(:func:`~isthmus.migrate_chunks.migrate_chunk` refuses a chunk that runs elsewhere, and does
nothing for one already done). When no chunk is left to take it finishes the entity
(:func:`~isthmus.migrate_chunks.finish_chunked`, which waits for chunks still running
elsewhere: it needs the entity's lock exclusively) and goes on to the next. A worker that
dies mid-chunk leaves the chunk unfinished; the run takes it over and resumes it from its
checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from isthmus.migrate import run_migration
from isthmus.migrate_chunks import ChunksUnfinished, finish_chunked, migrate_chunk, plan_chunks
from isthmus.migrate_result import EntityBusy, EntityResult, Progress
from isthmus.state.store import StateStore
from isthmus.workspace import Workspace

log = logging.getLogger("isthmus.worker")  # a worker's log: where chunks are taken

# defer(entity, lo, hi, batch_size): queue one chunk for any worker; a handle to withdraw it
DeferChunk = Callable[[str, int, int, int], object]
Withdraw = Callable[[Sequence[object]], None]
_WAIT_SECONDS = 0.5  # between looks at chunks another worker still runs


@dataclass
class Chunking:
    defer: DeferChunk
    withdraw: Withdraw  # drops queued chunk tasks nobody took before the finish


@dataclass
class MigrationRun:
    entities: list[EntityResult]
    chunked: dict[str, int]  # entity → number of chunks

    @property
    def rows_written(self) -> int:
        return sum(e.outcome.inserted + e.outcome.updated for e in self.entities)

    @property
    def rows_failed(self) -> int:
        return sum(e.outcome.quarantined for e in self.entities)


def run_migration_job(
    ws: Workspace,
    entities: Sequence[str],
    batch_size: int,
    progress: Progress | None = None,
    chunking: Chunking | None = None,
) -> MigrationRun:
    """Migrate ``entities`` in plan order; with ``chunking``, large ones by chunks."""
    if chunking is None:
        result = run_migration(ws, entities, batch_size, progress)
        return MigrationRun(result.entities, {})
    out = MigrationRun([], {})
    rows = ws.config.migration.chunk_rows
    for planned in ws.plan.select(entities):
        name = planned.entity.name
        total = ws.source.count(planned.entity.source_table) if planned.entity.key else 0
        if planned.entity.key is None or total < 2 * rows:
            out.entities.extend(run_migration(ws, [name], batch_size, progress).entities)
            continue
        chunks = plan_chunks(ws, name, max(2, total // rows))
        out.chunked[name] = len(chunks)
        out.entities.extend(_chunked(ws, name, chunks, batch_size, chunking))
    return out


def _chunked(
    ws: Workspace,
    entity: str,
    chunks: list[tuple[int, int]],
    batch_size: int,
    chunking: Chunking,
) -> list[EntityResult]:
    queued = [chunking.defer(entity, lo, hi, batch_size) for lo, hi in chunks]
    log.info("%s: %d chunks queued for the workers", entity, len(chunks))
    done: list[EntityResult] = []
    while True:
        for lo, hi in chunks:
            try:
                result = migrate_chunk(ws, entity, lo, hi, batch_size=batch_size)
            except EntityBusy:
                continue  # another worker has it
            if result.status != "skipped":
                done.append(result)
        try:
            finished = finish_chunked(ws, entity, chunks, batch_size=batch_size)
        except (EntityBusy, ChunksUnfinished):
            time.sleep(_WAIT_SECONDS)  # chunks still running elsewhere (or one that died)
            continue
        chunking.withdraw(queued)
        summary = finished.entities[0]
        summary.outcome.inserted = _inserted_elsewhere(ws, summary, done)
        return [*done, *finished.entities]


def _inserted_elsewhere(ws: Workspace, summary: EntityResult, done: list[EntityResult]) -> int:
    """Rows the chunks other workers ran inserted (their checkpoints say; a chunk resumed
    after a crash cannot, and counts 0)."""
    if summary.checkpoint_id is None:
        return 0
    store = StateStore(ws.state_schema)
    mine = {str(r.checkpoint_id) for r in done}
    with ws.engine.connect() as sa:
        whole = store.get_checkpoint(sa, summary.checkpoint_id)
        listed = whole.metadata.get("chunk_checkpoints")
        others = [UUID(str(i)) for i in listed or [] if str(i) not in mine]  # type: ignore[union-attr]
        counts = [store.get_checkpoint(sa, i).metadata.get("inserted") for i in others]
    return sum(n for n in counts if isinstance(n, int))


def run_one_chunk(ws: Workspace, entity: str, lo: int, hi: int, batch_size: int) -> str:
    """The body of a queued chunk task: the chunk, unless another worker runs it or it is
    done (then nothing)."""
    try:
        result = migrate_chunk(ws, entity, lo, hi, batch_size=batch_size)
    except EntityBusy as exc:
        log.info("%s chunk %d:%d: not taken (%s)", entity, lo, hi, exc)
        return "busy"
    log.info("%s chunk %d:%d: %s, %d row(s) read", entity, lo, hi, result.status, result.rows_read)
    return result.status
