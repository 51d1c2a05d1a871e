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


def test_mappings_import_lookup_export_through_the_cli(
    tmp_path: Path, fresh_pg_url: DatabaseURL
) -> None:
    write_config(tmp_path, fresh_pg_url)
    assert isthmus("init", cwd=tmp_path).returncode == 0
    good = tmp_path / "map.csv"
    good.write_text(
        "entity_type,legacy_id,uuid_id\n"
        "offices,7,0190c6a0-0000-7000-8000-000000000001\n"
        "doctors,9,0190c6a0-0000-7000-8000-000000000002\n",
        encoding="utf-8",
    )
    imported = isthmus("--json", "mappings", "import", str(good), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["new"] == 2

    found = isthmus("--json", "mappings", "lookup", "doctors", "9", cwd=tmp_path)
    assert json.loads(found.stdout)["uuid_id"] == "0190c6a0-0000-7000-8000-000000000002"
    missing = isthmus("mappings", "lookup", "doctors", "10", cwd=tmp_path)
    assert missing.returncode == 1 and "doctors" in missing.stderr

    conflicting = tmp_path / "bad.csv"
    conflicting.write_text(
        "offices,7,0190c6a0-0000-7000-8000-000000000009\noffices,8,0190c6a0-0000-7000-8000-00000000000a\n",
        encoding="utf-8",
    )
    refused = isthmus("mappings", "import", str(conflicting), cwd=tmp_path)
    assert refused.returncode != 0
    assert "line 1" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (
        isthmus("mappings", "lookup", "offices", "8", cwd=tmp_path).returncode == 1
    )  # nothing half-imported

    out = tmp_path / "out.csv"
    assert isthmus("mappings", "export", str(out), cwd=tmp_path).returncode == 0
    exported = out.read_text(encoding="utf-8").splitlines()
    original = good.read_text(encoding="utf-8").splitlines()
    assert exported[0] == original[0]
    assert sorted(exported[1:]) == sorted(original[1:])
