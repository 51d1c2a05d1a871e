"""Validation of entities that keep their key (a join table with a composite key of two
references, a text key) and of hostile names: a clean migration passes, and rows dropped,
added or changed in the target are found by completeness_check and data_integrity."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from conftest import PgDatabases
from isthmus import commands
from isthmus.config import Config, config_from_dict

ODD = 'odd "Table" é'


def _legacy(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE note_tags (note_id INTEGER NOT NULL REFERENCES notes(id),"
        " tag_id INTEGER NOT NULL REFERENCES tags(id), weight REAL,"
        " PRIMARY KEY (note_id, tag_id));"
        "CREATE TABLE countries (code TEXT PRIMARY KEY, name TEXT NOT NULL);"
        'CREATE TABLE "odd ""Table"" é" ("the id" INTEGER PRIMARY KEY,'
        ' "no te" INTEGER REFERENCES notes(id), "va\'lue" TEXT);'
    )
    db.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"note\t{i}\n") for i in range(1, 61)])
    db.executemany("INSERT INTO tags VALUES (?, ?)", [(i, f"tag {i}") for i in range(1, 9)])
    pairs = [(n, t, n / t) for n in range(1, 61) for t in range(1, 9) if (n + t) % 3 == 0]
    db.executemany("INSERT INTO note_tags VALUES (?, ?, ?)", pairs)
    countries = [("de", "Deutschland"), ("fr", "France"), ("ja", "日本"), ("o'q", 'a "q"')]
    db.executemany("INSERT INTO countries VALUES (?, ?)", countries)
    db.executemany(
        'INSERT INTO "odd ""Table"" é" VALUES (?, ?, ?)',
        [(i * 7, 1 + i % 60, f"<b>{i}</b>") for i in range(1, 40)],
    )
    db.commit()
    db.close()


def _setup(pg_databases: PgDatabases, directory: Path) -> tuple[Config, str]:
    _legacy(directory / "legacy.db")
    target = pg_databases.create("isthmus_kept")
    config = config_from_dict(
        {
            "source": {"url": f"sqlite:///{directory / 'legacy.db'}"},
            "target": {"url": target.raw, "state_schema": "isthmus"},
        }
    )
    commands.init(config)
    commands.schema(config, apply=True)
    assert commands.migrate(config).exit_code == 0
    return config, target.raw


def _uuid(conn: psycopg.Connection[Any], entity: str, legacy_id: int) -> Any:
    row = conn.execute(
        "SELECT uuid_id FROM isthmus.legacy_id_mappings WHERE entity_type = %s AND legacy_id = %s",
        (entity, legacy_id),
    ).fetchone()
    assert row is not None
    return row[0]


def test_kept_keys_and_hostile_names(pg_databases: PgDatabases, tmp_path: Path) -> None:
    config, target = _setup(pg_databases, tmp_path)
    clean = commands.validate(config)
    assert clean.exit_code == 0, [c.to_dict() for c in clean.checks if not c.passed]
    checks = {(c.entity, c.validation_type): c for c in clean.checks}
    joins = checks[("note_tags", "completeness_check")]
    n = sum(1 for a in range(1, 61) for b in range(1, 9) if (a + b) % 3 == 0)
    assert joins.metadata == {"source_rows": n, "target_rows": n}
    assert checks[("countries", "data_integrity")].records_validated == 4
    assert checks[(ODD, "data_integrity")].records_validated == 39

    with psycopg.connect(target, autocommit=True) as conn:
        note3, tag3, note1 = (
            _uuid(conn, "notes", 3),
            _uuid(conn, "tags", 3),
            _uuid(conn, "notes", 1),
        )
        conn.execute("DELETE FROM note_tags WHERE note_id = %s AND tag_id = %s", (note3, tag3))
        conn.execute(
            "UPDATE note_tags SET weight = 99 WHERE note_id = %s AND tag_id = %s",
            (note1, _uuid(conn, "tags", 2)),
        )
        conn.execute("INSERT INTO note_tags VALUES (%s, %s, 1)", (note1, _uuid(conn, "tags", 1)))
        conn.execute("UPDATE countries SET name = 'Japan' WHERE code = 'ja'")
        conn.execute(
            'UPDATE "odd ""Table"" é" SET "va\'lue" = \'changed\' WHERE "the id" = %s',
            (_uuid(conn, ODD, 14),),
        )
    broken = commands.validate(config, ["completeness_check", "data_integrity"])
    checks = {(c.entity, c.validation_type): c for c in broken.checks}
    joins = checks[("note_tags", "completeness_check")]
    assert joins.findings.counts == {"missing_in_target": 1, "extra_in_target": 1}
    assert joins.findings.samples["missing_in_target"] == [{"key": ["3", "3"]}]
    assert joins.findings.samples["extra_in_target"] == [{"key": ["1", "1"]}]
    data = checks[("note_tags", "data_integrity")]
    assert data.findings.counts == {"value_mismatch": 1}
    (sample,) = data.findings.samples["value_mismatch"]
    assert sample["key"] == ["1", "2"] and list(sample["columns"]) == ["weight"]
    country = checks[("countries", "data_integrity")].findings.samples["value_mismatch"]
    assert country == [{"key": "ja", "columns": {"name": {"source": "日本", "target": "Japan"}}}]
    odd = checks[(ODD, "data_integrity")].findings.samples["value_mismatch"]
    assert odd[0]["legacy_id"] == 14 and list(odd[0]["columns"]) == ["va'lue"]
    failing = sorted(k for k, c in checks.items() if not c.passed)
    assert failing == [
        ("countries", "data_integrity"),
        ("note_tags", "completeness_check"),
        ("note_tags", "data_integrity"),
        (ODD, "data_integrity"),
    ]
