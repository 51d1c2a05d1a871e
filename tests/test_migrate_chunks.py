"""Key-range chunks (migrate_chunks.py): one entity split, its chunks run by several processes
at once, killed and resumed, refused when they would collide, then finished.

Every run that matters is the installed ``isthmus`` console script in a process of its own,
against real databases: SQLite and MariaDB sources, a PostgreSQL target.
"""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import MysqlDatabases, PgDatabases
from dialect_support import run_sql
from isthmus import commands
from isthmus.config import config_from_dict
from isthmus.demo import generate_legacy
from isthmus.errors import TerminalDatabaseError
from isthmus.migrate_chunks import ChunksUnfinished, finish_chunked, migrate_chunk, plan_chunks
from isthmus.urls import DatabaseURL, parse_url
from isthmus.workspace import Workspace
from migrate_support import (
    STATE,
    Setup,
    check_equal,
    checkpoints,
    fetch,
    prepare_target,
    target_constraints,
)

SCALE = 20  # 24,180 rows: products 14,400, orders 7,200
BATCH = "100"
PARENTS = ["offices", "profiles", "doctors", "patients"]

Source = tuple[DatabaseURL, dict[str, int]]


@pytest.fixture(scope="module")
def sqlite_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    url = parse_url(f"sqlite:///{tmp_path_factory.mktemp('legacy') / 'legacy.db'}")
    return url, generate_legacy(url, scale=SCALE)


@pytest.fixture(scope="module")
def mariadb_source(mysql_databases: MysqlDatabases) -> Source:
    url = mysql_databases.create("isthmus_chunks")
    return url, generate_legacy(url, scale=SCALE)


@pytest.fixture(params=["sqlite", "mariadb"])
def source(request: pytest.FixtureRequest) -> Source:
    value: Source = request.getfixturevalue(f"{request.param}_source")
    return value


def ready(source: Source, pg_databases: PgDatabases, directory: Path) -> Setup:
    """A fresh target with its tables created bare, and the parents of orders migrated."""
    url, counts = source
    setup = prepare_target(url, pg_databases.create("isthmus_chunks"), directory, counts)
    args = [a for e in PARENTS for a in ("--entity", e)]
    done = setup.cli("migrate", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return setup


def chunks_of(setup: Setup, entity: str, n: int) -> list[tuple[int, int]]:
    with Workspace(setup.config) as ws:
        return plan_chunks(ws, entity, n)


def chunk_arg(chunk: tuple[int, int]) -> str:
    return f"{chunk[0]}:{chunk[1]}"


def run_chunk(
    setup: Setup, entity: str, chunk: tuple[int, int], batch: str = BATCH
) -> subprocess.Popen[str]:
    return setup.popen(
        "--json", "migrate", "--entity", entity, "--chunk", chunk_arg(chunk), "--batch-size", batch
    )


def chunk_checkpoints(setup: Setup, entity: str) -> dict[tuple[int, int], dict[str, Any]]:
    """The newest checkpoint of each chunk of ``entity``."""
    newest: dict[tuple[int, int], dict[str, Any]] = {}
    with setup.target_conn() as conn:
        cur = conn.execute(
            sql.SQL(
                "SELECT * FROM {} WHERE entity_type = %s AND metadata ? 'chunk'"
                " ORDER BY created_at, id"
            ).format(sql.Identifier(STATE, "migration_checkpoints")),
            (entity,),
        )
        names = [d.name for d in cur.description or []]
        found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for c in found:
        chunk = c["metadata"].get("chunk")
        if chunk is not None:
            newest[(chunk[0], chunk[1])] = c
    return newest


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def running(setup: Setup, entity: str, chunk: tuple[int, int], rows: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        c = chunk_checkpoints(setup, entity).get(chunk)
        return c is not None and c["status"] == "in_progress" and c["records_processed"] >= rows

    return check


def finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (proc.returncode, out, err)
    return json.loads(out)  # type: ignore[no-any-return]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return str(lines[0])


def sessions_gone(setup: Setup) -> None:
    """The killed process's server sessions have ended (its advisory locks with them)."""

    def gone() -> bool:
        with setup.target_conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (setup.target.database,),
            ).fetchone()
        return row is not None and row[0] == 0

    wait_until(gone, "the killed process's sessions to end")


def mapped(setup: Setup, entity: str, chunk: tuple[int, int]) -> int:
    with setup.target_conn() as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE entity_type = %s AND legacy_id BETWEEN %s AND %s"
            ).format(sql.Identifier(STATE, "legacy_id_mappings")),
            (entity, *chunk),
        ).fetchone()
    assert row is not None
    return int(row[0])


