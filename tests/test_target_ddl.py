"""`isthmus schema`: target DDL derived from real SQLite, MariaDB and PostgreSQL sources,
applied to a fresh PostgreSQL, with keys, indexes and FKs parked until their tables are loaded."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import PgDatabases
from dialect_support import run_sql
from isthmus import commands
from isthmus.config import Config, config_from_dict
from isthmus.errors import ConfigError
from isthmus.state.schema import StateSchemaNotReady
from isthmus.target_ddl import (
    TargetDDL,
    apply_pending_ddl,
    apply_target_ddl,
    derive_target_ddl,
    guess_dialect,
    object_name,
)
from isthmus.urls import DatabaseURL, parse_url
from isthmus.workspace import Workspace

STATE = "st"
TARGET = 'App "Target"'  # the target schema: hostile on purpose

OFFICES = 'Offices "HQ"'
Q_OFFICES = '"Offices ""HQ"""'
Q_FULL_NAME = '"Full ""Name"""'
SQLITE_LEGACY = [
    f"""CREATE TABLE {Q_OFFICES} (
        id INTEGER PRIMARY KEY, "Näme" VARCHAR(10) NOT NULL, amount NUMERIC(10,2),
        flag BOOLEAN, created DATETIME NOT NULL, w "weird type", n, data BLOB, r REAL,
        big INT, stamp TIMESTAMP(3), js JSON, u UUID, "Mixed Case" TEXT)""",
    f"""CREATE UNIQUE INDEX offices_name ON {Q_OFFICES} ("Näme")""",
    f"""CREATE TABLE doctors (id INTEGER PRIMARY KEY,
        office_id INTEGER NOT NULL REFERENCES {Q_OFFICES} (id),
        mentor_id INTEGER REFERENCES doctors (id), {Q_FULL_NAME} TEXT)""",
    "CREATE TABLE tags (code TEXT PRIMARY KEY, label TEXT)",
    """CREATE TABLE doctor_tags (doctor_id INTEGER NOT NULL REFERENCES doctors (id),
        tag TEXT NOT NULL REFERENCES tags (code), PRIMARY KEY (doctor_id, tag))""",
    f"""CREATE TABLE doctor_offices (doctor_id INTEGER NOT NULL REFERENCES doctors (id),
        office_id INTEGER NOT NULL REFERENCES {Q_OFFICES} (id),
        PRIMARY KEY (doctor_id, office_id))""",
]
SQLITE_TYPES = {
    OFFICES: {
        "id": "uuid NOT NULL",
        "Näme": "text NOT NULL",
        "amount": "numeric",
        "flag": "boolean",
        "created": "timestamp without time zone NOT NULL",
        "w": "text",
        "n": "text",
        "data": "bytea",
        "r": "double precision",
        "big": "bigint",
        "stamp": "timestamp(3) without time zone",
        "js": "jsonb",
        "u": "uuid",
        "Mixed Case": "text",
    },
    "doctors": {
        "id": "uuid NOT NULL",
        "office_id": "uuid NOT NULL",
        "mentor_id": "uuid",
        'Full "Name"': "text",
    },
    "tags": {"code": "text", "label": "text"},
    "doctor_tags": {"doctor_id": "uuid NOT NULL", "tag": "text NOT NULL"},
    "doctor_offices": {"doctor_id": "uuid NOT NULL", "office_id": "uuid NOT NULL"},
}

