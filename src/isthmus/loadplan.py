"""How one entity's rows go from the source table into its target table, column by column.

Built from the plan (what the config and the source say) and the target table as it is
(what PostgreSQL will accept). Every mismatch that would make the load fail is found here,
before a row moves, and named: the entity, the column, the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from isthmus.canonical import NORMALIZERS, CanonKind, FieldFn, Normalizer, SourceColumn, normalizer
from isthmus.dialects.base import Capabilities
from isthmus.errors import ConfigError
from isthmus.plan import Plan, PlannedEntity
from isthmus.target import TargetTable
from isthmus.tolerance import tolerant

Role = Literal["key", "value", "reference", "deferred"]


@dataclass(frozen=True)
class ColumnLoad:
    source: str
    target: str
    role: Role
    normalizer: Normalizer
    parent: str | None = None  # the parent entity of a reference
    tolerance: float | str | None = None  # compared after rounding to this step

    @property
    def kind(self) -> CanonKind:
        return self.normalizer.kind

    def tolerant(self, fn: FieldFn) -> FieldFn:
        """``fn`` then this column's tolerance rounding (``fn`` itself without one)."""
        if self.tolerance is None:
            return fn
        return tolerant(fn, self.kind, self.tolerance, f"tolerances.{self.source}")

    @property
    def any_text(self) -> FieldFn:
        """Canonical form of this column's fields in any text form (not only its reader's)."""
        return self.tolerant(NORMALIZERS[self.kind])


@dataclass(frozen=True)
class EntityLoad:
    planned: PlannedEntity
    target: TargetTable
    columns: tuple[ColumnLoad, ...]  # in read order: key columns first
    key_count: int  # how many leading columns are the key

    @property
    def name(self) -> str:
        return self.planned.name

    @property
    def uuid_keyed(self) -> bool:
        return self.planned.entity.uuid_keyed

    @property
    def source_table(self) -> str:
        return self.planned.entity.source_table

    @property
    def read_columns(self) -> list[str]:
        return [c.source for c in self.columns]

    @property
    def key_columns(self) -> list[str]:
        return [c.source for c in self.columns[: self.key_count]]

    @property
    def target_key(self) -> list[str]:
        """The target columns that identify a row (the UUID key, or the kept key)."""
        if self.uuid_keyed:
            return [self.columns[0].target]
        if self.target.primary_key:
            return list(self.target.primary_key)
        return [c.target for c in self.columns[: self.key_count]]

    @property
    def written(self) -> list[ColumnLoad]:
        """Columns written by the first pass, in the order of a target line."""
        return [c for c in self.columns if c.role != "deferred"]

    @property
    def deferred(self) -> list[ColumnLoad]:
        return [c for c in self.columns if c.role == "deferred"]

    @property
    def checksummed(self) -> list[ColumnLoad]:
        """Columns in the checksum: all but a UUID key, references as legacy parent IDs."""
        if self.uuid_keyed:
            return [c for c in self.columns if c.role != "key"]
        return list(self.columns)


def build_load(
    planned: PlannedEntity, target: TargetTable | None, plan: Plan, capabilities: Capabilities
) -> EntityLoad:
    """The load of ``planned`` into ``target``; ConfigError naming what cannot work."""
    entity = planned.entity
    where = f"entity {entity.name} (target table {entity.target_table})"
    if target is None:
        raise ConfigError(
            f"{where}: the target table does not exist; create it with `isthmus schema --apply`"
        )
    key_sources = [entity.key] if entity.key else list(entity.key_columns)
    order = key_sources + [c for c in entity.columns if c not in key_sources]
    columns: list[ColumnLoad] = []
    for source in order:
        target_name = entity.columns.get(source, source)
        tcol = target.column(target_name)
        if tcol is None:
            raise ConfigError(
                f"{where}: column {source!r} maps to target column {target_name!r}, which "
                f"{target.schema}.{target.name} does not have"
            )
        source_col = entity.source.column(source)
        described = SourceColumn(
            kind=source_col.kind if source_col else None,
            precision=source_col.precision if source_col else None,
            scale=source_col.scale if source_col else None,
            typed=capabilities.typed_values,
            pads_fractions=capabilities.pads_fractional_seconds,
        )
        parent = entity.references.get(source)
        role: Role
        if source == entity.key:
            role = "key"
            if tcol.kind != "uuid":
                raise ConfigError(
                    f"{where}: key column {target_name!r} is {tcol.type_name} in the target; "
                    "an integer key becomes a uuid"
                )
            norm = normalizer("integer", described)
        elif parent is not None and plan[parent].entity.uuid_keyed:
            role = "deferred" if source in planned.deferred else "reference"
            if tcol.kind != "uuid":
                raise ConfigError(
                    f"{where}: column {target_name!r} references {parent} and must be a uuid "
                    f"in the target, not {tcol.type_name}"
                )
            norm = normalizer("integer", described)
        else:
            role = "key" if source in key_sources else "value"
            norm = normalizer(tcol.kind, described)
        tolerance = entity.tolerances.get(source)
        if tolerance is not None:
            if role != "value":
                raise ConfigError(f"{where}: tolerances.{source}: keys and references are exact")
            canon = tolerant(norm.canonical, norm.kind, tolerance, f"{where}: tolerances.{source}")
            norm = Normalizer(norm.kind, canon, norm.to_target)
        columns.append(ColumnLoad(source, target_name, role, norm, parent, tolerance))
    missing = [
        c.name
        for c in target.columns.values()
        if not c.nullable and not c.has_default and c.name not in {x.target for x in columns}
    ]
    if missing:
        raise ConfigError(
            f"{where}: target column {missing[0]!r} is NOT NULL without a default and no "
            "source column maps to it (add it to columns = {...})"
        )
    return EntityLoad(planned, target, tuple(columns), key_count=len(key_sources))


def loose(load: EntityLoad) -> EntityLoad:
    """``load`` with every column normalised from any text form, not only its reader's
    (for rows fetched by key, whose text is not what ``stream_text`` prints)."""
    columns = []
    for c in load.columns:
        loose_norm = normalizer(c.kind, None)
        if c.tolerance is not None:
            canon = c.tolerant(loose_norm.canonical)
            loose_norm = Normalizer(c.kind, canon, loose_norm.to_target)
        columns.append(replace(c, normalizer=loose_norm))
    return replace(load, columns=tuple(columns))