def target_count(setup: Setup, table: str) -> int:
    with setup.target_conn() as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


# -- planning ----------------------------------------------------------------------------------


def test_chunks_cover_every_key_exactly_once(
    source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    url, counts = source
    setup = prepare_target(url, pg_databases.create("isthmus_chunks"), tmp_path, counts)
    for entity in ["offices", "orders", "products"]:
        keys = sorted(int(r[0]) for r in fetch(url, f"SELECT id FROM {entity}"))  # noqa: S608
        assert len(keys) == counts[entity]
        for n in [1, 2, 3, 7, 64]:
            chunks = chunks_of(setup, entity, n)
            assert len(chunks) == min(n, len(keys)), (entity, n, chunks)
            assert chunks[0][0] == keys[0] and chunks[-1][1] == keys[-1], (entity, n, chunks)
            for (_, hi), (lo, _) in itertools.pairwise(chunks):
                assert lo == hi + 1, (entity, n, chunks)  # contiguous: no gap, no overlap
            sizes = [sum(1 for k in keys if lo <= k <= hi) for lo, hi in chunks]
            assert sum(sizes) == len(keys) and min(sizes) > 0, (entity, n, sizes)
            assert max(sizes) - min(sizes) <= 1, (entity, n, sizes)  # equal by row count


def test_chunks_by_value_where_the_database_has_no_window_functions(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path, monkeypatch: Any
) -> None:
    url, counts = sqlite_source
    setup = prepare_target(url, pg_databases.create("isthmus_chunks"), tmp_path, counts)
    from isthmus.dialects.base import SourceDialect

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TerminalDatabaseError("no such function: NTILE")

    monkeypatch.setattr(SourceDialect, "key_tiles", refuse)
    keys = sorted(int(r[0]) for r in fetch(url, "SELECT id FROM products"))
    chunks = chunks_of(setup, "products", 4)
    assert 1 <= len(chunks) <= 4 and chunks[0][0] == keys[0] and chunks[-1][1] == keys[-1]
    for (_, hi), (lo, _) in itertools.pairwise(chunks):
        assert lo == hi + 1
    assert sum(sum(1 for k in keys if lo <= k <= hi) for lo, hi in chunks) == len(keys)


# -- in parallel -------------------------------------------------------------------------------


def test_two_processes_migrate_chunks_at_once_then_finish(
    source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    setup = ready(source, pg_databases, tmp_path)
    counts = setup.counts
    for entity in ["orders", "products"]:
        first, second = chunks_of(setup, entity, 2)
        if entity == "orders":
            # deterministic: the first is held still part-way (its locks, its open batch and
            # its in_progress checkpoint with it) while the second runs from start to end
            held = run_chunk(setup, entity, first, batch="25")
            try:
                wait_until(running(setup, entity, first, 100), "the first chunk to be writing")
                held.send_signal(signal.SIGSTOP)
                beside = run_chunk(setup, entity, second)
                beside.wait(timeout=120)
                assert chunk_checkpoints(setup, entity)[first]["status"] == "in_progress"
            finally:
                held.send_signal(signal.SIGCONT)
            docs = [finished(held), finished(beside)]
        else:  # simply both at once
            docs = [finished(p) for p in [run_chunk(setup, entity, c) for c in (first, second)]]
        for doc, chunk in zip(docs, [first, second], strict=True):
            (e,) = doc["entities"]
            assert e["chunk"] == list(chunk) and e["status"] == "completed", e
            assert e["rows_read"] == e["inserted"] == mapped(setup, entity, chunk), e
        assert sum(d["entities"][0]["inserted"] for d in docs) == counts[entity]
        # the chunks loaded a bare table: its keys and indexes wait for the finish
        assert "p" not in target_constraints(setup).get(entity, set())
        if entity == "orders":  # a child of an unfinished entity is refused
            early = setup.cli("migrate", "--entity", "products")
            assert early.returncode == 2, early.stdout + early.stderr
            assert "orders" in one_error_line(early) and "not been migrated" in early.stderr
        done = setup.cli("--json", "migrate", "--entity", entity, "--finish")
        assert done.returncode == 0, done.stdout + done.stderr
        doc = json.loads(done.stdout)
        assert doc["entities"][0]["status"] == "finished" and doc["open_quarantine"] == 0
        assert {"p", "f"} <= target_constraints(setup)[entity]
        summary = [c for c in checkpoints(setup, entity) if "chunk" not in c["metadata"]]
        assert len(summary) == 1 and summary[0]["status"] == "completed", summary
        assert summary[0]["records_processed"] == counts[entity]
        assert sorted(summary[0]["metadata"]["chunks"]) == [list(first), list(second)]
    assert check_equal(setup.config).rows == counts  # also: no legacy id or UUID mapped twice

    # a plain migrate afterwards is differential: nothing left to write
    again = setup.cli("--json", "migrate")
    assert again.returncode == 0, again.stderr
    assert all(e["inserted"] == e["updated"] == 0 for e in json.loads(again.stdout)["entities"])


def test_chunks_then_children_in_one_process(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """``--chunks N``: plan, run each chunk here, finish; children then migrate as usual;
    run again, chunks done in this pass are skipped and the finish comes again."""
    setup = ready(sqlite_source, pg_databases, tmp_path)
    done = setup.cli(
        "--json", "migrate", "--entity", "orders", "--chunks", "3", "--batch-size", BATCH
    )
    assert done.returncode == 0, done.stdout + done.stderr
    entities = json.loads(done.stdout)["entities"]
    assert [e["status"] for e in entities] == ["completed"] * 3 + ["finished"]
    assert sum(e["inserted"] for e in entities) == setup.counts["orders"]
    children = setup.cli("--json", "migrate", "--entity", "products")
    assert children.returncode == 0, children.stdout + children.stderr
    assert check_equal(setup.config).rows == setup.counts

    # a change in the source, then a new chunked pass: only the change is written
    (key,) = fetch(setup.source, "SELECT max(id) FROM orders")[0]
    run_sql(setup.source, [("UPDATE orders SET order_no = %s WHERE id = %s", ["changed-1", key])])
    chunks = chunks_of(setup, "orders", 2)
    first = setup.cli("--json", "migrate", "--entity", "orders", "--chunk", chunk_arg(chunks[1]))
    assert first.returncode == 0, first.stderr
    (e,) = json.loads(first.stdout)["entities"]
    assert (e["status"], e["updated"], e["inserted"]) == ("completed", 1, 0), e
    repeat = setup.cli("--json", "migrate", "--entity", "orders", "--chunk", chunk_arg(chunks[1]))
    (e,) = json.loads(repeat.stdout)["entities"]
    assert e["status"] == "skipped" and e["rows_read"] == 0, e  # done in this pass
    unfinished = setup.cli("migrate", "--entity", "orders", "--finish")
    assert unfinished.returncode == 3
    assert "no chunk" in one_error_line(unfinished) or "keys in no chunk" in unfinished.stderr
    rest = setup.cli("--json", "migrate", "--entity", "orders", "--chunks", "2")
    assert rest.returncode == 0, rest.stderr
    statuses = [e["status"] for e in json.loads(rest.stdout)["entities"]]
    assert statuses == ["completed", "skipped", "finished"], statuses
    assert check_equal(setup.config).rows == setup.counts


# -- kills, collisions -------------------------------------------------------------------------


def test_killed_chunk_resumes_where_it_stopped(
    source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    setup = ready(source, pg_databases, tmp_path)
    assert setup.cli("migrate", "--entity", "orders").returncode == 0
    first, second = chunks_of(setup, "products", 2)
    proc = run_chunk(setup, "products", first)
    try:
        wait_until(running(setup, "products", first, 2000), "the chunk to be part-way")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    sessions_gone(setup)
    killed = chunk_checkpoints(setup, "products")[first]
    assert killed["status"] == "in_progress" and killed["last_processed_id"] is not None
    total = killed["records_total"]
    assert 2000 <= killed["records_processed"] < total, killed
    # batches commit whole: the rows, their mappings and the checkpoint agree
    assert mapped(setup, "products", first) == killed["records_processed"]
    assert target_count(setup, "products") == killed["records_processed"]

    # the other chunk runs meanwhile; finishing now names the dead one
    finished(run_chunk(setup, "products", second))
    early = setup.cli("migrate", "--entity", "products", "--finish")
    assert early.returncode == 3
    line = one_error_line(early)
    assert (
        f"chunk {chunk_arg(first)} is in_progress after key {killed['last_processed_id']}" in line
    )

    doc = finished(run_chunk(setup, "products", first))
    (e,) = doc["entities"]
    assert e["resumed_after"] == killed["last_processed_id"], e
    assert e["rows_read"] == e["inserted"] == total - killed["records_processed"], e
    assert e["checkpoint_id"] == str(killed["id"])
    done = setup.cli("migrate", "--entity", "products", "--finish")
    assert done.returncode == 0, done.stdout + done.stderr
    assert check_equal(setup.config).rows == setup.counts


def test_sigterm_pauses_a_chunk_and_says_how_to_resume_it(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    setup = ready(sqlite_source, pg_databases, tmp_path)
    assert setup.cli("migrate", "--entity", "orders").returncode == 0
    first, _ = chunks_of(setup, "products", 2)
    proc = run_chunk(setup, "products", first, batch="20")
    try:
        wait_until(running(setup, "products", first, 500), "the chunk to be part-way")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    paused = chunk_checkpoints(setup, "products")[first]
    assert paused["status"] == "paused", paused
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (
        f"products chunk {chunk_arg(first)} paused after key {paused['last_processed_id']}"
        in (lines[0])
    )
    assert f"--entity products --chunk {chunk_arg(first)}" in lines[0]
    doc = finished(run_chunk(setup, "products", first))
    assert doc["entities"][0]["resumed_after"] == paused["last_processed_id"]
    assert mapped(setup, "products", first) == paused["records_total"]


def test_collisions_are_refused(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """While a chunk runs: the same chunk, an overlapping one, a plain migrate of the entity
    and its finish are refused (exit 3, one line); a disjoint chunk runs beside it. While a
    plain migrate runs, chunks of the entity are refused."""
    setup = ready(sqlite_source, pg_databases, tmp_path)
    assert setup.cli("migrate", "--entity", "orders").returncode == 0
    first, second = chunks_of(setup, "products", 2)
    proc = run_chunk(setup, "products", first)
    try:
        wait_until(running(setup, "products", first, 100), "the chunk to start")
        proc.send_signal(signal.SIGSTOP)  # held part-way, with its locks
        twice = setup.cli("migrate", "--entity", "products", "--chunk", chunk_arg(first))
        overlap = setup.cli(
            "migrate", "--entity", "products", "--chunk", f"{first[1] - 5}:{second[0] + 5}"
        )
        whole = setup.cli("migrate", "--entity", "products")
        finish = setup.cli("migrate", "--entity", "products", "--finish")
        beside = setup.cli(
            "--json", "migrate", "--entity", "products", "--chunk", chunk_arg(second)
        )
    finally:
        proc.send_signal(signal.SIGCONT)
    out = finished(proc)
    assert twice.returncode == 3, twice.stdout + twice.stderr
    assert f"chunk {chunk_arg(first)} of entity products is being migrated" in one_error_line(twice)
    assert overlap.returncode == 3, overlap.stdout + overlap.stderr
    assert f"overlaps chunk {chunk_arg(first)}" in one_error_line(overlap)
    assert whole.returncode == 3 and "being migrated by another" in one_error_line(whole)
    assert finish.returncode == 3 and "being migrated by another" in one_error_line(finish)
    assert beside.returncode == 0, beside.stdout + beside.stderr
    assert (
        out["entities"][0]["inserted"] + json.loads(beside.stdout)["entities"][0]["inserted"]
        == (setup.counts["products"])
    )
    assert len(chunk_checkpoints(setup, "products")) == 2  # the refused ones left nothing

    # the other way round: a plain migrate holds the entity, chunks wait
    reset = setup.cli("migrate", "--entity", "products", "--finish")
    assert reset.returncode == 0, reset.stderr
    plain = setup.popen("migrate", "--entity", "products", "--batch-size", "50")
    try:
        wait_until(
            lambda: any(
                c["status"] == "in_progress" and "chunk" not in c["metadata"]
                for c in checkpoints(setup, "products")
            ),
            "the plain migrate to start",
        )
        plain.send_signal(signal.SIGSTOP)
        refused = setup.cli("migrate", "--entity", "products", "--chunk", chunk_arg(first))
    finally:
        plain.send_signal(signal.SIGCONT)
        plain.communicate(timeout=300)
    assert plain.returncode == 0
    assert refused.returncode == 3 and "being migrated whole" in one_error_line(refused)
    assert check_equal(setup.config).rows == setup.counts


def test_plain_migrate_of_another_entity_leaves_parked_keys_alone(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """Completed chunks do not count as the table loaded: a migrate of something else, in
    between, does not build the chunked table's keys and indexes; the finish does."""
    setup = ready(sqlite_source, pg_databases, tmp_path)
    for chunk in chunks_of(setup, "orders", 2):
        finished(run_chunk(setup, "orders", chunk))
    other = setup.cli("migrate", "--entity", "offices")
    assert other.returncode == 0, other.stderr
    assert "p" not in target_constraints(setup).get("orders", set())
    with setup.target_conn() as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM isthmus.pending_ddl WHERE target_table = 'orders'"
            " AND applied_at IS NULL"
        ).fetchone()
    assert waiting is not None and waiting[0] > 0
    assert setup.cli("migrate", "--entity", "orders", "--finish").returncode == 0
    assert "p" in target_constraints(setup)["orders"]


# -- self-references, usage --------------------------------------------------------------------


def test_self_references_are_set_by_the_finish(pg_databases: PgDatabases, tmp_path: Path) -> None:
    path = tmp_path / "staff.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " manager_id INTEGER REFERENCES employees(id))"
    )
    # managers have higher ids than their reports, and the chains cross the chunks
    rows = [(i, f"e{i}", None if i > 990 else i + 10) for i in range(1, 1001)]
    conn.executemany("INSERT INTO employees VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    config = config_from_dict(
        {
            "source": {"url": f"sqlite:///{path}"},
            "target": {"url": pg_databases.create("isthmus_chunks").raw, "state_schema": STATE},
            "migration": {"batch_size": 37},
        }
    )
    commands.init(config)
    commands.schema(config, apply=True)
    with Workspace(config) as ws:
        chunks = plan_chunks(ws, "employees", 3)
        assert chunks == [(1, 334), (335, 667), (668, 1000)]
        for lo, hi in reversed(chunks):
            assert migrate_chunk(ws, "employees", lo, hi).outcome.inserted == hi - lo + 1
    with psycopg.connect(config.target.database_url.raw) as pg:
        row = pg.execute("SELECT count(manager_id) FROM employees").fetchone()
    assert row == (0,)  # written NULL first
    with Workspace(config) as ws:
        result = finish_chunked(ws, "employees", chunks)
    assert result.entities[0].references_updated == 990
    with psycopg.connect(config.target.database_url.raw) as pg:
        pairs = pg.execute(
            "SELECT m.legacy_id, pm.legacy_id FROM employees e"
            " JOIN isthmus.legacy_id_mappings m ON m.uuid_id = e.id"
            " LEFT JOIN isthmus.legacy_id_mappings pm ON pm.uuid_id = e.manager_id"
        ).fetchall()
    assert sorted(pairs) == [(i, m) for i, _, m in rows]
    with Workspace(config) as ws, pytest.raises(ChunksUnfinished, match="never run"):
        finish_chunked(ws, "employees", [(1, 334), (335, 1000)])


def test_usage_errors_exit_2_with_one_line(
    sqlite_source: Source, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    url, counts = sqlite_source
    setup = prepare_target(url, pg_databases.create("isthmus_chunks"), tmp_path, counts)
    cases = [
        (["--chunk", "1:5"], "needs exactly one --entity"),
        (["--entity", "orders", "--entity", "offices", "--chunk", "1:5"], "exactly one --entity"),
        (["--entity", "orders", "--chunk", "5"], "expected LO:HI"),
        (["--entity", "orders", "--chunk", "a:b"], "expected LO:HI"),
        (["--entity", "orders", "--chunk", "9:1"], "must not be greater"),
        (["--entity", "orders", "--chunk", "1:5", "--chunks", "2"], "cannot be used together"),
        (["--entity", "orders", "--chunks", "0"], "at least 1"),
        (["--finish"], "needs exactly one --entity"),
        (["--entity", "nope", "--chunk", "1:5"], "nope"),
        (["--entity", "products", "--chunk", "1:5"], "not been migrated"),
    ]
    for args, expected in cases:
        result = setup.cli("migrate", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert expected in one_error_line(result), (args, result.stderr)
    never = setup.cli("migrate", "--entity", "offices", "--finish")
    assert never.returncode == 3 and "no chunk" in one_error_line(never)
    assert checkpoints(setup) == []


def test_a_table_that_keeps_its_key_is_not_split(pg_databases: PgDatabases, tmp_path: Path) -> None:
    path = tmp_path / "tags.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tags (code TEXT PRIMARY KEY, label TEXT)")
    conn.commit()
    conn.close()
    config = config_from_dict(
        {
            "source": {"url": f"sqlite:///{path}"},
            "target": {"url": pg_databases.create("isthmus_chunks").raw, "state_schema": STATE},
        }
    )
    commands.init(config)
    with pytest.raises(Exception, match="keeps its own key") as caught:
        commands.migrate(config, ["tags"], chunks=2)
    assert getattr(caught.value, "exit_code", None) == 2
