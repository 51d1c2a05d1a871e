"""What the app's requests share: the config, one state-store engine, the background tasks
and, for a short while, the plan."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request

from isthmus.api.tasks import Tasks
from isthmus.config import Config
from isthmus.plan import Plan
from isthmus.workspace import Workspace

PLAN_TTL_SECONDS = 30.0  # the plan (source reflection) is reused this long


class ApiState:
    """``app.state.isthmus``: the config, the bearer token (None: no auth), one SQLAlchemy
    engine on the target for the app's lifetime, and the background tasks."""

    def __init__(self, config: Config, token: str | None) -> None:
        self.config = config
        self.token = token
        self.tasks = Tasks()
        self._base = Workspace(config)  # owns the shared engine; closed with the app
        self._plan_lock = threading.Lock()
        self._plan: tuple[float, Plan] | None = None

    @property
    def engine(self) -> sa.Engine:
        """The shared engine (connections pooled; created on first use)."""
        return self._base.engine

    @property
    def state_schema(self) -> str:
        return self.config.target.state_schema

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        """A Workspace on the shared engine, for the library functions that take one; the
        source, if it is touched, is opened for this workspace and closed with it."""
        ws = _ServerWorkspace(self)
        try:
            yield ws
        finally:
            ws.close()

    def plan(self, reflect: Callable[[], Plan]) -> Plan:
        """The plan, reflected from the source (``reflect``) at most every PLAN_TTL_SECONDS."""
        with self._plan_lock:
            if self._plan is not None and time.monotonic() - self._plan[0] < PLAN_TTL_SECONDS:
                return self._plan[1]
        fresh = reflect()
        with self._plan_lock:
            self._plan = (time.monotonic(), fresh)
        return fresh

    def close(self) -> None:
        self._base.close()


class _ServerWorkspace(Workspace):
    def __init__(self, shared: ApiState) -> None:
        super().__init__(shared.config)
        self._shared = shared

    @cached_property
    def engine(self) -> sa.Engine:
        return self._shared.engine

    @cached_property
    def plan(self) -> Plan:
        return self._shared.plan(lambda: super(_ServerWorkspace, self).plan)


def api_state(request: Request) -> ApiState:
    """The dependency that hands a route the app's :class:`ApiState`."""
    state: ApiState = request.app.state.isthmus
    return state


State = Annotated[ApiState, Depends(api_state)]  # a route's parameter: the app's ApiState
