"""`posttrain leaderboard --format csv|html`, `report` and `compare` through the command line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from posttrain.leaderboard.store import LEADERBOARD_DB, record

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_board_formats_report_and_compare_from_the_command_line(fake_run: Path, make_fake_run, tmp_path: Path) -> None:
    runs = fake_run.parent
    record(runs / LEADERBOARD_DB, "fake", "base", "m", {"pt_arith": 0.25}, "f0", "2026-01-01T00:00:00")
    record(runs / LEADERBOARD_DB, "fake", "grpo", "m", {"pt_arith": 1.0}, "f1", "2026-01-01T00:00:00")

    listed = _cli("leaderboard", "--runs-dir", str(runs), "--format", "csv", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert [(r["run"], r["stage"], r["score"]) for r in rows] == [("fake", "grpo", "1"), ("fake", "base", "0.25")]

    board = _cli("leaderboard", "--runs-dir", str(runs), "--format", "html", cwd=tmp_path)
    assert board.returncode == 0 and (runs / "leaderboard.html").exists()

    reported = _cli("report", "fake", "--runs-dir", str(runs), cwd=tmp_path)
    assert reported.returncode == 0 and (fake_run / "report.html").exists() and (fake_run / "report.md").exists()

    make_fake_run(runs, name="other")
    compared = _cli("compare", "fake", "other", "--runs-dir", str(runs), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert (runs / "compare-fake-vs-other.html").exists()

    wrong = _cli("leaderboard", "--runs-dir", str(runs), "--format", "pdf", cwd=tmp_path)
    assert wrong.returncode == 2 and "--format 'pdf'" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = _cli("report", "nope", "--runs-dir", str(runs), cwd=tmp_path)
    assert missing.returncode == 2 and "nope: no run directory" in missing.stderr
