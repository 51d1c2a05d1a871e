"""Every table, every type: real SQLite, MariaDB and PostgreSQL sources migrated into PostgreSQL.

Shapes (all three dialects): a join table keyed by two FKs, a table keyed by text, a
table without a primary key, a view (reported, not copied), a self-referencing table
(chains, NULL roots, managers with a higher id than their reports) and a two-table cycle
broken by its nullable FK. Types: what each dialect has that the others lack. Every table
is compared with its source through the canonical form: UUID-keyed ones by legacy id
(``row_checksums``), the ones that keep their key row for row by that key, with every
translated FK read back as the legacy id it points at.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import run_sql
from isthmus import canonical, commands
from isthmus.config import Config, config_from_dict
from isthmus.loadplan import EntityLoad, build_load
from isthmus.row_checksums import canonical_columns, source_checksums, target_checksums
from isthmus.target import reflect_table
from isthmus.urls import DatabaseURL
from isthmus.workspace import Workspace

STATE = "isthmus"


def make_config(source: DatabaseURL, target: DatabaseURL, **migration: Any) -> Config:
    return config_from_dict(
        {
            "source": {"url": source.raw},
            "target": {"url": target.raw, "state_schema": STATE},
            "migration": {"batch_size": 7, **migration},  # small: many batches, keyset edges
        }
    )


def migrate(config: Config) -> Any:
    commands.init(config)
    commands.schema(config, apply=True)
    return commands.migrate(config)


# -- comparing both sides ----------------------------------------------------------------------


def kept_rows(ws: Workspace, conn: psycopg.Connection[Any], load: EntityLoad) -> tuple[Any, Any]:
    """Canonical rows of a table that keeps its key, on each side, FKs as legacy ids."""
    source: list[tuple[bytes, ...]] = []
    for rows in ws.source.stream_text(
        load.source_table, load.read_columns, load.key_columns, batch_size=1000
    ):
        source += [
            tuple(c.normalizer.canonical(f) for c, f in zip(load.columns, row, strict=True))
            for row in rows
        ]
    ident = sql.Identifier
    selects, joins, kinds = canonical_columns(load.columns, STATE)
    query = sql.SQL("COPY (SELECT {} FROM {} AS t {}) TO STDOUT").format(
        sql.SQL(", ").join(selects),
        ident(load.target.schema, load.target.name),
        sql.SQL(" ").join(joins),
    )
    target: list[tuple[bytes, ...]] = []
    with conn.cursor() as cur, cur.copy(query) as copy:
        for record in _copy_lines(copy):
            fields = record.split(b"\t")
            target.append(
                tuple(canonical.NORMALIZERS[k](f) for k, f in zip(kinds, fields, strict=True))
            )
    return source, target


def _copy_lines(copy: Any) -> list[bytes]:
    data = b"".join(bytes(chunk) for chunk in copy)
    return [line for line in data.split(b"\n") if line]


def compare(config: Config, outside: dict[str, set[Any]] | None = None) -> dict[str, int]:
    """Assert every entity's target equals its source (``outside``: keys expected missing);
    returns the rows compared per entity."""
    outside = outside or {}
    compared: dict[str, int] = {}
    with Workspace(config) as ws, psycopg.connect(ws.target_conninfo) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for planned in ws.plan.entities:
            table = reflect_table(conn, "public", planned.entity.target_table)
            load = build_load(planned, table, ws.plan, ws.source.capabilities)
            skip = outside.get(load.name, set())
            if load.uuid_keyed:
                source = {k: v for k, v in source_checksums(ws.source, load) if k not in skip}
                target = dict(target_checksums(conn, load, STATE))
                differ = sorted(k for k in source if source[k] != target.get(k))
                extra = sorted(target.keys() - source.keys())
                assert not differ and not extra, (
                    f"{load.name}: differ or missing {differ[:10]}, extra {extra[:10]}"
                )
                compared[load.name] = len(source)
                continue
            src, tgt = kept_rows(ws, conn, load)
            if load.target.primary_key or planned.entity.source.primary_key:
                n = load.key_count
                by_key_s = {r[:n]: r for r in src}
                by_key_t = {r[:n]: r for r in tgt}
                assert len(by_key_s) == len(src) and len(by_key_t) == len(tgt), load.name
                for key in skip:
                    by_key_s.pop(key)
                differ = sorted(k for k in by_key_s if by_key_s[k] != by_key_t.get(k))
                extra = sorted(by_key_t.keys() - by_key_s.keys())
                assert not differ and not extra, (
                    f"{load.name}: differ or missing {differ[:5]} "
                    f"({[by_key_s[k] for k in differ[:2]]} vs {[by_key_t.get(k) for k in differ[:2]]}), "
                    f"extra {extra[:5]}"
                )
            else:
                assert Counter(src) == Counter(tgt), f"{load.name}: {sorted(src)} vs {sorted(tgt)}"
            compared[load.name] = len(src)
    return compared


def target_rows(target: DatabaseURL, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(target.raw) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(query).fetchall()


# -- shapes, in every dialect ------------------------------------------------------------------


def shapes_sql(dialect: str) -> list[str | tuple[str, Any]]:
    integer = "INTEGER" if dialect == "sqlite" else "INT"
    text_key = "VARCHAR(40)" if dialect == "mysql" else "TEXT"
    statements: list[str | tuple[str, Any]] = [
        f"CREATE TABLE departments (id {integer} PRIMARY KEY, name TEXT NOT NULL)",
        f"CREATE TABLE employees (id {integer} PRIMARY KEY, name TEXT NOT NULL,"
        f" manager_id {integer} NULL REFERENCES employees (id),"
        f" department_id {integer} NOT NULL REFERENCES departments (id))",
        # A join table: its key is two FKs.
        f"CREATE TABLE employee_departments (employee_id {integer} NOT NULL"
        f" REFERENCES employees (id), department_id {integer} NOT NULL"
        " REFERENCES departments (id), since DATE, PRIMARY KEY (employee_id, department_id))",
        # Keyed by text, and a join table between an integer-keyed and a text-keyed table.
        f"CREATE TABLE tags (code {text_key} PRIMARY KEY, label TEXT)",
        f"CREATE TABLE employee_tags (employee_id {integer} NOT NULL REFERENCES employees (id),"
        f" tag {text_key} NOT NULL REFERENCES tags (code), PRIMARY KEY (employee_id, tag))",
        # A cycle: teams.lead_id (nullable) -> people, people.team_id (NOT NULL) -> teams.
        f"CREATE TABLE teams (id {integer} PRIMARY KEY, name TEXT, lead_id {integer} NULL)",
        f"CREATE TABLE people (id {integer} PRIMARY KEY, name TEXT,"
        f" team_id {integer} NOT NULL REFERENCES teams (id))",
        # No primary key at all, with a duplicate row.
        f"CREATE TABLE audit_log (at_day DATE, actor {integer}, action TEXT)",
        "CREATE VIEW busy_employees AS SELECT id, name FROM employees WHERE manager_id IS NULL",
    ]
    if dialect == "sqlite":
        statements[5] = (
            f"CREATE TABLE teams (id {integer} PRIMARY KEY, name TEXT,"
            f" lead_id {integer} NULL REFERENCES people (id))"
        )
    statements += [("INSERT INTO departments VALUES (%s, %s)", (i, f"dept {i}")) for i in (1, 2, 3)]
    # Managers: roots (NULL), chains three deep, and managers whose id is higher.
    managers = {1: None, 2: 1, 3: 2, 4: 3, 5: 40, 40: None, 41: 40, 6: 41, 7: 7 + 33, 8: None}
    for i in range(9, 36):
        managers[i] = i + 1 if i < 35 else 1  # 9 → 10 → … → 35 → 1: a long chain upwards
    for emp in sorted(managers):
        statements.append(
            ("INSERT INTO employees VALUES (%s, %s, NULL, %s)", (emp, f"emp {emp}", emp % 3 + 1))
        )
    statements += [
        ("UPDATE employees SET manager_id = %s WHERE id = %s", (manager, emp))
        for emp, manager in managers.items()
        if manager is not None
    ]
    statements += [
        "INSERT INTO employee_departments VALUES (1, 1, '2020-01-01'), (1, 2, NULL),"
        " (2, 3, '2021-06-30'), (41, 1, '1999-12-31'), (35, 2, NULL)",
        "INSERT INTO tags VALUES ('vip', 'Very important'), ('ops', NULL), ('Ünï ©', 'unicode key'),"
        " ('with space ', 'trailing space'), ('', 'empty key')",
        "INSERT INTO employee_tags VALUES (1, 'vip'), (1, 'ops'), (2, 'Ünï ©'), (40, 'with space '),"
        " (41, '')",
        "INSERT INTO teams VALUES (1, 'red', NULL), (2, 'blue', NULL), (3, 'green', NULL)",
        "INSERT INTO people VALUES (1, 'ann', 2), (2, 'bob', 1), (3, 'cy', 3), (4, 'di', 3)",
        "UPDATE teams SET lead_id = 2 WHERE id = 1",
        "UPDATE teams SET lead_id = 4 WHERE id = 2",
        "INSERT INTO audit_log VALUES ('2022-01-01', 1, 'login'), ('2022-01-01', 1, 'login'),"
        " ('2022-01-02', NULL, 'x'), (NULL, 2, NULL), ('2022-01-03', 3, 'tab\there'),"
        " ('2022-01-03', 3, 'new\nline')",
    ]
    return statements


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def source_url(request: pytest.FixtureRequest, pg_databases: PgDatabases) -> DatabaseURL:
    if request.param == "sqlite":
        url: DatabaseURL = request.getfixturevalue("sqlite_url")
        return url
    if request.param == "mysql":
        mysql: MysqlDatabases = request.getfixturevalue("mysql_databases")
        return mysql.create("isthmus_tables")
    return pg_databases.create("isthmus_tables_src")


def test_every_shape_of_table(source_url: DatabaseURL, fresh_pg_url: DatabaseURL) -> None:
    run_sql(source_url, shapes_sql(source_url.dialect))
    if source_url.dialect != "sqlite":  # FK constraints that need the other table first
        q = "`" if source_url.dialect == "mysql" else '"'
        run_sql(
            source_url,
            [
                f"ALTER TABLE teams ADD CONSTRAINT teams_lead FOREIGN KEY (lead_id) REFERENCES {q}people{q} (id)"
            ],
        )
    config = make_config(source_url, fresh_pg_url)
    plan = commands.plan(config)
    assert "busy_employees" in plan.views and "busy_employees" not in plan.names
    by_name = {p.name: p for p in plan.entities}
    assert by_name["employees"].deferred == ("manager_id",)
    assert set(by_name["teams"].deferred) | set(by_name["people"].deferred) == {"lead_id"}
    assert not by_name["tags"].entity.uuid_keyed
    assert not by_name["employee_departments"].entity.uuid_keyed
    assert by_name["employee_departments"].entity.references == {
        "employee_id": "employees",
        "department_id": "departments",
    }

    result = migrate(config)

    assert result.exit_code == 0, commands.quarantine_list(config)
    assert result.open_quarantine == 0
    assert all(d["applied"] for d in result.pending_ddl), [
        d for d in result.pending_ddl if not d["applied"]
    ]
    assert target_rows(fresh_pg_url, "SELECT to_regclass('public.busy_employees')") == [(None,)]
    compared = compare(config)
    assert compared == {
        "departments": 3,
        "employees": 37,
        "employee_departments": 5,
        "tags": 5,
        "employee_tags": 5,
        "teams": 3,
        "people": 4,
        "audit_log": 6,
    }
    employees = next(e for e in result.to_dict()["entities"] if e["entity"] == "employees")
    assert employees["references_updated"] == 37 - 3  # every row with a manager
    # The second pass pointed every manager at the same legacy row (checked by legacy id above);
    # the target's own FK holds, and the chains are intact.
    chain = target_rows(
        fresh_pg_url,
        """WITH RECURSIVE up AS (
              SELECT e.id, e.manager_id, 0 AS depth FROM employees e
              JOIN isthmus.legacy_id_mappings m ON m.uuid_id = e.id AND m.entity_type = 'employees'
              WHERE m.legacy_id = 9
              UNION ALL SELECT e.id, e.manager_id, up.depth + 1 FROM employees e
              JOIN up ON e.id = up.manager_id)
            SELECT max(depth) FROM up""",
    )
    assert chain == [(27,)]  # 9 → 10 → … → 35 → 1, and 1 is a root
    # A second run changes nothing and finds nothing to do.
    again = commands.migrate(config)
    assert again.exit_code == 0
    for entity in again.to_dict()["entities"]:
        assert (entity["inserted"], entity["updated"], entity["quarantined"]) == (0, 0, 0), entity
    compare(config)


# -- types, dialect by dialect -----------------------------------------------------------------

PG_TYPES = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN positive AS integer CHECK (VALUE > 0)",
    """CREATE TABLE pg_types (
        id serial PRIMARY KEY, m mood, pos positive, ints int[], texts text[], tsv tsvector,
        b bytea, n numeric, n2 numeric(10,2), tz timestamptz, ts timestamp, ts3 timestamp(3),
        iv interval, u uuid, j json, jb jsonb, d date, t time, f8 double precision, f4 real,
        ok boolean, ch char(5), vc varchar(10), big bigint, sm smallint, inet_col inet)""",
    "CREATE TABLE base_things (id int PRIMARY KEY, name text)",
    "CREATE TABLE special_things (extra text) INHERITS (base_things)",
    "INSERT INTO base_things VALUES (1, 'base one'), (2, 'base two')",
    "INSERT INTO special_things VALUES (3, 'child three', 'x'), (4, 'child four', NULL)",
    """INSERT INTO pg_types (m, pos, ints, texts, tsv, b, n, n2, tz, ts, ts3, iv, u, j, jb, d, t,
        f8, f4, ok, ch, vc, big, sm, inet_col) VALUES
      ('happy', 7, '{1,2,NULL,-3}', '{"a b","c,d","q\\"uote",NULL,"back\\\\slash"}',
       to_tsvector('english', 'The quick brown foxes jumped'), '\\x00ff10'::bytea,
       12345678901234567890.123456789, 12.30, '2021-03-04 05:06:07.123456+02',
       '2021-03-04 05:06:07', '1999-12-31 23:59:59.999', '1 year 2 mons 3 days 04:05:06.5',
       'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1, "a": [1, 2.50, "x"]}',
       '{"b": 1, "a": [1, 2.50, "x"], "aa": null}', '0001-01-01', '23:59:59.999999',
       1.0000000000000002, 3.14159, true, 'ab', 'tab\there', 9223372036854775807, -32768,
       '192.168.0.1/24'),
      ('sad', 1, '{}', '{}', '', '\\x', 0, -0.00, '1970-01-01 00:00:00+00', '2000-02-29 12:00:00',
       NULL, '-1 days +00:00:01', '00000000-0000-0000-0000-000000000000', '[]', '{}',
       '2024-02-29', '00:00:00', -0.0, 'NaN', false, 'abcde', '', -1, 0, '::1'),
      (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, 'Infinity', '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL),
      ('ok', 2147483647, '{{1,2},{3,4}}', '{"é","日本"}', 'a:1 b:2', '\\x5c6e',
       -0.000000000000000001, 99999999.99, 'infinity', '-infinity', NULL, '0', NULL,
       '"just a string"', '1.0', NULL, NULL, 1e308, 1e-30, NULL, NULL, 'x', NULL, NULL, NULL)""",
]


def test_postgresql_types(pg_databases: PgDatabases, fresh_pg_url: DatabaseURL) -> None:
    source = pg_databases.create("isthmus_pgtypes")
    run_sql(source, PG_TYPES)
    config = make_config(source, fresh_pg_url)
    result = migrate(config)
    assert result.exit_code == 0, commands.quarantine_list(config)
    assert compare(config) == {"pg_types": 4, "base_things": 2, "special_things": 2}
    types = dict(
        target_rows(
            fresh_pg_url,
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns"
            " JOIN pg_attribute ON attrelid = 'pg_types'::regclass AND attname = column_name"
            " WHERE table_name = 'pg_types'",
        )
    )
    assert types["ints"] == "integer[]" and types["tsv"] == "tsvector"
    assert types["n"] == "numeric" and types["n2"] == "numeric(10,2)"
    assert types["tz"] == "timestamp with time zone" and types["iv"] == "interval"
    assert types["u"] == "uuid" and types["jb"] == "jsonb" and types["j"] == "jsonb"
    assert types["inet_col"] == "inet" and types["pos"] == "integer"
    # The base table does not take its inheritance child's rows.
    assert target_rows(fresh_pg_url, "SELECT name FROM base_things ORDER BY name") == [
        ("base one",),
        ("base two",),
    ]
    row = target_rows(
        fresh_pg_url,
        "SELECT m, n::text, tz, ints, texts, b, u, jb::text FROM pg_types WHERE m = 'happy'",
    )[0]
    assert row[0] == "happy" and row[1] == "12345678901234567890.123456789"
    assert row[3] == [1, 2, None, -3] and row[4] == ["a b", "c,d", 'q"uote', None, "back\\slash"]
    assert row[5] == b"\x00\xff\x10" and str(row[6]) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row[7] == '{"a": [1, 2.50, "x"], "b": 1, "aa": null}'


MYSQL_TYPES = [
    """CREATE TABLE my_types (
        id INT PRIMARY KEY, e ENUM('small', 'medium', 'large'), s SET('red', 'green', 'blue'),
        y YEAR, bl BLOB, tb TINYBLOB, lb LONGBLOB, flag BIT(1), ok TINYINT(1),
        ui INT UNSIGNED, bu BIGINT UNSIGNED, dt0 DATETIME, dt6 DATETIME(6), d DATE,
        ts TIMESTAMP NULL, fl FLOAT, db DOUBLE, dc DECIMAL(12,4), dc0 DECIMAL(20,0),
        vc VARCHAR(20), tx TEXT, js JSON, t TIME, ti TINYINT, mi MEDIUMINT UNSIGNED)
        CHARACTER SET utf8mb4""",
    """INSERT INTO my_types VALUES
      (1, 'medium', 'red,blue', 2024, X'00FF5C0A09', X'', REPEAT('ab', 40000), b'1', 1,
       4294967295, 18446744073709551615, '2021-03-04 05:06:07', '2021-03-04 05:06:07.123456',
       '2024-02-29', '2021-03-04 05:06:07', 3.14159, 2.718281828459045, 12.3000,
       12345678901234567890, 'tab\there', 'ünïcödé 日本 \\\\ back', '{"b": 1, "a": [1, 2.5]}',
       '23:59:59', -128, 16777215),
      (2, 'small', '', 1901, NULL, NULL, NULL, b'0', 0, 2147483648, 9223372036854775808,
       '1000-01-01 00:00:00', '2021-03-04 05:06:07.000000', '1000-01-01', '1970-01-02 00:00:00',
       -0.0, -0.0, -0.0001, 0, '', '', '[]', '00:00:00', 127, 0),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""",
    # TIME is a duration in MySQL; PostgreSQL's time is a time of day.
    "INSERT INTO my_types (id, t) VALUES (5, '-838:59:59')",
]


def test_mysql_types(mysql_databases: MysqlDatabases, fresh_pg_url: DatabaseURL) -> None:
    source = mysql_databases.create("isthmus_mytypes")
    run_sql(source, MYSQL_TYPES)
    # Zero dates, where sql_mode allows them (legacy MySQL did by default).
    run_sql(
        source,
        [
            "SET SESSION sql_mode = ''",
            "INSERT INTO my_types (id, dt0, dt6, d, ts) VALUES"
            " (4, '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00',"
            " '0000-00-00 00:00:00')",
        ],
    )
    config = make_config(source, fresh_pg_url)
    result = migrate(config)
    # A duration outside a day does not fit time: isolated with its reason, not dropped.
    entries = commands.quarantine_list(config)
    assert [(e.legacy_key, e.kind, e.column_name) for e in entries] == [("5", "rejected", "t")]
    assert "-838:59:59" in entries[0].reason and result.exit_code == 1
    for column in ("dt0", "dt6", "d", "ts"):
        assert any(f"my_types.{column}" in w for w in result.warnings), (column, result.warnings)
    assert compare(config, outside={"my_types": {5}}) == {"my_types": 4}
    row = target_rows(
        fresh_pg_url,
        "SELECT e, s, y, bl, flag, ok, ui, bu, dt6, dc::text, js::text, t::text, dt0"  # noqa: S608
        f" FROM my_types t JOIN {STATE}.legacy_id_mappings m ON m.uuid_id = t.id"
        " AND m.entity_type = 'my_types' ORDER BY m.legacy_id",
    )
    first, second, _, zero = row
    assert first[:3] == ("medium", "red,blue", 2024)
    assert first[3] == b"\x00\xff\\\n\t" and first[4] in (1, True) and first[5] is True
    assert (first[6], first[7]) == (4294967295, 18446744073709551615)
    assert (second[6], second[7]) == (2147483648, 9223372036854775808)
    assert first[8].microsecond == 123456 and first[9] == "12.3000"
    assert first[10] == '{"a": [1, 2.5], "b": 1}'
    assert (first[11], second[11]) == ("23:59:59", "00:00:00")
    assert zero[12] is None and zero[8] is None


SQLITE_TYPES: list[str | tuple[str, Any]] = [
    """CREATE TABLE lite (id INTEGER PRIMARY KEY, i INTEGER, n NUMERIC, ts TIMESTAMP,
        dt DATETIME, b BOOLEAN, t TEXT, r REAL, bl BLOB, d DATE, loose, js JSON, u UUID)""",
    (
        "INSERT INTO lite VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            42,
            "1.50",
            "2021-03-04T05:06:07Z",
            "2021-03-04 05:06:07",
            1,
            "text",
            1.5,
            b"\x00\x01",
            "2024-02-29",
            "anything",
            '{"b":1,"a":2}',
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        ),
    ),
    (
        "INSERT INTO lite VALUES (2, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            "17",
            "12.30",
            "2021-03-04T05:06:07.5+02:00",
            "2021-03-04T05:06:07.000001",
            "true",
            "",
            0.1,
            b"",
            "2024-02-29 00:00:00",
            12,
            "[1, 2.0]",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ),
    ),
    (
        "INSERT INTO lite VALUES (3, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            -7,
            100,
            "2021-03-04 05:06:07.123",
            "2021-03-04",
            0,
            "  spaces  ",
            -0.0,
            None,
            None,
            3.25,
            None,
            None,
        ),
    ),
    (
        "INSERT INTO lite VALUES (4, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (None, "-0.0", None, None, "false", "日本\t\\", 1e300, b"\\", None, None, "null", None),
    ),
    (
        "INSERT INTO lite VALUES (5, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        ("abc", "1e3", None, None, "FALSE", None, 3, None, None, b"blob in untyped", None, None),
    ),
]


def test_sqlite_loose_affinities(sqlite_url: DatabaseURL, fresh_pg_url: DatabaseURL) -> None:
    run_sql(sqlite_url, SQLITE_TYPES)
    config = make_config(sqlite_url, fresh_pg_url)
    result = migrate(config)
    # Text in an INTEGER column that is no number cannot go in a bigint: isolated, not dropped.
    entries = commands.quarantine_list(config)
    assert [(e.legacy_key, e.kind, e.column_name) for e in entries] == [("5", "rejected", "i")]
    assert "abc" in entries[0].reason and result.exit_code == 1
    assert compare(config, outside={"lite": {5}}) == {"lite": 4}
    rows = target_rows(
        fresh_pg_url,
        "SELECT m.legacy_id, i, n::text, ts, dt, b, js::text, u::text FROM lite t"  # noqa: S608
        f" JOIN {STATE}.legacy_id_mappings m ON m.uuid_id = t.id AND m.entity_type = 'lite'"
        " ORDER BY 1",
    )
    one, two, three, four = rows
    assert one[1] == 42 and two[1] == 17 and three[1] == -7
    assert one[2] == "1.5" and two[2] == "12.3" and four[2] == "0"
    assert str(one[3]) == "2021-03-04 05:06:07" and str(two[3]) == "2021-03-04 03:06:07.500000"
    assert str(two[4]) == "2021-03-04 05:06:07.000001" and str(three[4]) == "2021-03-04 00:00:00"
    assert (one[5], two[5], three[5], four[5]) == (True, True, False, False)
    assert (
        one[6] == '{"a": 2, "b": 1}' and one[7] == two[7] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    )
