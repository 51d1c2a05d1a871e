"""What a command works on: the config, and lazily the source, its plan and the target."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import psycopg
import sqlalchemy as sa

from isthmus import target_pool
from isthmus.config import Config
from isthmus.dialects import open_source, pgconn
from isthmus.dialects.base import SchemaInfo, SourceDialect
from isthmus.entities import Entity, resolve_entities
from isthmus.errors import ConfigError, one_line
from isthmus.plan import Plan, build_plan
from isthmus.retry import with_retries


class Workspace:
    """Opens each database once, when first needed, and closes them together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._closers: list[Callable[[], None]] = []

    @property
    def state_schema(self) -> str:
        return self.config.target.state_schema

    @cached_property
    def source(self) -> SourceDialect:
        src = with_retries(
            lambda: open_source(self.config.source.database_url), what="connecting to the source"
        )
        self._closers.append(src.close)
        return src

    @cached_property
    def source_schema(self) -> SchemaInfo:
        return with_retries(self.source.reflect, what="reading the source schema")

    @cached_property
    def entities(self) -> list[Entity]:
        try:
            return resolve_entities(self.config, self.source_schema)
        except ConfigError as exc:  # names from the file may hold line breaks
            raise ConfigError(one_line(str(exc))) from None

    @cached_property
    def plan(self) -> Plan:
        entities = self.entities  # outside the try: its errors name the config file already
        try:
            return build_plan(
                entities, views=self.source_schema.views, notes=self.source_schema.notes
            )
        except ConfigError as exc:
            raise ConfigError(f"{self.config.where}: {exc}") from None

    @cached_property
    def target_conninfo(self) -> str:
        return pgconn.conninfo(self.config.target.database_url)

    @cached_property
    def engine(self) -> sa.Engine:
        if target_pool.enabled():  # a worker: one pooled engine for all its runs
            return target_pool.engine(self.target_conninfo)
        url = "postgresql+psycopg" + self.target_conninfo[len("postgresql") :]
        engine = sa.create_engine(url, pool_pre_ping=True)
        self._closers.append(engine.dispose)
        return engine

    def connect_target(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A plain psycopg connection to the target, for COPY and the hot path."""
        with pgconn.translated():
            return psycopg.connect(self.target_conninfo, **kwargs)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
