"""scripts/gpu_check.sh's CPU dry run: the GPU check's three benches and its table, at a tiny shape.

The script itself runs (its argument arrays, the benches' real training paths, the JSON they write, the
summary table); the dry run starts the three benches side by side and each bench's configurations in one
process, so it takes ~30 s on 2 cores instead of ~2 minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_prints_one_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("check "):]
    for check, config in (("sft", "TRL defaults"), ("sft", "posttrain sft stage"), ("grpo", "TRL GRPO defaults"),
                          ("grpo", "posttrain grpo stage"), ("dpo", "posttrain dpo stage")):
        assert any(line.startswith(check) and config in line for line in table.splitlines()), (check, config, table)
    assert "failed" not in proc.stdout
