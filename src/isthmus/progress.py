"""Progress bars on a terminal (rows, rows/s, ETA per entity); nothing when output is piped."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RowProgress:
    """Implements ``isthmus.migrate_result.Progress`` with rich, on standard error."""

    def __init__(self) -> None:
        self._bars = Progress(
            TextColumn("[bold]{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def start(self, entity: str, total: int, done: int) -> None:
        self._tasks[entity] = self._bars.add_task(
            entity, total=max(total, done), completed=done, rate="-"
        )

    def advance(self, entity: str, rows: int) -> None:
        task_id = self._tasks[entity]
        task = self._bars.tasks[task_id]
        total = task.total or 0
        if task.completed + rows > total:
            self._bars.update(task_id, total=task.completed + rows)
        speed = task.speed
        self._bars.update(task_id, advance=rows, rate=f"{speed:,.0f}" if speed else "-")

    def finish(self, entity: str) -> None:
        task_id = self._tasks.get(entity)
        if task_id is not None:
            task = self._bars.tasks[task_id]
            self._bars.update(task_id, total=task.completed)

    def __enter__(self) -> RowProgress:
        self._bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.stop()


def wanted(as_json: bool) -> bool:
    """Bars only for a person at a terminal."""
    return not as_json and sys.stderr.isatty()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command the way Ctrl-C does (a batch rolled back, checkpoint paused)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
