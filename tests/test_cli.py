from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from isthmus.urls import DatabaseURL

ISTHMUS = [sys.executable, "-m", "isthmus.cli"]


def isthmus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ISTHMUS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def write_config(tmp_path: Path, target: DatabaseURL, extra: str = "") -> Path:
    legacy = tmp_path / "legacy.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS offices (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS doctors (id INTEGER PRIMARY KEY, office_id INTEGER REFERENCES offices(id), name TEXT)"
        )
    path = tmp_path / "isthmus.toml"
    path.write_text(
        f'[source]\nurl = "sqlite:///{legacy}"\n[target]\nurl = "{target.raw}"\nstate_schema = "cli_state"\n'
        + extra,
        encoding="utf-8",
    )
    return path


def test_init_twice_then_plan_as_json(tmp_path: Path, fresh_pg_url: DatabaseURL) -> None:
    write_config(tmp_path, fresh_pg_url)
    first = isthmus("--json", "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] is True
    second = isthmus("--json", "init", cwd=tmp_path)
    assert second.returncode == 0
    doc = json.loads(second.stdout)
    assert doc["created"] is False and doc["upgraded"] is False
    plan = isthmus("--json", "plan", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    entities = json.loads(plan.stdout)["entities"]
    assert [e["entity"] for e in entities] == ["offices", "doctors"]
    assert entities[1]["references"] == {"office_id": "offices"}


def test_bad_config_exits_2_with_one_line(tmp_path: Path, fresh_pg_url: DatabaseURL) -> None:
    write_config(tmp_path, fresh_pg_url, "[migration]\nbatch_sise = 3\n")
    result = isthmus("plan", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "batch_sise" in lines[0] and "isthmus.toml" in lines[0]


def test_missing_source_table_exits_2(tmp_path: Path, fresh_pg_url: DatabaseURL) -> None:
    write_config(tmp_path, fresh_pg_url, "[entities.patients]\n")
    result = isthmus("--json", "plan", cwd=tmp_path)
    assert result.returncode == 2
    assert "patients" in json.loads(result.stdout)["error"]


def test_unreachable_target_exits_3_and_masks_password(tmp_path: Path) -> None:
    from isthmus.urls import parse_url

    write_config(tmp_path, parse_url("postgresql://bob:hunter2@127.0.0.1:1/nowhere"))
    result = isthmus("init", cwd=tmp_path)
    assert result.returncode == 3
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
