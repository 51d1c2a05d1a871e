"""The two state machines of data-model.md, checked in Python before the store writes.

The database refuses the same moves (a trigger per table, written in migration 0001 with
the same edges and the same message), so a writer that bypasses Python is stopped too.
Writing the status a row already has is not a transition and is always allowed: an
update of other fields may carry the unchanged status along.
"""

from __future__ import annotations

from collections.abc import Mapping

from isthmus.errors import IllegalTransition

CHECKPOINT_TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "pending": ("in_progress",),
    "in_progress": ("completed", "failed", "paused"),
    "completed": (),
    "failed": ("in_progress",),
    "paused": ("in_progress",),
}

JOB_TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "scheduled": ("running",),
    "running": ("completed", "failed", "paused", "cancelled"),
    "completed": ("scheduled",),
    "failed": (),
    "paused": ("running",),
    "cancelled": (),
}


def transition_message(kind: str, who: object, old: str, new: str, allowed: tuple[str, ...]) -> str:
    """The one-line refusal, identical to the database trigger's."""
    subject = f"{kind} {who}" if who is not None else kind
    return (
        f"{subject}: cannot go from {old} to {new} "
        f"(allowed from {old}: {', '.join(allowed) or 'none'})"
    )


def _check(
    kind: str, machine: Mapping[str, tuple[str, ...]], old: str, new: str, who: object
) -> None:
    old, new = str(old), str(new)
    for status in (old, new):
        if status not in machine:
            subject = f"{kind} {who}" if who is not None else kind
            raise IllegalTransition(
                f"{subject}: unknown status {status!r} (known: {', '.join(machine)})"
            )
    if old == new:
        return
    allowed = machine[old]
    if new not in allowed:
        raise IllegalTransition(transition_message(kind, who, old, new, allowed))


def check_checkpoint_transition(old: str, new: str, checkpoint_id: object = None) -> None:
    """Raise IllegalTransition unless a checkpoint may go from ``old`` to ``new``."""
    _check("checkpoint", CHECKPOINT_TRANSITIONS, old, new, checkpoint_id)


def check_job_transition(old: str, new: str, job: object = None) -> None:
    """Raise IllegalTransition unless a job may go from ``old`` to ``new`` (``job``: its name)."""
    _check("job", JOB_TRANSITIONS, old, new, job)
