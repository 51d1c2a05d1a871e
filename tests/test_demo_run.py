"""``isthmus demo`` end to end on the embedded default: migrate, change both sides, diff,
sync both ways, and nothing left to differ."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from migrate_support import cli_env, isthmus_executable


def test_demo_tells_the_whole_story_and_ends_with_both_sides_equal(tmp_path: Path) -> None:
    said = subprocess.run(
        [isthmus_executable(), "--json", "demo", "--scale", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=cli_env(),
    )
    assert said.returncode == 0, said.stdout[-2000:] + said.stderr[-2000:]
    doc = json.loads(said.stdout)
    assert doc["diff"]["total_differences"] > 0  # both sides changed something
    sync = doc["sync"]
    assert sync["status"] == "completed" and sync["records_failed"] == 0
    flows = [e["flow"] for e in sync["entities"]]
    assert sum(f.get("to_target", 0) for f in flows) > 0
    assert sum(f.get("to_source", 0) + f.get("created_to_source", 0) for f in flows) > 0
    assert sync["records_synced"] == doc["diff"]["total_differences"]
    assert doc["after_sync"]["total_differences"] == 0
    validation = doc["validation"]
    assert validation["passed"] is True
    assert {r["validation_type"] for r in validation["reports"]} == {
        "completeness_check",
        "data_integrity",
        "relationship_integrity",
        "performance_check",
    }
    assert Path(doc["report_html"]).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert (tmp_path / "isthmus.toml").exists()
