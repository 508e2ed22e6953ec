"""One run directory, one writer; a shared model cache filled safely by processes started together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

RECIPE = """\
name: tiny
model: {{base: {model}}}
datasets: {{chat: {{sources: [{{path: chat.jsonl}}]}}}}
eval: {{tasks: [pt_arith_mc], limit: 1, on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 2}}, train: {{max_steps: 1, batch_size: 2, max_length: 32}}}}
export: {{formats: [peft]}}
"""
HOLD = """
import sys, time
from pathlib import Path
from posttrain.locking import sole_writer
from posttrain.run_layout import RunDir
with sole_writer(RunDir(sys.argv[1]).lock_file, "run directory"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_second_run_on_the_same_directory_is_refused_and_a_killed_holder_frees_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    (tmp_path / "chat.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 4
    )
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    run_dir = tmp_path / "runs" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        command = [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(tmp_path / "runs")]
        refused = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2
        assert f"PID {holder.pid}" in refused.stderr and "Traceback" not in refused.stderr
        assert not (run_dir / "sft").exists(), "the refused run must not have touched the directory"

        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait(timeout=30)
        after = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
        assert after.returncode == 0, after.stderr[-2000:]
        assert (run_dir / "sft" / "adapter" / "adapter_model.safetensors").exists()
    finally:
        holder.kill()


CONVERT = """
import sys
from posttrain.models.resolve import resolve_model
print(resolve_model("smollm2-135m-instruct").path, flush=True)
"""


@pytest.mark.integration
def test_two_processes_converting_the_embedded_model_at_once_both_succeed(tmp_path: Path) -> None:
    env = {**ENV, "POSTTRAIN_CACHE": str(tmp_path / "cache")}
    started = time.time()
    workers = [
        subprocess.Popen([sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(w.communicate(timeout=600), w.returncode) for w in workers]
    for (_, err), code in results:
        assert code == 0, err[-2000:]
    paths = {out.strip() for (out, _), _ in results}
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name] == []
    print(f"two concurrent conversions: {time.time() - started:.1f}s")


WRITER = """
import sys
from pathlib import Path
from posttrain.leaderboard.store import record
db, run = Path(sys.argv[1]), sys.argv[2]
for i in range(30):
    record(db, run, f"stage{i}", "m", {"pt_arith": i / 30, "pt_arith_mc": 0.5}, f"fp{i}", "2026-11-27T00:00:00")
"""


def test_runs_sharing_a_workspace_write_the_board_at_once_without_losing_rows(tmp_path: Path) -> None:
    from posttrain.leaderboard.store import top

    db = tmp_path / "leaderboard.sqlite"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), f"run{k}"], env=ENV, stderr=subprocess.PIPE, text=True)
        for k in range(4)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err[-2000:]
    rows = top(db)
    assert len(rows) == 4 * 30
    assert {(r.run_name, r.stage) for r in rows} == {(f"run{k}", f"stage{i}") for k in range(4) for i in range(30)}
    assert all(set(r.scores) == {"pt_arith", "pt_arith_mc"} for r in rows)
