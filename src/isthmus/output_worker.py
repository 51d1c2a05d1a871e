"""How ``isthmus worker`` and runs handed to the workers print (``--json``: their dicts)."""

from __future__ import annotations

from typing import Any

from isthmus.output import console
from isthmus.output_jobs import show_run


def show_queued(queued: Any) -> None:
    if queued.already_queued:
        console.print(
            f"job {queued.job}: a run waits in the queue already (queue job "
            f"{queued.queue_job_id}); an isthmus worker will execute it",
            markup=False,
        )
    else:
        console.print(
            f"job {queued.job}: run queued (queue job {queued.queue_job_id}); an isthmus "
            "worker will execute it",
            markup=False,
        )


def show_run_or_queued(result: Any) -> None:
    """``jobs run`` / ``jobs resume``: a run done here, or one handed to the workers."""
    if getattr(result, "queue_job_id", None) is not None:
        show_queued(result)
    else:
        show_run(result)


def show_worker(result: Any) -> None:
    s = result.stats
    console.print(
        f"worker {result.name} stopped ({result.stopped}): {s.runs} run(s) done, "
        f"{s.failed} failed, {s.busy} skipped as busy, {s.skipped} no longer due; "
        f"{s.queued} due run(s) queued",
        markup=False,
    )
