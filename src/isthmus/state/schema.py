"""Create or upgrade the state schema (``isthmus init``), and check that it is current.

The upgrade runs in one transaction under a transaction-scoped advisory lock, so two
``init`` at once serialise: the second finds the schema current and changes nothing.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from isthmus.errors import ConfigError, UsageError

if TYPE_CHECKING:  # alembic is imported only to upgrade: a command's start stays quick
    from alembic.config import Config
    from alembic.script import ScriptDirectory
from isthmus.state.db_errors import refused_as_isthmus_error
from isthmus.state.tables import DEFAULT_SCHEMA

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
CONTROL_TABLES = (
    "synchronization_jobs",
    "migration_checkpoints",
    "data_differentials",
    "migration_validation_reports",
    "legacy_id_mappings",
    "quarantined_rows",
    "pending_ddl",
    "target_deletions",
)
# First key of the two-key advisory lock; the second is the hash of the schema name.
_LOCK_CLASS = 0x15_7A_05

# Alembic's ``context`` and ``op`` are process-wide proxies: one upgrade at a time per process
# (the advisory lock serialises processes, for one schema).
_ALEMBIC_IN_USE = threading.Lock()

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StateSchemaNotReady(UsageError):
    """The state schema is absent, behind, or from a newer isthmus."""


@dataclass(frozen=True)
class InitResult:
    schema: str
    revision_before: str | None
    revision_after: str
    created: bool
    upgraded: bool
    queue_created: bool = False  # procrastinate's tables applied now (``isthmus init``)


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a plain lowercase identifier, else ConfigError."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"target.state_schema: {schema!r} is not a valid schema name "
            "(lowercase letters, digits and _, not starting with a digit, at most 63)"
        )
    return schema


def alembic_config(schema: str, connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["state_schema"] = schema
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(DEFAULT_SCHEMA))


@cache
def known_revisions() -> tuple[str, ...]:
    """The packaged revisions, oldest first, read from the file names (``0003_….py``
    is revision ``0003``; a test holds them equal to Alembic's own reading)."""
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert names, "no migration scripts are packaged"
    return tuple(name[:4] for name in names)


def head_revision() -> str:
    """The newest revision this isthmus knows."""
    return known_revisions()[-1]


def _revision(conn: Connection, schema: str) -> str | None:
    table = conn.execute(
        text("SELECT to_regclass(:name)"), {"name": f'"{schema}".{VERSION_TABLE}'}
    ).scalar()
    if table is None:
        return None
    # schema is a checked identifier (check_schema_name), quoted
    query = f'SELECT version_num FROM "{schema}".{VERSION_TABLE}'  # noqa: S608
    return conn.execute(text(query)).scalar()


def _unmanaged_tables(conn: Connection, schema: str) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = :schema AND table_name = ANY(:names) ORDER BY table_name"
        ),
        {"schema": schema, "names": list(CONTROL_TABLES)},
    )
    return [str(name) for (name,) in rows]


def current_revision(engine: Engine, schema: str = DEFAULT_SCHEMA) -> str | None:
    """The state schema's Alembic revision, or None when it has never been initialised."""
    check_schema_name(schema)
    with refused_as_isthmus_error(VERSION_TABLE), engine.connect() as conn:
        return _revision(conn, schema)


def require_current(engine: Engine, schema: str = DEFAULT_SCHEMA) -> None:
    """Raise StateSchemaNotReady unless the state schema is at this isthmus's head revision."""
    revision = current_revision(engine, schema)
    head = head_revision()
    if revision == head:
        return
    if revision is None:
        raise StateSchemaNotReady(f"state schema {schema} is not initialised; run `isthmus init`")
    if revision not in known_revisions():
        raise StateSchemaNotReady(
            f"state schema {schema} is at revision {revision}, unknown to this isthmus "
            f"(head {head}); was it initialised by a newer version?"
        )
    raise StateSchemaNotReady(
        f"state schema {schema} is at revision {revision}, this isthmus needs {head}; "
        "run `isthmus init`"
    )


def upgrade_state_schema(engine: Engine, schema: str = DEFAULT_SCHEMA) -> InitResult:
    """Create the state schema or bring it to head, in one transaction; idempotent."""
    check_schema_name(schema)
    head = head_revision()
    with refused_as_isthmus_error(VERSION_TABLE), engine.begin() as conn:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(:schema))"),
            {"cls": _LOCK_CLASS, "schema": schema},
        )
        before = _revision(conn, schema)
        if before == head:
            return InitResult(schema, before, head, created=False, upgraded=False)
        if before is None:
            unmanaged = _unmanaged_tables(conn, schema)
            if unmanaged:
                raise StateSchemaNotReady(
                    f"state schema {schema} already holds {', '.join(unmanaged)} without an "
                    f"Alembic version table; it was not created by `isthmus init`"
                )
        # Alembic writes its version table before the first revision runs.
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        with _ALEMBIC_IN_USE:
            from alembic import command

            command.upgrade(alembic_config(schema, conn), "head")
        after = _revision(conn, schema)
    assert after == head, f"state schema {schema} ended at {after}, expected {head}"
    return InitResult(schema, before, after, created=before is None, upgraded=True)
