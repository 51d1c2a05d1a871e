"""What every part of the state store shares: the tables of one schema, row <-> model, errors."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Connection, CursorResult, Executable, Row, Table

from isthmus.state.db_errors import NotFound, refused_as_isthmus_error
from isthmus.state.models import ControlRow
from isthmus.state.schema import check_schema_name
from isthmus.state.tables import DEFAULT_SCHEMA, build_metadata

ModelT = TypeVar("ModelT", bound=ControlRow)


class StoreBase:
    """The control tables of ``schema``; methods take the caller's Connection (and transaction)."""

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        self.schema = check_schema_name(schema)
        tables = build_metadata(schema).tables
        self.jobs: Table = tables[f"{schema}.synchronization_jobs"]
        self.checkpoints: Table = tables[f"{schema}.migration_checkpoints"]
        self.differentials: Table = tables[f"{schema}.data_differentials"]
        self.reports: Table = tables[f"{schema}.migration_validation_reports"]
        self.mappings: Table = tables[f"{schema}.legacy_id_mappings"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schema={self.schema!r})"

    @staticmethod
    def _execute(
        conn: Connection,
        statement: Executable,
        table: Table,
        params: Mapping[str, Any] | None = None,
    ) -> CursorResult[Any]:
        with refused_as_isthmus_error(table.name):
            return conn.execute(statement, dict(params) if params is not None else None)


def column_values(
    model: ControlRow, *, exclude: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A model's fields as column values (enums as their plain text)."""
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in model.model_dump(exclude=set(exclude)).items()
    }


def load(model: type[ModelT], row: Row[Any]) -> ModelT:
    """A stored row as a model; stored rows are trusted, except where types must be coerced."""
    return model.model_validate(dict(row._mapping), context={"from_db": True})


def as_uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} {value!r} is not a valid id (a UUID)") from None
