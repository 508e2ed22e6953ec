"""The CLI as a user meets it: help, plan, data, dry-run, and exit codes for mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _posttrain(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def small_recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": f"{i} + 1?"}, {"role": "assistant", "content": f"Answer: {i + 1}"}]}
        for i in range(12)
    ]
    lines = [json.dumps(r) for r in rows] + [json.dumps(rows[0]), "{broken json"]  # lines 13 and 14
    (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n")
    recipe = tmp_path / "small.yaml"
    recipe.write_text(
        f"name: small\nmodel: {{base: {tiny_model_dir}}}\n"
        "datasets: {chat: {sources: [{path: chat.jsonl}], curate: [{dedup: exact}]}}\n"
        "eval: {tasks: [pt_arith_mc], limit: 2}\n"
        "stages: [{name: sft, type: sft, data: chat, train: {max_steps: 1}}]\n"
    )
    return recipe


def test_help_lists_commands() -> None:
    result = _posttrain("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "plan", "data", "leaderboard"):
        assert command in result.stdout


def test_data_command_curates_and_reports(small_recipe: Path, tmp_path: Path) -> None:
    result = _posttrain("data", str(small_recipe), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    assert "exact_duplicate" in result.stdout or "dedup.exact" in result.stdout
    rejects = (tmp_path / "runs" / "small" / "data" / "chat" / "rejects.jsonl").read_text().splitlines()
    reasons = {json.loads(line)["reason"] for line in rejects}
    assert {"invalid_json", "exact_duplicate"} <= reasons
    broken = next(json.loads(line) for line in rejects if json.loads(line)["reason"] == "invalid_json")
    assert broken["line"] == 14 and broken["source"].endswith("chat.jsonl")


def test_leaderboard_command_reads_the_sqlite_board(tmp_path: Path) -> None:
    from posttrain.leaderboard.store import record

    runs = tmp_path / "runs"
    record(runs / "leaderboard.sqlite", "r1", "sft", "m", {"pt_arith": 0.25}, "fp1", "2026-11-27T00:00:00")
    record(runs / "leaderboard.sqlite", "r2", "dpo", "m", {"pt_arith": 0.5}, "fp2", "2026-11-27T00:00:01")
    result = _posttrain("leaderboard", "--runs-dir", str(runs), "--task", "pt_arith")
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("r2") < result.stdout.index("r1")
    empty = _posttrain("leaderboard", "--runs-dir", str(tmp_path / "none"))
    assert empty.returncode == 0 and "no results" in empty.stdout


def test_dry_run_and_plan_show_the_stage_without_training(small_recipe: Path, tmp_path: Path) -> None:
    for args in (("run", "--dry-run"), ("plan",)):
        result = _posttrain(*args, str(small_recipe), "--runs-dir", str(tmp_path / "runs"))
        assert result.returncode == 0, result.stderr
        assert "sft" in result.stdout and "will run" in result.stdout
    assert not (tmp_path / "runs" / "small" / "sft").exists()


def test_user_mistakes_exit_2_with_one_message(small_recipe: Path, tmp_path: Path) -> None:
    missing = _posttrain("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "recipe file not found" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_force = _posttrain("run", str(small_recipe), "--force", "nosuch", "--runs-dir", str(tmp_path / "runs"))
    assert bad_force.returncode == 2 and "--force names no stage" in bad_force.stderr

    bad_set = _posttrain("validate", str(small_recipe), "--set", "stages.sft.train.max_steps")
    assert bad_set.returncode == 2 and "expected KEY.PATH=VALUE" in bad_set.stderr
