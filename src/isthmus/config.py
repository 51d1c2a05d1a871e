"""``isthmus.toml``: typed, validated, with ``${VAR}`` expansion and clear one-line errors.

The file is checked in two steps. ``load_config`` checks what can be checked
without a database (keys, types, URLs, references between entities).
``resolve_entities`` (in ``entities.py``) then checks the file against the
source's reflection (tables, columns, cycles) and infers what was left out.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from isthmus.errors import ConfigError, one_line
from isthmus.urls import DatabaseURL, mask_secrets, parse_url

DEFAULT_CONFIG = "isthmus.toml"
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_IDENTIFIER_MAX = 63


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    url: str

    @property
    def database_url(self) -> DatabaseURL:
        return parse_url(self.url, where="source.url")


class TargetConfig(_Strict):
    url: str
    state_schema: str = "isthmus"
    schema_: str = Field("public", alias="schema")  # where the target tables live (addition)

    @property
    def database_url(self) -> DatabaseURL:
        return parse_url(self.url, where="target.url")


class MigrationConfig(_Strict):
    batch_size: int = Field(10_000, gt=0, le=1_000_000)
    uuid: Literal["uuid7", "uuid4", "uuid5"] = "uuid7"
    uuid_namespace: UUID | None = None
    on_orphan: Literal["quarantine", "null", "fail"] = "quarantine"
    # a differential_migration job run by workers splits entities of at least twice this
    # many rows into chunks of about this many, which the workers take in parallel
    chunk_rows: int = Field(250_000, ge=1_000)
    # a transient database error (a dropped connection, a restarted server, a deadlock, a
    # timeout, a full disk) is retried this many times, after retry_delay seconds, doubling
    # each time up to 10 s (addition)
    retries: int = Field(5, ge=0, le=1_000)
    retry_delay: float = Field(0.5, gt=0, le=60)


class DiffConfig(_Strict):
    """``[diff]`` (addition): how differentials are computed and stored."""

    resolution: Literal["source_wins", "target_wins", "manual_review", "skip"] = "source_wins"
    sample_conflicts: int = Field(100, ge=0, le=10_000)  # conflicted rows stored with values
    cursor_overlap_seconds: float = Field(300.0, ge=0)  # how far back a cursor diff looks again
    segment_rows: int = Field(256, ge=8, le=1_000_000)  # rows per segment checksum


class RetentionConfig(_Strict):
    """``[retention]`` (addition): how long ``isthmus prune`` keeps finished history."""

    days: int = Field(30, ge=1)  # checkpoints, resolved differentials, expired reports, …


class ValidationConfig(_Strict):
    """``[validation]`` (addition): how ``isthmus validate`` checks and how long reports last."""

    expires_hours: float = Field(168.0, gt=0)  # a report older than this is shown as stale
    samples: int = Field(20, ge=1, le=10_000)  # discrepancies kept per kind in a report
    # data_integrity: 0 compares every row; N compares a random sample of N rows per entity
    sample_rows: int = Field(0, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)  # of a sample's stated bound
    # performance_check thresholds
    min_rows_per_second: float = Field(1_000.0, ge=0)  # of the last migration / sync run
    max_lookup_ms: float = Field(50.0, gt=0)  # p95 of one ID-map lookup
    max_query_ms: float = Field(250.0, gt=0)  # p95 of a representative target query
    query_samples: int = Field(50, ge=1, le=10_000)  # timed lookups and queries per entity


class EntityConfig(_Strict):
    source_table: str | None = None
    target_table: str | None = None
    key: str | None = None
    target_key: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)
    references: dict[str, str] = Field(default_factory=dict)
    updated_at: str | None = None
    target_updated_at: str | None = None
    soft_delete: str | None = None  # target column set (not NULL/true) on rows deleted there
    tolerances: dict[str, float | str] = Field(default_factory=dict)  # column → step

    @field_validator(
        "source_table",
        "target_table",
        "key",
        "target_key",
        "updated_at",
        "target_updated_at",
        "soft_delete",
    )
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value


class Config(_Strict):
    source: SourceConfig
    target: TargetConfig
    migration: MigrationConfig = Field(default_factory=MigrationConfig)  # type: ignore[arg-type]
    diff: DiffConfig = Field(default_factory=DiffConfig)  # type: ignore[arg-type]
    retention: RetentionConfig = Field(default_factory=RetentionConfig)  # type: ignore[arg-type]
    validation: ValidationConfig = Field(default_factory=ValidationConfig)  # type: ignore[arg-type]
    entities: dict[str, EntityConfig] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "config"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, expand and validate the config file (``./isthmus.toml`` when ``path`` is None)."""
    file = Path(path) if path is not None else Path(DEFAULT_CONFIG)
    if not file.is_file():
        raise ConfigError(
            f"{file}: config file not found (pass --config FILE or create ./{DEFAULT_CONFIG})"
        )
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text: {exc}") from exc
    return config_from_dict(raw, where=str(file), path=file)


