"""Read and transform the next batches while earlier ones are written, in order.

Writers run in background threads (``lanes``), each on its own database connection, so
PostgreSQL works on two batches at once (with the GIL released while it does). Their
commits, though, happen strictly in submission order: a writer prepares its batch, then
waits for its :class:`Turn` before it commits, so the committed batches always form a
prefix of the submitted ones and a checkpoint only ever moves forward. At most ``depth``
batches wait, so memory stays bounded by a few batches whatever the table size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar, cast

T = TypeVar("T")
_DONE = object()


class TurnAborted(Exception):
    """An earlier batch failed: this one must not commit."""


_NEVER = 1 << 62


class _Order:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.committed = -1
        self.failed_at = _NEVER  # the first batch that failed; later ones must not commit

    def fail(self, seq: int) -> None:
        with self.cond:
            self.failed_at = min(self.failed_at, seq)
            self.cond.notify_all()


class Turn:
    """``with turn:`` around a batch's commit: entered once every earlier batch committed."""

    def __init__(self, order: _Order, seq: int) -> None:
        self._order = order
        self.seq = seq

    def __enter__(self) -> Turn:
        order = self._order
        with order.cond:
            while order.committed != self.seq - 1 and order.failed_at > self.seq:
                order.cond.wait()
            if order.failed_at <= self.seq:
                raise TurnAborted(f"batch {self.seq}: an earlier batch failed")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        order = self._order
        with order.cond:
            if kind is None:
                order.committed = self.seq
            else:
                order.failed_at = min(order.failed_at, self.seq)
            order.cond.notify_all()


Writer = Callable[[T, int, Turn], None]  # (item, lane, turn)


class Pipeline(Generic[T]):
    def __init__(
        self, write: Writer[T], *, lanes: int = 1, depth: int = 2, name: str = "writer"
    ) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._order = _Order()
        self._seq = 0
        self._error: BaseException | None = None
        self._error_seq = _NEVER
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(lane,), name=f"isthmus-{name}-{lane}", daemon=True
            )
            for lane in range(lanes)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, lane: int) -> None:
        while True:
            job = self._queue.get()
            if job is _DONE:
                self._queue.put(_DONE)  # for the other lanes
                return
            if self._stop.is_set():
                continue  # dropped: let the queue drain to _DONE
            seq, item = cast("tuple[int, T]", job)
            try:
                self._write(item, lane, Turn(self._order, seq))
            except TurnAborted:
                continue
            except BaseException as exc:  # handed to the submitting thread
                self._order.fail(seq)
                with self._order.cond:  # the earliest failure is the one to report
                    if self._error is None or seq < self._error_seq:
                        self._error, self._error_seq = exc, seq
                self._stop.set()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: T) -> None:
        """Queue ``item`` for writing; raises a writer's error if one has failed."""
        job = (self._seq, item)
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(job, timeout=0.2)
                self._seq += 1
                return
            except queue.Full:
                if not any(t.is_alive() for t in self._threads):
                    self._raise_if_failed()
                    raise RuntimeError("the writer threads stopped") from None

    def close(self) -> None:
        """Wait until everything submitted is written; raise a writer's error if any."""
        self._finish()
        self._raise_if_failed()

    def abort(self) -> None:
        """Write nothing more: batches being written finish in order (commit or roll back),
        queued ones are dropped. Safe to call after ``close`` or a failure."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._finish()

    def _finish(self) -> None:
        while any(t.is_alive() for t in self._threads):
            try:
                self._queue.put(_DONE, timeout=0.2)
                break
            except queue.Full:
                continue
        for thread in self._threads:
            thread.join()
