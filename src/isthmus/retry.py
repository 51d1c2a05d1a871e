"""Retry with exponential backoff, for transient database errors only."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from isthmus.errors import TransientDatabaseError

T = TypeVar("T")
log = logging.getLogger(__name__)


def with_retries(
    operation: Callable[[], T],
    *,
    attempts: int = 5,
    first_delay: float = 0.2,
    max_delay: float = 10.0,
    what: str = "operation",
) -> T:
    """Run ``operation``; on TransientDatabaseError wait and try again, up to ``attempts`` times."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except TransientDatabaseError as exc:
            if attempt == attempts:
                raise
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.1fs: %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")