def config_from_dict(
    raw: dict[str, Any], *, where: str = "config", path: Path | None = None
) -> Config:
    try:
        return _config_from_dict(raw, where=where, path=path)
    except ConfigError as exc:  # keys and values quoted in it may hold line breaks
        raise ConfigError(one_line(str(exc))) from None


def _config_from_dict(raw: dict[str, Any], *, where: str, path: Path | None) -> Config:
    expanded = _expand(raw, where=where, trail=())
    try:
        config = Config.model_validate({**expanded, "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, expanded)) from None
    _check_urls(config, where)
    _check_semantics(config, where)
    return config


def _expand(value: Any, *, where: str, trail: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, where=where, key=".".join(trail))
    if isinstance(value, dict):
        return {k: _expand(v, where=where, trail=(*trail, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where=where, trail=trail) for v in value]
    return value


def _expand_string(text: str, *, where: str, key: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: {key}: environment variable {name} is not set (used as ${{{name}}})"
        )

    return _VAR.sub(substitute, text)


def _describe(exc: ValidationError, where: str, raw: dict[str, Any]) -> str:
    """One line for the first error: the key, the value and what is wrong with it."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key {loc!r}{_suggest(err['loc'])}"
    if kind == "missing":
        return f"{where}: missing required key {loc!r}"
    value = mask_secrets(repr(err.get("input")))
    message = err["msg"]
    if "." not in loc and loc in ("source", "target", "migration", "entities"):
        return f"{where}: [{loc}] must be a table, got {value}"
    return f"{where}: {loc} = {value}: {message}"


_KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("source", "target", "migration", "diff", "retention", "validation", "entities"),
    "source": tuple(SourceConfig.model_fields),
    "target": ("url", "state_schema", "schema"),
    "migration": tuple(MigrationConfig.model_fields),
    "diff": tuple(DiffConfig.model_fields),
    "retention": tuple(RetentionConfig.model_fields),
    "validation": tuple(ValidationConfig.model_fields),
    "entity": tuple(EntityConfig.model_fields),
}


def _suggest(loc: tuple[int | str, ...]) -> str:
    import difflib

    section = (
        "entity"
        if len(loc) >= 3 and loc[0] == "entities"
        else (str(loc[0]) if len(loc) > 1 else "")
    )
    known = _KNOWN_KEYS.get(section, ())
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return (
        f" (did you mean {close[0]!r}?)"
        if close
        else f" (known keys: {', '.join(known)})"
        if known
        else ""
    )


def _check_urls(config: Config, where: str) -> None:
    for key, url in (("source.url", config.source.url), ("target.url", config.target.url)):
        try:
            parsed = parse_url(url, where=key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if key == "target.url" and parsed.dialect not in ("postgresql", "embedded"):
            raise ConfigError(
                f"{where}: target.url = {parsed.masked()!r}: the target must be PostgreSQL (postgresql://… or embedded://)"
            )


def _check_semantics(config: Config, where: str) -> None:
    mig = config.migration
    if mig.uuid == "uuid5" and mig.uuid_namespace is None:
        raise ConfigError(
            f"{where}: migration.uuid = 'uuid5' needs migration.uuid_namespace (a UUID)"
        )
    for name in (config.target.state_schema, config.target.schema_):
        if not name or len(name) > _IDENTIFIER_MAX:
            raise ConfigError(
                f"{where}: target schema name {name!r} must be 1 to {_IDENTIFIER_MAX} characters"
            )
    for entity, spec in config.entities.items():
        for column, parent in spec.references.items():
            if parent not in config.entities:
                raise ConfigError(
                    f"{where}: entities.{entity}.references.{column} = {parent!r}: no entity named {parent!r}"
                )
        overlap = set(spec.exclude) & set(spec.columns)
        if overlap:
            col = sorted(overlap)[0]
            raise ConfigError(
                f"{where}: entities.{entity}: column {col!r} is both renamed and excluded"
            )
