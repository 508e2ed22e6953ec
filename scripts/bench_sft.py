"""LoRA SFT throughput: plain TRL defaults, TRL's best single option, and posttrain's sft stage, in ONE run.

Configurations (same model, same data in the same order, same LoRA, schedule and seed):
  a  plain TRL defaults: `from_pretrained(path)` + SFTTrainer(peft_config=LoraConfig) + SFTConfig defaults
     (gradient checkpointing on; on CPU `use_cpu=True`, which TRL requires there, and its default
     `bf16=True` then means bf16 autocast over fp32 weights)
  b  TRL with its best single option for the device: on GPU `use_liger_kernel=True`; on CPU the model
     loaded in bf16 (PEFT keeps the adapter fp32)
  c  posttrain: `posttrain.stages.sft.run` itself, `model.dtype: auto`, through its StageContext.
     `c:field=value;...` is a variant with SFT spec fields overridden, e.g. `c:group_by_length=false`.

Each configuration trains in its own child process, one at a time, with the whole machine and the
same thread count; `--rounds R` alternates a, b, c, a, b, c, ... so a slow spell on a shared machine
hits every configuration. The first `--warmup` steps of each run are not timed. Per configuration it
prints the median real (non-pad) tokens/s over the rounds with its min-max spread, the median real
tokens per CPU-second of the child (all its threads: on a shared machine it moves less than the wall
clock, but CPU time also grows under contention), the peak memory
(CPU: the child's peak RSS, model loading included; GPU: max_memory_allocated), MFU on a GPU whose
bf16 peak is known (4·N·tokens FLOPs per LoRA step: forward 2N, backward through frozen weights 2N),
the mean loss of the first and last quarter of steps, and the ratios c/a and c/b of the medians.

CPU (the embedded SmolLM2-135M-Instruct and the quickstart chats):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_sft.py --rounds 3
GPU (random-init Qwen2.5-0.5B shape, ~600-token mean, up to 2048, batch 8):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_sft.py --shape qwen2.5-0.5b --steps 30 --warmup 5 \
        --batch-size 8 --max-length 2048 --mean-tokens 600
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

LABELS = {"a": "TRL defaults", "b": "TRL best option", "c": "posttrain sft stage"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="a,b,c", help="a, b, c or c:field=value;... (order = turn order)")
    parser.add_argument("--rounds", type=int, default=3, help="times each configuration runs, alternating")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per child")
    parser.add_argument("--shape", choices=sorted(benchlib.SHAPES), help="random-init model of this shape (GPU)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--mean-tokens", type=int, default=600, help="mean length of synthetic chats (--shape)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the table's rows to this file (scripts/gpu_check.sh reads it)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the configurations in this process, not one child each (dry runs: fewer starts, "
                             "but the configurations share the process's memory peak and warm caches)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run this one configuration
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    opts = parse_args()
    if opts.child:
        run_child(opts)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    if opts.shape:  # built once, so every child loads the same weights
        benchlib.random_model_dir(opts.shape, workdir / "model", benchlib.embedded_model_path())
    names = opts.configs.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    load_before = benchlib.machine_load()
    for round_ in range(opts.rounds):
        for name in names:
            runs[name].append(run_in_child(name, round_, workdir, opts))
    rows = print_table(opts, runs, load_before)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))


def run_in_child(name: str, round_: int, workdir: Path, opts: argparse.Namespace) -> dict:
    """One training run of configuration `name` in a fresh process; its measurements, or {"error": ...}."""
    result = workdir / f"round{round_}-{name}.json".replace(":", "_").replace(";", "_")
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "MKL_NUM_THREADS": str(opts.threads)}
    cmd = [sys.executable, __file__, *sys.argv[1:], "--child", name, "--workdir", str(workdir)]
    start = time.perf_counter()
    if opts.in_process:
        run_child(argparse.Namespace(**{**vars(opts), "child": name, "workdir": str(workdir)}))
        proc = subprocess.CompletedProcess(cmd, 0, "")
    else:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    child_json = workdir / f"{name}.json"
    if proc.returncode != 0 or not child_json.exists():
        print(proc.stdout[-3000:], file=sys.stderr)
        return {"error": f"exit {proc.returncode}"}
    child_json.rename(result)
    record = json.loads(result.read_text())
    print(f"round {round_ + 1} {name}: {speed(record, opts.warmup):.0f} real tok/s, {time.perf_counter() - start:.0f} s in all",
          file=sys.stderr, flush=True)
    return record


def run_child(opts: argparse.Namespace) -> None:
    """Train one configuration and write its measurements to `<workdir>/<name>.json`."""
    torch.set_num_threads(opts.threads)
    workdir = Path(opts.workdir)
    model_path = str(workdir / "model") if opts.shape else benchlib.embedded_model_path()
    if opts.shape:
        chats = benchlib.synthetic_chats(opts.batch_size * opts.steps * 4, opts.mean_tokens, opts.max_length, opts.seed)
    else:
        chats = benchlib.quickstart_chats(10**9)
    record: dict[str, Any] = {"times": [], "cpu_times": [], "tokens": [], "losses": []}
    out = Path(tempfile.mkdtemp(prefix=f"run_{opts.child[0]}_", dir=workdir))
    record["setup"] = train_config(opts.child, opts, model_path, chats, step_timer(record), out)
    record["peak_bytes"] = benchlib.peak_memory_bytes()
    (workdir / f"{opts.child}.json").write_text(json.dumps(record))


def step_timer(record: dict) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Times each optimizer step; reads real tokens and loss from TRL's per-step logs."""

        seen_tokens = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            record["times"].append(time.perf_counter() - self.start)
            record["cpu_times"].append(time.process_time() - self.cpu_start)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and "num_tokens" in logs:
                record["tokens"].append(float(logs["num_tokens"]) - self.seen_tokens)
                self.seen_tokens = float(logs["num_tokens"])
                record["losses"].append(float(logs["loss"]))

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            record["params"] = sum(p.numel() for p in model.parameters())
            record["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)

    return StepTimer()


def train_config(name: str, opts: argparse.Namespace, model_path: str, chats: list, callback: Any, out: Path) -> str:
    """Train configuration `name`; returns a one-line description of how its model was set up."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from posttrain.models.loading import load_tokenizer
    from posttrain.stages.sft import sft_example

    tokenizer = load_tokenizer(model_path)
    gpu = torch.cuda.is_available()
    if name.startswith("c"):
        return run_posttrain_stage(name, opts, model_path, chats, callback, out, tokenizer)
    model_kwargs: dict[str, Any] = {}
    config_kwargs: dict[str, Any] = {}
    if name == "b":
        if gpu:
            config_kwargs["use_liger_kernel"] = True
        else:
            model_kwargs["dtype"] = torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(model_path, **model_kwargs)
    args = SFTConfig(
        output_dir=str(out), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.lr, lr_scheduler_type="cosine", max_length=opts.max_length, logging_steps=1,
        save_strategy="no", report_to="none", seed=opts.seed, data_seed=opts.seed, disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not gpu, **config_kwargs,
    )
    dataset = Dataset.from_list([sft_example(chat, "completion") for chat in chats])
    lora = LoraConfig(r=opts.rank, lora_alpha=2 * opts.rank, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[callback])
    trainer.train()
    return (f"weights {model.dtype}, autocast bf16={args.bf16}, grad ckpt={args.gradient_checkpointing}, "
            f"liger={args.use_liger_kernel}")


def run_posttrain_stage(
    name: str, opts: argparse.Namespace, model_path: str, chats: list, callback: Any, out: Path, tokenizer: Any
) -> str:
    """posttrain's own sft stage, given a StageContext as the pipeline would build it."""
    from rich.console import Console

    from data_prep.rows import write_jsonl
    from posttrain.models.lineage import Lineage
    from posttrain.models.precision import mixed_precision, weights_dtype
    from posttrain.stagekit import StageContext
    from posttrain.stagekit.specs import EvalSpec, LoraSpec, ModelSpec, TrainSpec
    from posttrain.stages.sft import SFTStage, run

    train_path = out / "chat.jsonl"
    write_jsonl(train_path, [{"messages": chat} for chat in chats])
    overrides = dict(item.split("=", 1) for item in name.partition(":")[2].split(";") if item)
    spec = SFTStage(
        name="sft", type="sft", data="chat", lora=LoraSpec(r=opts.rank, alpha=2 * opts.rank, dropout=0.05),
        train=TrainSpec(max_steps=opts.steps, lr=opts.lr, batch_size=opts.batch_size, max_length=opts.max_length,
                        scheduler="cosine", logging_steps=1, save_steps=10 * opts.steps),
        **overrides,
    )
    ctx = StageContext(
        model_spec=ModelSpec(base=model_path, dtype="auto"), eval_spec=EvalSpec(), seed=opts.seed,
        stage_dir=out / "stage", input=Lineage(model_path), tokenizer=tokenizer,
        datasets={"chat": SimpleNamespace(train_path=train_path)}, console=Console(quiet=True), callbacks=[callback],
    )
    run(ctx, spec)
    autocast = mixed_precision("auto", trains_adapter=True)
    return (f"weights {weights_dtype('auto', 'adapter')}, autocast bf16={autocast['bf16']}, "
            f"grad ckpt={spec.train.gradient_checkpointing}, dtype: auto")


def speed(record: dict, warmup: int, clock: str = "times") -> float:
    """Real tokens per second of wall clock (`times`) or of the process's CPU time (`cpu_times`), timed steps only."""
    timed = record.get(clock, [])[warmup:]
    return sum(record["tokens"][warmup:warmup + len(timed)]) / sum(timed) if timed else float("nan")


def print_table(opts: argparse.Namespace, runs: dict[str, list[dict]], load_before: str) -> list[dict]:
    rows: list[dict] = []
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else f"CPU, {opts.threads} threads per run"
    peak = next((v for k, v in benchlib.GPU_BF16_PEAK.items() if gpu and k in device), None)
    print(f"\ndevice: {device} | load average before {load_before}, after {benchlib.machine_load()}")
    print(f"{opts.rounds} rounds, each config in its own process, alternating; steps {opts.steps} "
          f"(first {opts.warmup} untimed), batch {opts.batch_size}, max_length {opts.max_length}, LoRA r{opts.rank}")
    width = max(len(f"{name} {LABELS[name[0]]}") for name in runs) + 2
    header = (f"{'config':<{width}}{'real tok/s':>11}{'  min-max':<14}{'tok/CPU-s':>10}{'s/step':>7}{'peak MB':>9}{'MFU':>7}"
              f"{'loss first→last':>18}  setup")
    print(header)
    print("-" * len(header))
    medians: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    for name, records in runs.items():
        label = f"{name} {LABELS[name[0]]}"
        good = [r for r in records if "error" not in r and len(r["times"]) > opts.warmup]
        if not good:
            print(f"{label:<{width}} failed: {records[0].get('error', 'too few steps')}")
            continue
        speeds = [speed(r, opts.warmup) for r in good]
        medians[name] = statistics.median(speeds)
        step_s = statistics.median(statistics.mean(r["times"][opts.warmup:]) for r in good)
        peak_mb = max(r["peak_bytes"] for r in good) / 2**20
        frozen = good[0]["params"] - good[0]["trainable"]
        mfu = f"{4 * frozen * medians[name] / peak:.1%}" if peak else "—"
        losses = good[0]["losses"]
        k = max(1, len(losses) // 4)
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        spread = f"  {min(speeds):.0f}-{max(speeds):.0f}"
        per_cpu[name] = statistics.median(speed(r, opts.warmup, "cpu_times") for r in good)
        rows.append({"check": "sft", "config": label, "tokens_per_s": medians[name],
                     "mfu": 4 * frozen * medians[name] / peak if peak else None, "peak_mb": peak_mb})
        print(f"{label:<{width}}{medians[name]:>11.0f}{spread:<14}{per_cpu[name]:>10.1f}{step_s:>7.2f}{peak_mb:>9.0f}{mfu:>7}"
              f"{f'{first:.3f}→{last:.3f}':>18}  {good[0]['setup']}")
    for other in ("a", "b"):
        if "c" in medians and other in medians:
            print(f"c/{other} = {medians['c'] / medians[other]:.2f}x in real tok/s, "
                  f"{per_cpu['c'] / per_cpu[other]:.2f}x in real tok/CPU-s (medians of {opts.rounds} alternating rounds)")
    return rows


if __name__ == "__main__":
    main()
