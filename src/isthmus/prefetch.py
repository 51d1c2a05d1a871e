"""Run a slow iterator ahead of its consumer, in a thread: both sides of a comparison then
work at once, while at most ``depth`` items wait in memory."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def ahead(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """``items``, produced by a thread of its own up to ``depth`` ahead; an exception there
    is raised here; a consumer that stops early stops the thread at its next item."""
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        waiting.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            waiting.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            waiting.put(exc)

    thread = threading.Thread(target=produce, name="isthmus-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = waiting.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)
