"""A full disk at every phase of a run: one clear message naming the path and the free space, nothing
half-written that a rerun would trust, and after space is freed the rerun equals an uninterrupted run.

The run directory lives on a small tmpfs mounted in a private mount namespace (`unshare`), so the disk
really fills: the `<phase>:FILL` failpoint (posttrain/failpoints.py) writes a file until the filesystem
has no byte left, and the run goes on into its next write. Deleting that file is "freeing space".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posttrain.failpoints import POINTS
from tests.hardening.test_kill_anywhere import outcome, write_workspace

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """\
set -u
mount -t tmpfs -o size=256m tmpfs "$RUNS"
cd "$WS"
POSTTRAIN_FAILPOINT="$POINT" POSTTRAIN_FILL="$RUNS/.filler" "$PY" -m posttrain.cli run tiny.yaml --runs-dir "$RUNS" \\
  >"$OUT/first.out" 2>"$OUT/first.err"; echo $? >"$OUT/first.rc"
df -B1 --output=avail "$RUNS" | tail -1 >"$OUT/free_when_full"
rm -f "$RUNS/.filler"
"$PY" -m posttrain.cli run tiny.yaml --runs-dir "$RUNS" >"$OUT/second.out" 2>"$OUT/second.err"; echo $? >"$OUT/second.rc"
cp -a "$RUNS/." "$OUT/runs/"
"""


def namespace_prefix() -> list[str] | None:
    """How to get a private mount namespace here: as root `unshare -m`, else a user namespace."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-Urm"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
                                "mount -t tmpfs -o size=1m tmpfs /tmp"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


def run_filled(point: str, folder: Path, model: Path) -> Path:
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("no mount namespace here (unshare -m / -Urm refused): cannot make a small filesystem")
    ws = write_workspace(folder / "ws", model).parent
    runs, out = folder / "mnt", folder / "out"
    runs.mkdir()
    (out / "runs").mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RUNS": str(runs), "WS": str(ws),
           "OUT": str(out), "POINT": f"{point}:FILL", "PY": sys.executable}
    env.pop("POSTTRAIN_FAILPOINT", None)
    done = subprocess.run([*prefix, "bash", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_workspace(folder / "ws", tiny_model_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("POSTTRAIN_FAILPOINT", None)
    done = subprocess.run([sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(folder / "runs")],
                          capture_output=True, text=True, env=env, cwd=recipe.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return outcome(folder / "runs")


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in POINTS if p != "curation"] + ["curation"])
def test_full_disk_is_one_clear_error_and_the_rerun_equals_an_uninterrupted_run(
    point: str, reference: dict, tmp_path: Path, tiny_model_dir: Path
) -> None:
    out = run_filled(point, tmp_path, tiny_model_dir)
    first_rc, err = int((out / "first.rc").read_text()), (out / "first.err").read_text()
    assert first_rc == 1, f"the disk filled at {point} but the run went on:\n{err[-2000:]}"
    message = " ".join(err.split())
    assert "no space left on device" in message.lower(), err[-2000:]
    assert "free" in message and str(tmp_path / "mnt") in message, err[-2000:]
    assert "Traceback" not in err
    assert int((out / "free_when_full").read_text()) < 64 * 1024

    assert int((out / "second.rc").read_text()) == 0, (out / "second.err").read_text()[-3000:]
    final = outcome(out / "runs")
    for stage, weights in reference["adapters"].items():
        assert all(torch.equal(weights[k], final["adapters"][stage][k]) for k in weights), f"{stage} adapter differs"
    assert final["scores"] == reference["scores"]
    assert final["board"] == reference["board"]
    assert final["exports"] == reference["exports"]
    assert final["logged_steps"] == reference["logged_steps"]