MYSQL_LEGACY = [
    """CREATE TABLE offices (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        `Name "x"` VARCHAR(40) NOT NULL, active TINYINT(1) NOT NULL, flag BIT(1), mask BIT(10),
        kind ENUM('main', 'bra''nch') NOT NULL, features SET('x-ray', 'wifi'), founded YEAR,
        opened DATE NOT NULL, touched DATETIME(6) NOT NULL, plain DATETIME, stamp TIMESTAMP NULL,
        tm TIME(3), balance DECIMAL(12,2) UNSIGNED, ratio FLOAT, dbl DOUBLE,
        small SMALLINT UNSIGNED, tiny TINYINT, tu TINYINT UNSIGNED, medium MEDIUMINT,
        counter INT UNSIGNED, huge BIGINT UNSIGNED, big BIGINT, doc JSON, blobby MEDIUMBLOB,
        uid BINARY(16), code CHAR(3), notes TEXT, geo POINT,
        UNIQUE KEY office_code (code), KEY opened_touched (opened, touched)
    ) ENGINE=InnoDB""",
    """CREATE TABLE employees (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, office_id INT UNSIGNED NOT NULL,
        manager_id BIGINT NULL, email VARCHAR(100), UNIQUE KEY (email),
        FOREIGN KEY (office_id) REFERENCES offices (id),
        FOREIGN KEY (manager_id) REFERENCES employees (id)
    ) ENGINE=InnoDB""",
    """CREATE TABLE `Skill Tags` (code VARCHAR(20) NOT NULL PRIMARY KEY, label TEXT)
        ENGINE=InnoDB""",
    """CREATE TABLE employee_offices (
        employee_id BIGINT NOT NULL, office_id INT UNSIGNED NOT NULL, since DATE,
        skill VARCHAR(20), PRIMARY KEY (employee_id, office_id),
        FOREIGN KEY (employee_id) REFERENCES employees (id),
        FOREIGN KEY (office_id) REFERENCES offices (id),
        FOREIGN KEY (skill) REFERENCES `Skill Tags` (code)
    ) ENGINE=InnoDB""",
]
MYSQL_TYPES = {
    "offices": {
        "id": "uuid NOT NULL",
        'Name "x"': "character varying(40) NOT NULL",
        "active": "boolean NOT NULL",
        "flag": "boolean",
        "mask": "smallint",
        "kind": "text NOT NULL",
        "features": "text",
        "founded": "smallint",
        "opened": "date",  # zero dates are read as NULL
        "touched": "timestamp(6) without time zone",
        "plain": "timestamp(0) without time zone",
        "stamp": "timestamp(0) with time zone",
        "tm": "time(3) without time zone",
        "balance": "numeric(12,2)",
        "ratio": "real",
        "dbl": "double precision",
        "small": "integer",
        "tiny": "smallint",
        "tu": "smallint",
        "medium": "integer",
        "counter": "bigint",
        "huge": "numeric(20,0)",
        "big": "bigint",
        "doc": "jsonb",
        "blobby": "bytea",
        "uid": "bytea",
        "code": "character varying(3)",
        "notes": "text",
        "geo": "text",
    },
    "employees": {
        "id": "uuid NOT NULL",
        "office_id": "uuid NOT NULL",
        "manager_id": "uuid",
        "email": "character varying(100)",
    },
    "Skill Tags": {"code": "character varying(20) NOT NULL", "label": "text"},
    "employee_offices": {
        "employee_id": "uuid NOT NULL",
        "office_id": "uuid NOT NULL",
        "since": "date",
        "skill": "character varying(20)",
    },
}

