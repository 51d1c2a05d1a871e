"""Read and transform the next batch while the previous one is written.

The writer runs in one background thread and commits batches strictly in the order they
were submitted (so a checkpoint only ever moves forward). While it waits for PostgreSQL it
holds no GIL, and the reading thread uses that time. At most ``depth`` batches wait, so
memory stays bounded by a few batches whatever the table size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class WriterFailed(Exception):
    """Internal: carries the writer thread's exception to the submitting thread."""


class Pipeline(Generic[T]):
    def __init__(self, write: Callable[[T], None], *, depth: int = 2, name: str = "writer") -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"isthmus-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE or self._stop.is_set():
                return
            try:
                self._write(item)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the submitting thread
                self._error = exc
                self._stop.set()
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: T) -> None:
        """Queue ``item`` for writing; raises the writer's error if it has failed."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise_if_failed()
                    raise RuntimeError("the writer thread stopped") from None

    def close(self) -> None:
        """Wait until everything submitted is written; raise the writer's error if any."""
        self._put_done()
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Write nothing more: the batch being written finishes (commits or fails), queued
        ones are dropped. Safe to call after ``close`` or a failure."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._put_done()
        self._thread.join()

    def _put_done(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(_DONE, timeout=0.2)
                return
            except queue.Full:
                continue
