"""How hard the reliability tests push: a smoke run by default (part of `make test` and CI),
the full trials of docs/reliability.md with ``ISTHMUS_CHAOS_FULL=1`` (`make chaos`)."""

from __future__ import annotations

import os

FULL = os.environ.get("ISTHMUS_CHAOS_FULL", "") not in ("", "0")


def trials(smoke: int, full: int) -> int:
    """How many trials (kill points, faults) a test makes."""
    return full if FULL else smoke


def rows(smoke: int, full: int) -> int:
    """How many source rows a test works on."""
    return full if FULL else smoke