CLINIC = 'Clinic "Main"'
Q_CLINIC = '"Clinic ""Main"""'
PG_LEGACY = [
    "CREATE TYPE mood AS ENUM ('sad', 'o''k', 'happy')",
    "CREATE DOMAIN money2 AS numeric(12,2) NOT NULL",
    f"""CREATE TABLE {Q_CLINIC} (
        id serial PRIMARY KEY, "Näme" varchar(40) NOT NULL, mood mood, tags text[],
        moods mood[], amounts numeric(5,1)[], doc tsvector, raw bytea, price money2,
        at timestamptz(3), local timestamp, t time(2), tz timetz, span interval, code char(4),
        ip inet, m money, x xml, p point, j json, jb jsonb, flag boolean, s smallint, u uuid,
        r real, CONSTRAINT clinic_code UNIQUE (code))""",
    f"""CREATE TABLE people (id bigint PRIMARY KEY,
        clinic_id int NOT NULL REFERENCES {Q_CLINIC} (id),
        name text, boss_id bigint REFERENCES people (id))""",
    "CREATE INDEX people_name ON people (name)",
    "CREATE TABLE vip (level int) INHERITS (people)",
    f"""CREATE TABLE visits (person_id bigint REFERENCES people (id),
        clinic_id int REFERENCES {Q_CLINIC} (id), at date,
        PRIMARY KEY (person_id, clinic_id))""",
    "CREATE TABLE tags (code text PRIMARY KEY)",
    """CREATE TABLE person_tags (person_id bigint NOT NULL REFERENCES people (id),
        tag text NOT NULL REFERENCES tags (code), PRIMARY KEY (person_id, tag))""",
]
PG_TYPES = {
    CLINIC: {
        "id": "uuid NOT NULL",
        "Näme": "character varying(40) NOT NULL",
        "mood": "text",
        "tags": "text[]",
        "moods": "text[]",
        "amounts": "numeric(5,1)[]",
        "doc": "tsvector",
        "raw": "bytea",
        "price": "numeric(12,2) NOT NULL",
        "at": "timestamp(3) with time zone",
        "local": "timestamp without time zone",
        "t": "time(2) without time zone",
        "tz": "time with time zone",
        "span": "interval",
        "code": "character(4)",
        "ip": "inet",
        "m": "money",
        "x": "xml",
        "p": "point",
        "j": "jsonb",
        "jb": "jsonb",
        "flag": "boolean",
        "s": "smallint",
        "u": "uuid",
        "r": "real",
    },
    "people": {
        "id": "uuid NOT NULL",
        "clinic_id": "uuid NOT NULL",
        "name": "text",
        "boss_id": "uuid",
    },
    "vip": {  # inheritance child: no primary key of its own, so it keeps its integers
        "id": "bigint NOT NULL",
        "clinic_id": "integer NOT NULL",
        "name": "text",
        "boss_id": "bigint",
        "level": "integer",
    },
    "visits": {"person_id": "uuid NOT NULL", "clinic_id": "uuid NOT NULL", "at": "date"},
    "tags": {"code": "text NOT NULL"},
    "person_tags": {"person_id": "uuid NOT NULL", "tag": "text NOT NULL"},
}

EXPECTED = {"sqlite": SQLITE_TYPES, "mysql": MYSQL_TYPES, "postgresql": PG_TYPES}


