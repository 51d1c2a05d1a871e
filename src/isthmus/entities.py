"""Entities resolved against the source's reflection: the config's sections, checked and completed.

Without any ``[entities.*]`` every source table is an entity; with them, exactly
those are. Keys, column maps and references are inferred where the file leaves
them out. Every name the file gives is checked against the database, and a
wrong one is one line naming the key, the value and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.config import Config, EntityConfig
from isthmus.dialects.base import SchemaInfo, Table
from isthmus.errors import ConfigError


@dataclass(frozen=True)
class Entity:
    """One table to move: where it comes from, where it goes, how its columns and keys map."""

    name: str
    source: Table
    target_table: str
    key: str | None  # the single integer key that gets UUIDs; None: the table keeps its key
    key_columns: tuple[str, ...]  # what orders and bounds the keyset reads
    target_key: str | None
    columns: dict[str, str]  # source column -> target column, in source order (key included)
    references: dict[str, str]  # FK source column -> parent entity name
    updated_at: str | None = None
    target_updated_at: str | None = None
    soft_delete: str | None = None  # target column marking rows deleted there
    tolerances: dict[str, float | str] = field(default_factory=dict)  # source column → step
    notes: tuple[str, ...] = field(default=())

    @property
    def uuid_keyed(self) -> bool:
        return self.key is not None

    @property
    def source_table(self) -> str:
        return self.source.name

    def nullable(self, column: str) -> bool:
        col = self.source.column(column)
        return col is None or col.nullable


def resolve_entities(config: Config, schema: SchemaInfo) -> list[Entity]:
    """The entities of ``config`` checked against ``schema``, in the file's (or alphabetical) order."""
    where = config.where
    sections = dict(config.entities) or {name: EntityConfig() for name in sorted(schema.tables)}
    table_owner = {(spec.source_table or name): name for name, spec in sections.items()}
    entities = [
        _resolve_one(name, spec, schema, table_owner, where) for name, spec in sections.items()
    ]
    if not entities:
        raise ConfigError(f"{where}: the source database has no tables to migrate")
    return entities


def _resolve_one(
    name: str, spec: EntityConfig, schema: SchemaInfo, table_owner: dict[str, str], where: str
) -> Entity:
    here = f"{where}: entities.{name}"
    table_name = spec.source_table or name
    table = schema.tables.get(table_name)
    if table is None:
        hint = " (it is a view: views are not copied)" if table_name in schema.views else ""
        raise ConfigError(
            f"{here}.source_table = {table_name!r}: no such table in the source database{hint}"
        )

    def require(column: str, key: str) -> str:
        if table.column(column) is None:
            raise ConfigError(
                f"{here}.{key} = {column!r}: table {table_name} has no column {column!r}"
            )
        return column

    notes: list[str] = []
    key = require(spec.key, "key") if spec.key else table.integer_key
    if spec.key:
        col = table.column(spec.key)
        if col is not None and col.kind != "integer":
            raise ConfigError(
                f"{here}.key = {spec.key!r}: column is {col.type_name}, not an integer"
            )
    if key is None:
        notes.append("no single integer key: keeps its key, FK columns translated")
    key_columns = (key,) if key else table.primary_key or table.column_names
    if not table.primary_key and key is None:
        notes.append("no primary key: rows are ordered by all their columns")

    for column in spec.exclude:
        require(column, "exclude")
    if key in spec.exclude:
        raise ConfigError(f"{here}.exclude: the key column {key!r} cannot be excluded")
    renames = _renames(spec, table, here)
    columns = {c: renames.get(c, c) for c in table.column_names if c not in spec.exclude}
    if key and spec.target_key:  # the key's target column is target_key (the DDL names it so)
        if renames.get(key, spec.target_key) != spec.target_key:
            raise ConfigError(
                f"{here}.target_key = {spec.target_key!r}: the key {key!r} is renamed to "
                f"{renames[key]!r} in columns"
            )
        columns[key] = spec.target_key
    _check_unique_targets(columns, here)

    references = _references(spec, table, table_owner, here, notes)
    if spec.updated_at:
        require(spec.updated_at, "updated_at")
    for column in spec.tolerances:
        require(column, f"tolerances.{column}")
    return Entity(
        name=name,
        source=table,
        target_table=spec.target_table or name,
        key=key,
        key_columns=tuple(key_columns),
        target_key=(spec.target_key or columns.get(key, key)) if key else None,
        columns=columns,
        references=references,
        updated_at=spec.updated_at,
        target_updated_at=spec.target_updated_at
        or (columns.get(spec.updated_at) if spec.updated_at else None),
        soft_delete=spec.soft_delete,
        tolerances=dict(spec.tolerances),
        notes=tuple(notes),
    )


def _renames(spec: EntityConfig, table: Table, here: str) -> dict[str, str]:
    """``columns = {a = "b"}`` renames source column a to target column b.

    Written the other way round (target = "source"), it is read that way too,
    since only one of the two names can be a column of the source table.
    """
    renames: dict[str, str] = {}
    for left, right in spec.columns.items():
        if table.column(left) is not None:
            renames[left] = right
        elif table.column(right) is not None:
            renames[right] = left
        else:
            raise ConfigError(
                f"{here}.columns.{left} = {right!r}: table {table.name} has neither column"
            )
    return renames


def _check_unique_targets(columns: dict[str, str], here: str) -> None:
    seen: dict[str, str] = {}
    for source, target in columns.items():
        if target in seen:
            raise ConfigError(
                f"{here}.columns: {seen[target]!r} and {source!r} both map to target column {target!r}"
            )
        seen[target] = source


def _references(
    spec: EntityConfig,
    table: Table,
    table_owner: dict[str, str],
    here: str,
    notes: list[str],
) -> dict[str, str]:
    refs: dict[str, str] = {}
    for fk in table.foreign_keys:
        if fk.columns[0] in spec.exclude or fk.columns[0] in spec.references:
            continue
        if len(fk.columns) != 1:
            notes.append(
                f"composite foreign key ({', '.join(fk.columns)}) → {fk.ref_table} copied as is"
            )
            continue
        parent = table_owner.get(fk.ref_table)
        if parent is None:
            raise ConfigError(
                f"{here}: column {fk.columns[0]!r} references table {fk.ref_table!r}, which is not an entity "
                f"(add [entities.{fk.ref_table}], exclude the column, or set references)"
            )
        refs[fk.columns[0]] = parent
    for column, parent in spec.references.items():
        if table.column(column) is None:
            raise ConfigError(f"{here}.references: table {table.name} has no column {column!r}")
        refs[column] = parent
    return refs
