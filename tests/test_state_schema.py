"""`isthmus init`: the state schema is created by Alembic, idempotently, and matches tables.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from isthmus.errors import ConfigError
from isthmus.state.schema import (
    CONTROL_TABLES,
    InitResult,
    StateSchemaNotReady,
    alembic_config,
    current_revision,
    head_revision,
    require_current,
    upgrade_state_schema,
)
from isthmus.state.tables import (
    CHECKPOINT_STATUSES,
    COMPARISON_TYPES,
    CONFLICT_RESOLUTIONS,
    JOB_STATUSES,
    JOB_TYPES,
    MAPPING_VALIDATION_STATUSES,
    OPERATION_TYPES,
    RESOLUTION_STRATEGIES,
    SYNC_DIRECTIONS,
    VALIDATION_TYPES,
    build_metadata,
)
from isthmus.urls import DatabaseURL
from test_state_support import catalog, state_engine, unique_schema

SPEC_INDEXES = {
    "idx_checkpoint_status_entity",
    "idx_checkpoint_operation_type",
    "idx_differential_table_type",
    "idx_differential_resolved",
    "idx_sync_job_status",
    "idx_sync_job_type_schedule",
    "idx_legacy_mapping_entity_legacy",
    "idx_legacy_mapping_entity_uuid",
}
SPEC_INDEX_COLUMNS = {
    "idx_checkpoint_status_entity": "(status, entity_type)",
    "idx_checkpoint_operation_type": "(operation_type, created_at)",
    "idx_differential_table_type": "(source_table, comparison_type)",
    "idx_differential_resolved": "(resolved, created_at)",
    "idx_sync_job_status": "(status, next_run_at)",
    "idx_sync_job_type_schedule": "(job_type, schedule_config)",
    "idx_legacy_mapping_entity_legacy": "(entity_type, legacy_id)",
    "idx_legacy_mapping_entity_uuid": "(entity_type, uuid_id)",
}


@pytest.fixture(scope="module")
def engine(pg_url: DatabaseURL) -> Iterator[sa.Engine]:
    engine = state_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def schema(engine: sa.Engine) -> Iterator[str]:
    name = unique_schema("init")
    yield name
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def test_init_creates_the_five_tables_with_rules_indexes_and_triggers(
    engine: sa.Engine, schema: str
) -> None:
    assert current_revision(engine, schema) is None
    result = upgrade_state_schema(engine, schema)
    assert result == InitResult(schema, None, head_revision(), created=True, upgraded=True)
    with engine.connect() as conn:
        snap = catalog(conn, schema)
        tables = {name for name, kind in snap["tables"]}
        assert tables == {*CONTROL_TABLES, "alembic_version"}

        indexes = {name: definition for _table, name, definition in snap["indexes"]}
        assert set(indexes) >= SPEC_INDEXES
        for name, columns in SPEC_INDEX_COLUMNS.items():
            assert indexes[name].endswith(columns), indexes[name]

        constraints = {name for _table, name, _kind, _definition in snap["constraints"]}
        expected = {
            c.name
            for table in build_metadata(schema).tables.values()
            for c in table.constraints
            if isinstance(c, sa.CheckConstraint | sa.UniqueConstraint)
        }
        assert len(expected) == 31  # 25 on the specification's five tables, 6 on isthmus's two
        assert constraints >= expected

        triggers = {name for name, _definition in snap["triggers"]}
        assert triggers == {
            "trg_checkpoint_updated_at",
            "trg_sync_job_updated_at",
            "trg_checkpoint_status_transition",
            "trg_sync_job_status_transition",
            "trg_differential_strategy",
        }
        types = {name: tuple(labels.split(",")) for name, labels in snap["types"]}
        assert types == {
            "operation_type": OPERATION_TYPES,
            "checkpoint_status": CHECKPOINT_STATUSES,
            "comparison_type": COMPARISON_TYPES,
            "resolution_strategy": RESOLUTION_STRATEGIES,
            "job_type": JOB_TYPES,
            "sync_direction": SYNC_DIRECTIONS,
            "conflict_resolution": CONFLICT_RESOLUTIONS,
            "job_status": JOB_STATUSES,
            "validation_type": VALIDATION_TYPES,
            "mapping_validation_status": MAPPING_VALIDATION_STATUSES,
        }
    require_current(engine, schema)


def test_a_second_init_changes_nothing(engine: sa.Engine, schema: str) -> None:
    upgrade_state_schema(engine, schema)
    with engine.connect() as conn:
        before = catalog(conn, schema)
    again = upgrade_state_schema(engine, schema)
    assert again == InitResult(schema, head_revision(), head_revision(), False, False)
    with engine.connect() as conn:
        assert catalog(conn, schema) == before


def test_two_inits_at_once_do_not_collide(engine: sa.Engine, schema: str) -> None:
    results: list[InitResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def init() -> None:
        barrier.wait()
        try:
            results.append(upgrade_state_schema(engine, schema))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=init) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, True]
    assert {r.revision_after for r in results} == {head_revision()}


def drift(engine: sa.Engine, schema: str) -> tuple[list[Any], bool]:
    """Alembic autogenerate's differences from tables.py, and whether the catalogs agree.

    Autogenerate does not compare CHECK constraints or enum labels, hence the second part:
    the catalog compared with a schema made by ``create_all`` of tables.py.
    """
    metadata = build_metadata(schema)

    def include_name(name: str | None, type_: str, parent: object) -> bool:
        if type_ == "schema":
            return name == schema
        return not (type_ == "table" and name == "alembic_version")

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": include_name,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        differences = list(compare_metadata(context, metadata))
    twin = unique_schema("twin")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{twin}"'))
            build_metadata(twin).create_all(conn)
        with engine.connect() as conn:
            same = catalog(conn, schema, with_code=False) == catalog(conn, twin, with_code=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{twin}" CASCADE'))
    return differences, same


def test_the_migrated_schema_matches_tables_py(engine: sa.Engine, schema: str) -> None:
    upgrade_state_schema(engine, schema)
    assert drift(engine, schema) == ([], True)


def test_the_drift_check_notices_differences(engine: sa.Engine, schema: str) -> None:
    upgrade_state_schema(engine, schema)
    reports = f'"{schema}".migration_validation_reports'
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"ALTER TABLE {reports} DROP CONSTRAINT ck_report_execution_time_positive,"
                " ADD CONSTRAINT ck_report_execution_time_positive CHECK (execution_time_ms >= 0)"
            )
        )
    assert drift(engine, schema) == ([], False)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {reports} ADD COLUMN stray integer"))
        conn.execute(sa.text(f'DROP INDEX "{schema}".idx_report_job'))
    differences, _ = drift(engine, schema)
    kinds = sorted(str(d[0]) for d in differences)
    assert kinds == ["add_index", "remove_column"]


def test_alembic_version_table_lives_in_the_state_schema(engine: sa.Engine, schema: str) -> None:
    upgrade_state_schema(engine, schema)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()  # noqa: S608
            == head_revision()
        )
        assert (
            conn.execute(sa.text("SELECT to_regclass('public.alembic_version')")).scalar() is None
        )


def test_require_current_names_the_schema_and_the_command(engine: sa.Engine, schema: str) -> None:
    with pytest.raises(StateSchemaNotReady) as info:
        require_current(engine, schema)
    assert str(info.value) == f"state schema {schema} is not initialised; run `isthmus init`"
    assert info.value.exit_code == 2

    upgrade_state_schema(engine, schema)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE \"{schema}\".alembic_version SET version_num = '9999'"))  # noqa: S608
    with pytest.raises(StateSchemaNotReady, match="unknown to this isthmus"):
        require_current(engine, schema)


def test_downgrade_then_upgrade_round_trips(engine: sa.Engine, schema: str) -> None:
    upgrade_state_schema(engine, schema)
    with engine.connect() as conn:
        before = catalog(conn, schema)
    with engine.begin() as conn:
        command.downgrade(alembic_config(schema, conn), "base")
    assert current_revision(engine, schema) is None
    with engine.connect() as conn:
        assert catalog(conn, schema)["tables"] == [("alembic_version", "r")]
    result = upgrade_state_schema(engine, schema)
    assert (result.revision_before, result.upgraded) == (None, True)
    with engine.connect() as conn:
        assert catalog(conn, schema) == before


def test_init_refuses_control_tables_it_did_not_create(engine: sa.Engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{schema}".legacy_id_mappings (id int)'))
    with pytest.raises(StateSchemaNotReady, match="legacy_id_mappings without an Alembic"):
        upgrade_state_schema(engine, schema)


@pytest.mark.parametrize("bad", ["", "Isthmus", "1abc", "a-b", 'x"; drop', "a" * 64])
def test_schema_names_are_plain_identifiers(engine: sa.Engine, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"target\.state_schema"):
        upgrade_state_schema(engine, bad)


def test_revisions_read_from_file_names_are_alembics() -> None:
    """``known_revisions`` avoids importing Alembic on every command: it must agree with it."""
    from isthmus.state.schema import _scripts, known_revisions

    scripts = _scripts()
    assert list(known_revisions()) == [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert head_revision() == scripts.get_current_head()