def make_source(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> DatabaseURL:
    if dialect == "sqlite":
        url = parse_url(f"sqlite:///{tmp_path / 'legacy.db'}")
        run_sql(url, SQLITE_LEGACY)
    elif dialect == "mysql":
        url = request.getfixturevalue("fresh_mysql_url")
        run_sql(url, MYSQL_LEGACY)
    else:
        pg: PgDatabases = request.getfixturevalue("pg_databases")
        url = pg.create("isthmus_legacy")
        run_sql(url, PG_LEGACY)
    return url


def make_config(source: DatabaseURL, target: DatabaseURL, **extra: Any) -> Config:
    return config_from_dict(
        {
            "source": {"url": source.raw},
            "target": {"url": target.raw, "state_schema": STATE, "schema": TARGET},
            **extra,
        }
    )


def target_columns(target: DatabaseURL, schema: str, table: str) -> dict[str, str]:
    with psycopg.connect(target.raw) as conn:
        rows = conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
                      || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0
                  AND NOT a.attisdropped ORDER BY a.attnum""",
            (schema, table),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def constraints(target: DatabaseURL, schema: str) -> dict[str, str]:
    """Constraint and index names of ``schema`` -> their kind (p, u, f, i)."""
    with psycopg.connect(target.raw) as conn:
        cons = conn.execute(
            "SELECT conname, contype FROM pg_constraint c JOIN pg_namespace n "
            "ON n.oid = c.connamespace WHERE n.nspname = %s AND contype IN ('p', 'u', 'f')",
            (schema,),
        ).fetchall()
        idx = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
        ).fetchall()
    found = {name: "i" for (name,) in idx}
    found.update({name: kind for name, kind in cons})
    return found


def pending_rows(target: DatabaseURL) -> dict[str, dict[str, Any]]:
    with psycopg.connect(target.raw) as conn:
        rows = conn.execute(
            f"SELECT name, target_table, kind, statement, depends_on, applied_at, error "  # noqa: S608
            f"FROM {STATE}.pending_ddl"
        ).fetchall()
    keys = ("target_table", "kind", "statement", "depends_on", "applied_at", "error")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def derive(config: Config) -> TargetDDL:
    return commands.schema(config).ddl


# --- derivation --------------------------------------------------------------------------


def test_sqlite_ddl_creates_columns_only_and_defers_the_rest(
    tmp_path: Path, pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    ddl = derive(make_config(make_source("sqlite", tmp_path, request), pg_url))
    assert ddl.source_dialect == "sqlite"
    for t in ddl.tables:
        upper = t.create.upper()
        for word in ("PRIMARY", "REFERENCES", "UNIQUE", "INDEX"):
            assert word not in upper, (t.target_table, t.create)
        assert t.create.startswith('CREATE TABLE "App ""Target"""."')
        for d in t.deferred:
            assert len(d.name.encode()) <= 63
            assert d.target_table == t.target_table
            assert d.depends_on[0] == t.target_table
    offices = ddl.table(OFFICES)
    assert '"Näme" text NOT NULL' in offices.create
    assert any("unbounded" in n and "Näme" in n for n in offices.notes)
    assert any("weird type" in n for n in offices.notes)
    assert [(d.kind, d.name) for d in offices.deferred] == [
        ("primary_key", 'Offices "HQ"_pkey'),
        ("unique", 'Offices "HQ"_Näme_key'),
    ]
    assert offices.deferred[0].statement == (
        'ALTER TABLE "App ""Target"""."Offices ""HQ""" ADD CONSTRAINT "Offices ""HQ""_pkey" '
        'PRIMARY KEY ("id")'
    )
    doctors = {d.name: d for d in ddl.table("doctors").deferred}
    mentor = doctors["doctors_mentor_id_fkey"]  # self-reference: depends on itself only
    assert mentor.kind == "foreign_key" and mentor.depends_on == ("doctors",)
    assert mentor.statement.endswith('REFERENCES "App ""Target"""."doctors" ("id")')
    assert doctors["doctors_office_id_fkey"].depends_on == ("doctors", OFFICES)
    assert doctors["doctors_office_id_idx"].kind == "index"
    join = {d.name: d for d in ddl.table("doctor_offices").deferred}
    assert join["doctor_offices_pkey"].statement.endswith('PRIMARY KEY ("doctor_id", "office_id")')
    # the PK covers doctor_id, so only office_id gets an index of its own
    assert "doctor_offices_doctor_id_idx" not in join and "doctor_offices_office_id_idx" in join
    tags = {d.name: d for d in ddl.table("doctor_tags").deferred}
    assert tags["doctor_tags_tag_fkey"].statement.endswith(
        'REFERENCES "App ""Target"""."tags" ("code")'
    )
    kinds = [d.kind for d in ddl.deferred]
    assert kinds == sorted(kinds, key=["primary_key", "unique", "index", "foreign_key"].index)
    script = ddl.script()
    assert script.index("CREATE TABLE") < script.index("ADD CONSTRAINT")
    assert script.count("CREATE TABLE") == len(ddl.tables)
    assert json.loads(json.dumps(ddl.to_dict()))["tables"][0]["entity"] == OFFICES


def test_renames_excludes_and_target_tables_are_followed(
    tmp_path: Path, pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    source = make_source("sqlite", tmp_path, request)
    entities: dict[str, Any] = {name: {} for name in SQLITE_TYPES}
    entities["doctors"] = {
        "target_table": "physicians",
        "target_key": "uuid",
        "columns": {'Full "Name"': "full_name"},
        "exclude": ["mentor_id"],
    }
    ddl = derive(make_config(source, pg_url, entities=entities))
    doctors = ddl.table("doctors")
    assert doctors.target_table == "physicians"
    assert [c.name for c in doctors.columns] == ["uuid", "office_id", "full_name"]
    assert '"physicians_pkey" PRIMARY KEY ("uuid")' in doctors.deferred[0].statement
    assert not any("mentor" in d.statement for d in doctors.deferred)
    fk = {d.name: d for d in ddl.table("doctor_tags").deferred}["doctor_tags_doctor_id_fkey"]
    assert fk.statement.endswith('REFERENCES "App ""Target"""."physicians" ("uuid")')
    assert fk.depends_on == ("doctor_tags", "physicians")


def test_long_names_are_hashed_and_too_long_targets_refused(
    tmp_path: Path, pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    long_a = object_name("t" * 40, "c" * 40, suffix="idx")
    long_b = object_name("t" * 40, "c" * 39 + "d", suffix="idx")
    assert len(long_a.encode()) <= 63 and long_a.endswith("_idx") and long_a != long_b
    assert long_a == object_name("t" * 40, "c" * 40, suffix="idx")
    wide = object_name("ü" * 40, suffix="pkey")  # never cut inside a UTF-8 character
    assert len(wide.encode()) <= 63 and wide.encode().decode() == wide
    source = make_source("sqlite", tmp_path, request)
    entities: dict[str, Any] = {name: {} for name in SQLITE_TYPES}
    entities["tags"] = {"target_table": "x" * 64}
    with pytest.raises(ConfigError, match="63 bytes"):
        derive(make_config(source, pg_url, entities=entities))


@pytest.mark.parametrize("dialect", ["sqlite", "mysql", "postgresql"])
def test_applied_types_per_source_dialect(
    dialect: str, tmp_path: Path, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    config = make_config(make_source(dialect, tmp_path, request), fresh_pg_url)
    commands.init(config)
    result = commands.schema(config, apply=True)
    assert result.ddl.source_dialect == dialect
    with Workspace(config) as ws:  # without being told, the plan gives the dialect away
        assert guess_dialect(ws.plan) == dialect
    assert result.applied is not None
    expected = EXPECTED[dialect]
    assert sorted(result.applied.created) == sorted(expected)
    for table, columns in expected.items():
        assert target_columns(fresh_pg_url, TARGET, table) == columns, table
    assert set(pending_rows(fresh_pg_url)) == {d.name for d in result.ddl.deferred}
    # every deferred statement is valid SQL on the empty tables
    with psycopg.connect(fresh_pg_url.raw) as conn:
        done = apply_pending_ddl(conn, STATE, set(expected))
    assert [r for r in done if r.error] == []
    assert len(done) == len(result.ddl.deferred)
    made = constraints(fresh_pg_url, TARGET)
    assert all(d.name in made for d in result.ddl.deferred)


def test_mysql_notes_and_checks(
    tmp_path: Path, pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    ddl = derive(make_config(make_source("mysql", tmp_path, request), pg_url))
    offices = ddl.table("offices")
    by_name = {c.name: c for c in offices.columns}
    assert by_name["kind"].check == "\"kind\" IN ('main', 'bra''nch')"
    assert by_name["opened"].nullable and by_name["touched"].nullable
    assert any("opened" in n and "zero dates" in n for n in offices.notes)
    assert any(n.startswith("huge:") for n in offices.notes)
    names = {d.name: d for d in offices.deferred}
    assert names["offices_code_key"].kind == "unique"
    assert names["offices_opened_touched_idx"].statement.endswith('("opened", "touched")')
    refs = {d.name: d for d in ddl.table("employee_offices").deferred}
    skill = refs["employee_offices_skill_fkey"]  # to a table that keeps its text key
    assert skill.statement.endswith('REFERENCES "App ""Target"""."Skill Tags" ("code")')
    assert skill.depends_on == ("employee_offices", "Skill Tags")


def test_postgresql_index_and_unique_constraint_recreated(
    tmp_path: Path, pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    ddl = derive(make_config(make_source("postgresql", tmp_path, request), pg_url))
    clinic = {d.name: d for d in ddl.table(CLINIC).deferred}
    assert set(clinic) == {'Clinic "Main"_pkey', 'Clinic "Main"_code_key'}
    people = {d.name: d.kind for d in ddl.table("people").deferred}
    assert people == {
        "people_pkey": "primary_key",
        "people_name_idx": "index",
        "people_clinic_id_idx": "index",
        "people_boss_id_idx": "index",
        "people_clinic_id_fkey": "foreign_key",
        "people_boss_id_fkey": "foreign_key",
    }
    assert [d.kind for d in ddl.table("vip").deferred] == []  # no key, no FKs of its own
    moods = next(c for c in ddl.table(CLINIC).columns if c.name == "mood")
    assert moods.check == "\"mood\" IN ('sad', 'o''k', 'happy')"


# --- applying ----------------------------------------------------------------------------


def test_pending_ddl_waits_for_loaded_tables_and_records_failures(
    tmp_path: Path, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    config = make_config(make_source("sqlite", tmp_path, request), fresh_pg_url)
    commands.init(config)
    ddl = commands.schema(config, apply=True).ddl
    parked = pending_rows(fresh_pg_url)
    for d in ddl.deferred:
        row = parked[d.name]
        assert (row["target_table"], row["kind"], row["statement"]) == (
            d.target_table,
            d.kind,
            d.statement,
        )
        assert row["depends_on"] == list(d.depends_on)
        assert row["applied_at"] is None and row["error"] is None

    office, doctor, orphan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh_pg_url.raw) as conn:
        assert apply_pending_ddl(conn, STATE, set()) == []
        assert apply_pending_ddl(conn, STATE, {"doctors"}) != []  # its own PK, index, self-FK
        conn.commit()
    assert constraints(fresh_pg_url, TARGET).keys() == {
        "doctors_pkey",
        "doctors_mentor_id_idx",
        "doctors_office_id_idx",
        "doctors_mentor_id_fkey",
    }
    with psycopg.connect(fresh_pg_url.raw) as conn:
        conn.execute(
            'INSERT INTO "App ""Target"""."Offices ""HQ""" (id, "Näme", created)'
            " VALUES (%s, %s, now())",
            (office, "a"),
        )
        conn.execute(
            'INSERT INTO "App ""Target""".doctors (id, office_id) VALUES (%s, %s), (%s, %s)',
            (doctor, office, uuid.uuid4(), orphan),
        )
        done = apply_pending_ddl(conn, STATE, {OFFICES, "doctors"})
        conn.commit()
    results = {r.name: r for r in done}
    assert set(results) == {
        'Offices "HQ"_pkey',
        'Offices "HQ"_Näme_key',
        "doctors_office_id_fkey",
    }
    failed = results["doctors_office_id_fkey"]
    assert not failed.applied and failed.error is not None
    assert "foreign key" in failed.error
    assert results['Offices "HQ"_pkey'].applied
    kinds = [r.kind for r in done]
    assert kinds == ["primary_key", "unique", "foreign_key"]  # keys before foreign keys

    rows = pending_rows(fresh_pg_url)
    assert rows["doctors_office_id_fkey"]["error"] == failed.error
    assert rows["doctors_office_id_fkey"]["applied_at"] is None
    assert rows['Offices "HQ"_pkey']["applied_at"] is not None
    made = constraints(fresh_pg_url, TARGET)
    assert 'Offices "HQ"_pkey' in made and "doctors_office_id_fkey" not in made

    everything = set(SQLITE_TYPES)
    with psycopg.connect(fresh_pg_url.raw) as conn:
        rest = apply_pending_ddl(conn, STATE, everything)  # the failed one is not retried
        assert "doctors_office_id_fkey" not in {r.name for r in rest}
        assert all(r.applied for r in rest)
        conn.execute('DELETE FROM "App ""Target""".doctors WHERE office_id = %s', (orphan,))
        retried = apply_pending_ddl(conn, STATE, everything, retry_failed=True)
        conn.commit()
    assert [(r.name, r.applied) for r in retried] == [("doctors_office_id_fkey", True)]
    rows = pending_rows(fresh_pg_url)
    assert all(r["applied_at"] is not None and r["error"] is None for r in rows.values())
    assert set(constraints(fresh_pg_url, TARGET)) >= set(rows)


def test_apply_twice_changes_nothing_and_never_alters_an_existing_table(
    tmp_path: Path, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    config = make_config(make_source("sqlite", tmp_path, request), fresh_pg_url)
    commands.init(config)
    with psycopg.connect(fresh_pg_url.raw) as conn:
        conn.execute('CREATE SCHEMA "App ""Target"""')
        conn.execute('CREATE TABLE "App ""Target""".tags (mine int)')
    first = commands.schema(config, apply=True).applied
    assert first is not None
    assert first.skipped == ["tags"] and "tags" not in first.created
    assert target_columns(fresh_pg_url, TARGET, "tags") == {"mine": "integer"}
    parked = pending_rows(fresh_pg_url)
    assert parked and not any(r["target_table"] == "tags" for r in parked.values())
    assert sorted(first.pending) == sorted(parked)

    second = commands.schema(config, apply=True).applied
    assert second is not None
    assert second.created == [] and second.pending == []
    assert sorted(second.skipped) == sorted(SQLITE_TYPES)
    assert pending_rows(fresh_pg_url) == parked

    # a table dropped by hand after its keys were applied comes back with them pending again
    with psycopg.connect(fresh_pg_url.raw) as conn:
        done = apply_pending_ddl(conn, STATE, {OFFICES, "doctors", "doctor_offices"})
        assert done and all(r.applied for r in done)
        conn.execute('DROP TABLE "App ""Target""".doctor_offices')
    third = commands.schema(config, apply=True).applied
    assert third is not None and third.created == ["doctor_offices"]
    assert set(third.pending) == {
        n for n, r in parked.items() if r["target_table"] == "doctor_offices"
    }
    rows = pending_rows(fresh_pg_url)
    assert {n for n, r in rows.items() if r["applied_at"] is not None} == {
        n for n, r in rows.items() if r["target_table"] in (OFFICES, "doctors")
    }


def test_apply_needs_an_initialised_state_schema(
    tmp_path: Path, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    config = make_config(make_source("sqlite", tmp_path, request), fresh_pg_url)
    with pytest.raises(StateSchemaNotReady):
        commands.schema(config, apply=True)
    assert target_columns(fresh_pg_url, TARGET, "doctors") == {}


def test_apply_target_ddl_is_in_the_callers_transaction(
    tmp_path: Path, fresh_pg_url: DatabaseURL, request: pytest.FixtureRequest
) -> None:
    config = make_config(make_source("sqlite", tmp_path, request), fresh_pg_url)
    commands.init(config)
    with Workspace(config) as ws:
        ddl = derive_target_ddl(ws.plan, TARGET, source_dialect="sqlite")
    with psycopg.connect(fresh_pg_url.raw) as conn:
        result = apply_target_ddl(conn, ddl, STATE, TARGET)
        assert len(result.created) == len(SQLITE_TYPES)
        conn.rollback()
    assert target_columns(fresh_pg_url, TARGET, "doctors") == {}
    assert pending_rows(fresh_pg_url) == {}


# --- CLI ---------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isthmus.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_schema_through_the_cli(tmp_path: Path, fresh_pg_url: DatabaseURL) -> None:
    legacy = tmp_path / "legacy.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE offices (id INTEGER PRIMARY KEY, name TEXT, tags TEXT)")
        conn.execute(
            "CREATE TABLE doctors (id INTEGER PRIMARY KEY,"
            " office_id INTEGER REFERENCES offices(id), name VARCHAR(20))"
        )
    (tmp_path / "isthmus.toml").write_text(
        f'[source]\nurl = "sqlite:///{legacy}"\n'
        f'[target]\nurl = "{fresh_pg_url.raw}"\nstate_schema = "cli_state"\nschema = "app"\n',
        encoding="utf-8",
    )
    printed = cli("schema", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert 'CREATE TABLE "app"."doctors" (\n    "id" uuid NOT NULL,' in printed.stdout
    assert 'ADD CONSTRAINT "doctors_office_id_fkey" FOREIGN KEY' in printed.stdout

    refused = cli("schema", "--apply", cwd=tmp_path)
    assert refused.returncode == 2 and "isthmus init" in refused.stderr

    assert cli("init", cwd=tmp_path).returncode == 0
    applied = cli("--json", "schema", "--apply", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    assert doc["applied"]["created"] == ["offices", "doctors"]
    assert len(doc["applied"]["pending"]) == 4  # 2 PKs, the FK and its index
    again = cli("schema", "--apply", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "skipped 2 tables" in again.stdout and "0 keys" in again.stdout
