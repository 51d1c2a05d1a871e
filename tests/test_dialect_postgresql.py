"""PostgreSQL source: schemas, enums, domains, arrays, inheritance, partitions, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from dialect_support import run_sql
from isthmus.dialects import open_source, pgconn
from isthmus.dialects.postgresql import Source
from isthmus.errors import TerminalDatabaseError, TransientDatabaseError
from isthmus.urls import DatabaseURL, parse_url

SCHEMA = 'le"gacy sch'  # hostile on purpose
Q = '"le""gacy sch"'

LEGACY = [
    f"CREATE SCHEMA {Q}",
    f"SET search_path = {Q}",
    "CREATE TYPE mood AS ENUM ('sad', 'o''k', 'happy')",
    "CREATE DOMAIN money2 AS numeric(12,2) NOT NULL",
    "CREATE DOMAIN code AS varchar(10)",
    "CREATE DOMAIN short_code AS code CHECK (length(VALUE) < 5)",
    """CREATE TABLE offices (
        id serial PRIMARY KEY,
        name varchar(40) NOT NULL,
        mood mood,
        tags text[],
        amounts numeric(5,1)[],
        doc tsvector,
        raw bytea,
        price money2,
        code short_code,
        at timestamptz(3),
        big bigint GENERATED ALWAYS AS IDENTITY,
        small smallint,
        js jsonb
    )""",
    "CREATE TABLE people (id bigint PRIMARY KEY, office_id int REFERENCES offices (id))",
    "CREATE INDEX people_office ON people (office_id)",
    "CREATE INDEX people_expr ON people ((id * 2))",
    "CREATE TABLE vip (level int) INHERITS (people)",
    "CREATE TABLE events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
    "CREATE TABLE events_2020 PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')",
    "CREATE TABLE events_2021 PARTITION OF events FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')",
    "CREATE TABLE event_notes (id int PRIMARY KEY, event_id int, event_at date, "
    "FOREIGN KEY (event_id, event_at) REFERENCES events (id, at))",
    "CREATE VIEW office_names AS SELECT name FROM offices",
    "CREATE MATERIALIZED VIEW office_count AS SELECT count(*) FROM offices",
    "CREATE TABLE public.elsewhere (id int PRIMARY KEY)",
    "CREATE TABLE refs (id int PRIMARY KEY, e int REFERENCES public.elsewhere (id))",
    """INSERT INTO offices (name, mood, tags, price, code, at, js)
        VALUES ('a', 'o''k', '{x,y}', 1.5, 'ab', '2020-01-02 03:04:05.678+02', '{"k": [1]}'),
               ('b', NULL, NULL, 2, NULL, NULL, NULL)""",
    "INSERT INTO people VALUES (1, 1), (2, 2)",
    "INSERT INTO vip VALUES (3, 1, 9)",
    "INSERT INTO events VALUES (1, '2020-05-01'), (2, '2021-05-01'), (3, '2020-07-01')",
]


@pytest.fixture
def legacy(fresh_pg_url: DatabaseURL) -> DatabaseURL:
    run_sql(fresh_pg_url, LEGACY)
    return fresh_pg_url


def in_schema(url: DatabaseURL) -> DatabaseURL:
    return parse_url(f"{url.raw}?schema={quote(SCHEMA)}")


def with_password(url: DatabaseURL, password: str) -> DatabaseURL:
    parts = urlsplit(url.raw)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return parse_url(parts._replace(netloc=netloc).geturl())


def test_schema_from_the_url_and_default(legacy: DatabaseURL) -> None:
    src = Source(in_schema(legacy))
    assert src.schema == SCHEMA
    default = Source(legacy)
    assert default.schema == "public"
    assert set(default.reflect().tables) == {"elsewhere"}


def test_tables_views_inheritance_and_partitions(legacy: DatabaseURL) -> None:
    info = Source(in_schema(legacy)).reflect()
    assert set(info.tables) == {"offices", "people", "vip", "events", "event_notes", "refs"}
    assert set(info.views) == {"office_names", "office_count"}
    assert info.tables["events"].primary_key == ("id", "at")
    assert info.tables["events"].row_estimate == 3
    assert info.tables["vip"].column_names == ("id", "office_id", "level")
    assert all(t.schema == SCHEMA for t in info.tables.values())


def test_column_kinds(legacy: DatabaseURL) -> None:
    offices = Source(in_schema(legacy)).reflect().tables["offices"]
    col = {c.name: c for c in offices.columns}
    assert (col["id"].kind, col["id"].bits, col["id"].autoincrement) == ("integer", 32, True)
    assert (col["big"].bits, col["big"].autoincrement, col["small"].bits) == (64, True, 16)
    assert (col["name"].type_name, col["name"].length, col["name"].nullable) == (
        "character varying(40)",
        40,
        False,
    )
    assert col["mood"].kind == "enum" and col["mood"].enum_values == ("sad", "o'k", "happy")
    assert (col["tags"].kind, col["tags"].element_type) == ("array", "text")
    assert (col["amounts"].kind, col["amounts"].element_type) == ("array", "numeric(5,1)")
    assert col["doc"].kind == "other" and col["raw"].kind == "bytes"
    price = col["price"]  # domain over numeric(12,2) NOT NULL
    assert (price.kind, price.precision, price.scale, price.nullable) == ("decimal", 12, 2, False)
    code = col["code"]  # domain over a domain over varchar(10)
    assert (code.kind, code.length, code.type_name.endswith("short_code")) == ("text", 10, True)
    assert (col["at"].kind, col["at"].precision) == ("timestamptz", 3)
    assert col["js"].kind == "json"


def test_keys_indexes_and_foreign_keys(legacy: DatabaseURL) -> None:
    info = Source(in_schema(legacy)).reflect()
    people = info.tables["people"]
    assert people.integer_key == "id"
    (fk,) = people.foreign_keys
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("office_id",), "offices", ("id",))
    assert [i.name for i in people.indexes] == ["people_office"]  # expression index left out
    (composite,) = info.tables["event_notes"].foreign_keys  # one FK, not one per partition
    assert composite.ref_table == "events" and composite.columns == ("event_id", "event_at")
    assert info.tables["refs"].foreign_keys == ()
    assert any("'public'" in note for note in info.notes)


def test_streaming_values_inheritance_and_partitions(legacy: DatabaseURL) -> None:
    with open_source(in_schema(legacy)) as src:
        people = [r for b in src.stream("people", ["id", "office_id"], ["id"]) for r in b]
        assert people == [(1, 1), (2, 2)]  # vip's row belongs to vip
        assert src.count("people") == 2 and src.count("vip") == 1
        events = [
            r
            for b in src.stream("events", ["id", "at"], ["id", "at"], after=(1, "2020-05-01"))
            for r in b
        ]
        assert events == [(2, dt.date(2021, 5, 1)), (3, dt.date(2020, 7, 1))]
        cols = ["id", "mood", "tags", "price", "at", "js"]
        first = next(iter(src.stream("offices", cols, ["id"])))[0]
    assert first[:4] == (1, "o'k", ["x", "y"], Decimal("1.50"))
    assert first[4] == dt.datetime(2020, 1, 2, 1, 4, 5, 678000, tzinfo=dt.UTC)
    assert first[4].utcoffset() == dt.timedelta(0)
    assert first[5] == {"k": [1]}


def test_read_only_unless_writable(legacy: DatabaseURL) -> None:
    src = Source(in_schema(legacy))
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.connection().execute("INSERT INTO public.elsewhere VALUES (10)")
    writable = Source(in_schema(legacy), writable=True)
    writable.connection().execute("INSERT INTO public.elsewhere VALUES (10)")
    assert Source(legacy).count("elsewhere") == 1


def test_terminated_reader_is_transient(legacy: DatabaseURL) -> None:
    run_sql(
        legacy,
        [
            f"SET search_path = {Q}",
            "INSERT INTO people SELECT g, 1 FROM generate_series(100, 5000) g",
        ],
    )
    src = Source(in_schema(legacy))
    stream = src.stream("people", ["id"], ["id"], batch_size=100)
    assert len(next(stream)) == 100
    with psycopg.connect(legacy.raw, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'isthmus-source' AND datname = current_database() "
            "AND state = 'idle in transaction'"  # the stream's connection, between two FETCHes
        ).fetchall()
    assert killed and all(k[0] for k in killed)
    with pytest.raises(TransientDatabaseError, match="PostgreSQL: reading table 'people'"):
        for _ in stream:
            pass
    assert src.count("people") == 4903  # the Source reads on after a lost stream


def test_unknown_database_and_refused_connection(legacy: DatabaseURL) -> None:
    secret = with_password(legacy.with_database("isthmus_no_such_db"), "s3cret-pw")
    with pytest.raises(TerminalDatabaseError, match="isthmus_no_such_db") as info:
        open_source(secret)
    assert "s3cret-pw" not in str(info.value) and "***" in str(info.value)
    refused = parse_url("postgresql://postgres:s3cret-pw@127.0.0.1:1/nothing")
    with pytest.raises(
        TransientDatabaseError,
        match=r"connecting to postgresql://postgres:\*\*\*@127\.0\.0\.1:1/nothing",
    ) as info2:
        open_source(refused)
    assert "s3cret-pw" not in str(info2.value)


def test_missing_schema_leaves_no_tables(legacy: DatabaseURL) -> None:
    src = Source(parse_url(legacy.raw + "?schema=nowhere"))
    assert src.reflect().tables == {}
    with pytest.raises(TerminalDatabaseError, match="'offices'"):
        src.count("offices")


def test_a_refused_log_in_is_terminal_not_retried(legacy: DatabaseURL) -> None:
    """libpq gives a refused log-in no SQLSTATE, like a dropped connection: waiting cannot
    change the server's answer, so it must not be retried (a migrate would back off for 15 s)."""
    role = "isthmus_nologin_" + uuid.uuid4().hex[:8]
    with psycopg.connect(legacy.raw, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        for user in (role, "isthmus_nobody_" + uuid.uuid4().hex[:8]):
            parts = urlsplit(legacy.raw)
            url = parse_url(
                parts._replace(netloc=f"{user}:pw@{parts.netloc.rpartition('@')[2]}").geturl()
            )
            with pytest.raises(TerminalDatabaseError, match=user):
                pgconn.connect(url)
    finally:
        with psycopg.connect(legacy.raw, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')
