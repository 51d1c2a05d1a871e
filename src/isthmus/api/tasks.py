"""Long work the server runs beside its requests: job runs and validations, one thread each.

A request that starts such work answers at once (202) with the task; ``GET /api/tasks/{id}``
(and, for a job, ``GET /api/jobs/{name}``) tells how it ends. Work with the same ``key`` (a
job's id; ``validate``) runs once at a time in this server: asking again while it runs is a
409. Runs started elsewhere (the CLI, a worker) are kept out by the library's own locks.
The newest finished tasks are remembered (:data:`KEEP`), not stored: they are gone with the
server process, while what the work did stays in the state tables.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from isthmus.api.errors import Conflict, one_line
from isthmus.state.db_errors import NotFound

log = logging.getLogger("isthmus.api")

KEEP = 100  # finished tasks remembered


class Outcome(Protocol):
    @property
    def exit_code(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...


TaskKind = Literal["job_run", "validate"]


@dataclass
class TaskState:
    id: UUID
    kind: TaskKind
    subject: str
    key: str
    started_at: datetime
    status: Literal["running", "done", "failed"] = "running"
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    exit_code: int | None = None
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "exit_code": self.exit_code,
            "error": self.error,
        }


class Tasks:
    """This server's background work, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[UUID, TaskState] = {}

    def start(
        self,
        kind: TaskKind,
        subject: str,
        key: str,
        work: Callable[[], Outcome],
        *,
        busy: str,
    ) -> TaskState:
        """Run ``work`` in a thread of its own; Conflict (``busy``) while a task with the
        same ``key`` runs."""
        with self._lock:
            for task in self._tasks.values():
                if task.key == key and task.status == "running":
                    raise Conflict(f"{busy} (task {task.id})")
            task = TaskState(uuid.uuid4(), kind, subject, key, datetime.now(UTC))
            self._tasks[task.id] = task
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(task, work), name=f"isthmus-{kind}-{task.id}", daemon=True
        )
        task.thread = thread
        thread.start()
        return task

    def _run(self, task: TaskState, work: Callable[[], Outcome]) -> None:
        try:
            outcome = work()
        except BaseException as exc:
            log.warning("%s %s failed: %s", task.kind, task.subject, one_line(exc))
            with self._lock:
                task.status, task.error = "failed", one_line(exc)
                task.exit_code = int(getattr(exc, "exit_code", 3))
                task.finished_at = datetime.now(UTC)
            return
        with self._lock:
            task.status = "done"
            task.result = outcome.to_dict()
            task.exit_code = outcome.exit_code
            task.finished_at = datetime.now(UTC)

    def _forget_old(self) -> None:
        finished = [t for t in self._tasks.values() if t.status != "running"]
        finished.sort(key=lambda t: t.started_at)
        for task in finished[: max(0, len(finished) - KEEP)]:
            del self._tasks[task.id]

    def get(self, task_id: UUID) -> dict[str, Any]:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise NotFound(f"no task with id {task_id} in this server")
            return task.view()

    def all(self) -> list[dict[str, Any]]:
        """Every task remembered, newest first."""
        with self._lock:
            found = sorted(self._tasks.values(), key=lambda t: t.started_at, reverse=True)
            return [t.view() for t in found]

    def newest(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = [t for t in self._tasks.values() if t.key == key]
            return max(found, key=lambda t: t.started_at).view() if found else None

    def running(self, kind: TaskKind | None = None) -> list[TaskState]:
        with self._lock:
            return [
                t
                for t in self._tasks.values()
                if t.status == "running" and (kind is None or t.kind == kind)
            ]

    def join(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds in all) for the running tasks to end."""
        end = time.monotonic() + timeout
        for task in self.running():
            if task.thread is not None:
                task.thread.join(max(0.0, end - time.monotonic()))
