"""Distillation step time: logits over every position against the answer window only, and fp32 against
bf16 autocast, in ONE run.

Configurations (same teacher, student, batches, loss, learning rate and seed):
  full         the student and the teacher project every position to the vocabulary (what the distill stage
               did before, and what TRL's GKD trainer does)
  window       `DistillTrainer`'s answer window: only the positions the divergence reads (`logits_to_keep`)
  window_bf16  the window, with the fp32 student's matmuls under bf16 autocast (its weights and Adam
               state stay fp32): what `mixed_precision` picks for a full fine-tune on a CPU with bf16 units

The teacher is the embedded SmolLM2-135M-Instruct (bf16 on a CPU with bf16 units, as the stage loads it);
the student its width-pruned copy (57% of each MLP, fp32, full fine-tune), trained with forward KL + 0.5 CE
on the quickstart's word problems (batch 8). Each configuration runs in its own child process, one at a time;
`--rounds R` alternates full, window, full, window, ... so a slow spell hits both. The first `--warmup`
steps are not timed. Prints per configuration the median seconds per step (min-max over rounds), the
last step's loss (full and window equal up to rounding: the math is the same; bf16 close to them) and the
peak RSS, then full/window and window/window_bf16.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_distill.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

CONFIGS = ("full", "window", "window_bf16")


def child(config: str, steps: int, warmup: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from posttrain.distill.prune import (
        mlp_neuron_importance,
        mlp_neurons_to_keep,
        prune_layers,
        prune_mlp_width,
    )
    from posttrain.distill.trainer import DistillTrainer, GKDConfig
    from posttrain.models.precision import weights_dtype
    from posttrain.training.objectives import batches, encode_completion

    path = benchlib.embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=weights_dtype("auto", "inference")).eval()
    chats = [c for c in benchlib.quickstart_chats(2000) if "Answer: " in c[-1]["content"]][: 8 * (steps + 4)]
    encoded = [encode_completion(tokenizer, c[:-1], c[-1]["content"], max_length=256) for c in chats[:32]]
    student = prune_layers(teacher, list(range(teacher.config.num_hidden_layers))).float()
    importance = mlp_neuron_importance(student, list(batches(encoded, 8, tokenizer.pad_token_id)))
    prune_mlp_width(student, importance, mlp_neurons_to_keep(student.config.intermediate_size, 0.57))

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(
            output_dir=out, per_device_train_batch_size=8, max_steps=steps, learning_rate=1.5e-4, lmbda=0.0,
            report_to="none", use_cpu=True, save_strategy="no", max_length=256, seed=0, logging_steps=1,
            pad_token=tokenizer.pad_token, bf16=config == "window_bf16",
        )
        trainer = DistillTrainer(
            model=student, teacher_model=teacher, args=args, processing_class=tokenizer, callbacks=[Timer()],
            train_dataset=Dataset.from_list([{"messages": c} for c in chats]), loss="forward_kl", ce_weight=0.5,
        )
        trainer._answer_window = config != "full"
        trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return {"seconds_per_step": statistics.mean(times[warmup:]), "last_loss": losses[-1],
            "peak_mb": benchlib.peak_memory_bytes() / 2**20}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print(json.dumps(child(opts.child, opts.steps, opts.warmup)))
        return {}

    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for round_ in range(opts.rounds):
        for config in CONFIGS:
            command = [sys.executable, __file__, "--child", config, "--steps", str(opts.steps),
                       "--warmup", str(opts.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {config}: {runs[config][-1]}  (load {benchlib.machine_load()})", flush=True)
    summary = {}
    for config, results in runs.items():
        per_step = [r["seconds_per_step"] for r in results]
        summary[config] = statistics.median(per_step)
        print(f"{config:6s} {summary[config]:.2f} s/step ({min(per_step):.2f}-{max(per_step):.2f}), "
              f"last loss {results[-1]['last_loss']:.4f}, peak {max(r['peak_mb'] for r in results):.0f} MB")
    print(f"full/window: {summary['full'] / summary['window']:.2f}x")
    print(f"window/window_bf16: {summary['window'] / summary['window_bf16']:.2f}x")
    return summary


if __name__ == "__main__":
    main()
