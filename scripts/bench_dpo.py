"""A short DPO run of posttrain's dpo stage: tokens/s, MFU (GPU) and peak memory, for scripts/gpu_check.sh.

One configuration, one process: the check is that DPO runs at a sane speed on the device, not a
comparison (bench_sft.py and bench_grpo.py compare against plain TRL). Real (non-pad) tokens come
from TRL's `num_tokens` log; the first `--warmup` steps are not timed. MFU counts 6N FLOPs per token
(N = frozen parameters): 4N for the policy's forward + backward through frozen weights, 2N for the
reference's forward.

CPU:  PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_dpo.py --shape tiny --steps 3 --warmup 1
GPU:  PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_dpo.py --shape qwen2.5-0.5b --steps 12 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(benchlib.SHAPES), help="random-init model of this shape")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--json", help="also write the result row to this file")
    opts = parser.parse_args(argv)

    from rich.console import Console
    from transformers import TrainerCallback

    from data_prep.rows import write_jsonl
    from posttrain.models.lineage import Lineage
    from posttrain.models.loading import load_tokenizer
    from posttrain.stagekit import StageContext
    from posttrain.stagekit.specs import EvalSpec, LoraSpec, ModelSpec, TrainSpec
    from posttrain.stages.dpo import STAGE, DPOStage

    workdir = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    model_path = benchlib.embedded_model_path()
    if opts.shape:
        model_path = benchlib.random_model_dir(opts.shape, workdir / "model", model_path)
    prefs = Path(__file__).resolve().parents[1] / "data" / "quickstart" / "prefs.jsonl"
    rows = [json.loads(line) for line in prefs.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_jsonl(workdir / "prefs.jsonl", rows)
    times: list[float] = []
    tokens: list[float] = []
    record: dict[str, Any] = {}

    class Timer(TrainerCallback):
        seen = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            times.append(time.perf_counter() - self.start)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and "num_tokens" in logs:
                tokens.append(float(logs["num_tokens"]) - self.seen)
                self.seen = float(logs["num_tokens"])

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            record["frozen"] = sum(p.numel() for p in model.parameters() if not p.requires_grad)

    spec = DPOStage(
        name="dpo", type="dpo", data="prefs", lora=LoraSpec(r=16),
        train=TrainSpec(max_steps=opts.steps, batch_size=opts.batch_size, max_length=opts.max_length, logging_steps=1,
                        save_steps=10 * opts.steps),
    )
    ctx = StageContext(
        model_spec=ModelSpec(base=model_path, dtype="auto"), eval_spec=EvalSpec(), seed=0,
        stage_dir=workdir / "stage", input=Lineage(model_path), tokenizer=load_tokenizer(model_path),
        datasets={"prefs": SimpleNamespace(train_path=workdir / "prefs.jsonl")}, console=Console(quiet=True),
        callbacks=[Timer()],
    )
    STAGE.run(ctx, spec)
    timed = times[opts.warmup:]
    timed_tokens = tokens[opts.warmup:opts.warmup + len(timed)]
    tokens_s = sum(timed_tokens) / sum(timed) if timed and len(timed_tokens) == len(timed) else float("nan")
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else "CPU"
    peak_flops = next((v for k, v in benchlib.GPU_BF16_PEAK.items() if gpu and k in device), None)
    peak = benchlib.peak_memory_bytes()
    row = {"check": "dpo", "config": "posttrain dpo stage", "tokens_per_s": tokens_s,
           "mfu": 6 * record.get("frozen", 0) * tokens_s / peak_flops if peak_flops else None,
           "peak_mb": peak / 2**20, "seconds_per_step": sum(timed) / len(timed) if timed else float("nan")}
    print(f"\ndevice: {device} | dpo {opts.steps} steps (first {opts.warmup} untimed), batch {opts.batch_size}: "
          f"{tokens_s:.0f} real tok/s, {row['seconds_per_step']:.2f} s/step, peak {row['peak_mb']:.0f} MB"
          + (f", MFU {row['mfu']:.1%}" if row["mfu"] else ""))
    if opts.json:
        Path(opts.json).write_text(json.dumps([row], indent=1))
    return row


if __name__ == "__main__":
    main()
