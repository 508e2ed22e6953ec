"""GRPO throughput: plain TRL `GRPOTrainer` defaults against posttrain's grpo stage, in ONE run.

Configurations (same model, prompts in the same order, rewards, group size, completion length,
temperature, learning rate, LoRA and seed):
  a  plain TRL defaults: `from_pretrained(path)` (fp32 for the embedded model) + GRPOTrainer(peft_config=
     LoraConfig) + GRPOConfig defaults (gradient checkpointing on, bf16 autocast, HF `generate`; on CPU
     `use_cpu=True`, which TRL requires there)
  c  posttrain: `posttrain.stages.grpo.run` itself, `model.dtype: auto`, through its StageContext.
     `c:field=value;...` is a variant with GRPO spec fields overridden (values read as YAML), e.g.
     `c:rollouts={engine: hf}` (the plain in-process path) or `c:rollouts={engine: vllm}`.

Each configuration trains in its own child process, one at a time; `--rounds R` alternates a, c, a, c, ...
so a slow spell on a shared machine hits every configuration. The first `--warmup` steps are not timed.
Per configuration: completions/s and optimizer steps/s (medians over rounds, min-max), seconds per step
in each phase (generation: `_generate`, prompts in → completion ids and text out; scoring: the reward
functions; logps: the no-grad log-prob passes of the scoring step (old policy, reference), 0 when none
is needed; loss: forward+backward of the loss; optimizer: the rest of the step), peak memory (CPU: the
child's peak RSS with model loading; GPU: max_memory_allocated), and the mean reward of the first and
last quarter of steps (both must learn alike), then c/a. TRL reports its phases only to trackers, so
the child wraps the trainer's own methods with timers: the same methods in both configurations.

CPU (the embedded SmolLM2-135M-Instruct, the quickstart's word problems):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_grpo.py --rounds 2
GPU (random-init Qwen2.5-0.5B shape; vLLM colocated is TRL's own `use_vllm` path):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_grpo.py --shape qwen2.5-0.5b --steps 12 --warmup 2 \
        --batch-size 32 --num-generations 8 --max-completion-length 256
"""

from __future__ import annotations

import argparse
import functools
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

LABELS = {"a": "TRL GRPO defaults", "c": "posttrain grpo stage"}
PHASES = ("generation", "scoring", "logps", "loss", "optimizer")
REWARDS = (("rewards.math:exact_number", 1.0), ("rewards.format:answer_line", 0.2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="a,c", help="a, c or c:field=value;... (order = turn order)")
    parser.add_argument("--rounds", type=int, default=2, help="times each configuration runs, alternating")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per child")
    parser.add_argument("--shape", choices=sorted(benchlib.SHAPES), help="random-init model of this shape (GPU)")
    parser.add_argument("--model", help="model path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="completions per optimizer step")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vllm", action="store_true", help="GPU: configuration a uses TRL's vLLM colocate mode")
    parser.add_argument("--json", help="also write the table's rows to this file (scripts/gpu_check.sh reads it)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the configurations in this process, not one child each (dry runs: fewer starts, "
                             "but the configurations share the process's memory peak and warm caches)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run this one configuration
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    opts = parse_args(argv)
    if opts.child:
        run_child(opts)
        return {}
    workdir = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    if opts.shape:  # built once, so every child loads the same weights
        benchlib.random_model_dir(opts.shape, workdir / "model", benchlib.embedded_model_path())
    names = opts.configs.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    load_before = benchlib.machine_load()
    for round_ in range(opts.rounds):
        for name in names:
            runs[name].append(run_in_child(name, round_, workdir, opts, argv))
    rows = print_table(opts, runs, load_before)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))
    return runs


def run_in_child(name: str, round_: int, workdir: Path, opts: argparse.Namespace, argv: list[str] | None) -> dict:
    """One training run of configuration `name` in a fresh process; its measurements, or {"error": ...}."""
    result = workdir / f"round{round_}-{safe(name)}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "MKL_NUM_THREADS": str(opts.threads)}
    args = sys.argv[1:] if argv is None else argv
    cmd = [sys.executable, __file__, *args, "--child", name, "--workdir", str(workdir)]
    start = time.perf_counter()
    if opts.in_process:
        run_child(argparse.Namespace(**{**vars(opts), "child": name, "workdir": str(workdir)}))
        proc = subprocess.CompletedProcess(cmd, 0, "")
    else:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    child_json = workdir / f"{safe(name)}.json"
    if proc.returncode != 0 or not child_json.exists():
        print(proc.stdout[-3000:], file=sys.stderr)
        return {"error": f"exit {proc.returncode}"}
    child_json.rename(result)
    record = json.loads(result.read_text())
    print(f"round {round_ + 1} {name}: {completions_per_s(record, opts):.2f} completions/s, "
          f"{time.perf_counter() - start:.0f} s in all", file=sys.stderr, flush=True)
    return record


def safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def run_child(opts: argparse.Namespace) -> None:
    """Train one configuration and write its measurements to `<workdir>/<name>.json`."""
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    workdir = Path(opts.workdir)
    model_path = str(workdir / "model") if opts.shape else (opts.model or benchlib.embedded_model_path())
    record: dict[str, Any] = {"times": [], "rewards": [], "phases": [], "tokens": []}
    timer = PhaseTimer()
    timer.install()
    out = Path(tempfile.mkdtemp(prefix=f"run_{safe(opts.child)}_", dir=workdir))
    record["setup"] = train_config(opts.child, opts, model_path, word_problems(), step_timer(record, timer), out)
    record["peak_bytes"] = benchlib.peak_memory_bytes()
    (workdir / f"{safe(opts.child)}.json").write_text(json.dumps(record))


def word_problems() -> list[dict[str, Any]]:
    """The quickstart's prompt rows that have an exact numeric answer (what the grpo recipe trains on)."""
    path = Path(__file__).resolve().parents[1] / "data" / "quickstart" / "prompts.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if row.get("answer") is not None]


_ORIGINAL_METHODS: dict[str, Any] = {}
"""GRPOTrainer's methods before any PhaseTimer wrapped them."""


class PhaseTimer:
    """Wall-clock seconds spent in GRPOTrainer's own methods, per optimizer step.

    Patched on the class, so a posttrain subclass is timed through the same methods. Nested calls of
    `_get_per_token_logps_and_entropies` under the loss (with grad) are not counted as `logps`.
    """

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys(("generate", "rewards", "logps", "prepare", "train_step"), 0.0)
        self._in_prepare = False

    def install(self) -> None:
        """Wrap the methods; a later install (the next configuration of an --in-process run) replaces the timer."""
        from trl import GRPOTrainer

        for method, phase in (("_generate", "generate"), ("_calculate_rewards", "rewards"),
                              ("_prepare_inputs", "prepare"), ("training_step", "train_step"),
                              ("_get_per_token_logps_and_entropies", "logps")):
            original = _ORIGINAL_METHODS.setdefault(method, getattr(GRPOTrainer, method))
            setattr(GRPOTrainer, method, self._timed(original, phase))

    def _timed(self, fn: Any, phase: str) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if phase == "logps" and not self._in_prepare:
                return fn(*args, **kwargs)
            if phase == "prepare":
                self._in_prepare = True
            benchlib.sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                benchlib.sync()
                self.spent[phase] += time.perf_counter() - start
                if phase == "prepare":
                    self._in_prepare = False

        return wrapper

    def take(self, step_seconds: float) -> dict[str, float]:
        """This step's phases (see the module doc) and reset the counters."""
        s = self.spent
        phases = {
            "generation": s["generate"], "scoring": s["rewards"], "logps": s["logps"],
            "loss": s["train_step"] - s["prepare"], "optimizer": step_seconds - s["train_step"],
        }
        self.spent = dict.fromkeys(s, 0.0)
        return phases


def step_timer(record: dict, timer: PhaseTimer) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Times each optimizer step and its phases; reads the mean reward from TRL's per-step logs."""

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            benchlib.sync()
            seconds = time.perf_counter() - self.start
            record["times"].append(seconds)
            record["phases"].append(timer.take(seconds))

        seen_tokens = 0.0

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and "reward" in logs:
                record["rewards"].append(float(logs["reward"]))
            if logs and "num_tokens" in logs:  # prompt + completion tokens, cumulative
                record["tokens"].append(float(logs["num_tokens"]) - self.seen_tokens)
                self.seen_tokens = float(logs["num_tokens"])

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            record["params"] = sum(p.numel() for p in model.parameters())
            record["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)

    return StepTimer()


def train_config(name: str, opts: argparse.Namespace, model_path: str, rows: list, callback: Any, out: Path) -> str:
    """Train configuration `name`; returns a one-line description of how its model was set up."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.models.loading import load_tokenizer
    from posttrain.stagekit.specs import RewardSpec
    from posttrain.stages.grpo import prompt_dataset
    from posttrain.training.scoring import load_rewards

    tokenizer = load_tokenizer(model_path)
    if name.startswith("c"):
        return run_posttrain_stage(name, opts, model_path, rows, callback, out, tokenizer)
    gpu = torch.cuda.is_available()
    rewards = load_rewards([RewardSpec(fn=fn, weight=w) for fn, w in REWARDS], base_dir=None)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    args = GRPOConfig(
        output_dir=str(out), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        num_generations=opts.num_generations, max_completion_length=opts.max_completion_length,
        temperature=opts.temperature, learning_rate=opts.lr, reward_weights=[w for _, w in REWARDS],
        logging_steps=1, save_strategy="no", report_to="none", seed=opts.seed, data_seed=opts.seed,
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=not gpu,
        **({"use_vllm": True, "vllm_mode": "colocate"} if opts.vllm and gpu else {}),
    )
    lora = LoraConfig(r=opts.rank, lora_alpha=2 * opts.rank, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=[r.fn for r in rewards], args=args,
                          train_dataset=prompt_dataset(rows), processing_class=tokenizer, peft_config=lora,
                          callbacks=[callback])
    trainer.train()
    return (f"weights {model.dtype}, autocast bf16={args.bf16}, grad ckpt={args.gradient_checkpointing}, "
            f"vllm={args.use_vllm}")


def run_posttrain_stage(
    name: str, opts: argparse.Namespace, model_path: str, rows: list, callback: Any, out: Path, tokenizer: Any
) -> str:
    """posttrain's own grpo stage, given a StageContext as the pipeline would build it."""
    import yaml
    from rich.console import Console

    from data_prep.rows import write_jsonl
    from posttrain.models.lineage import Lineage
    from posttrain.stagekit import StageContext
    from posttrain.stagekit.specs import EvalSpec, LoraSpec, ModelSpec, RewardSpec, TrainSpec
    from posttrain.stages.grpo import GRPOStage, run

    train_path = out / "prompts.jsonl"
    write_jsonl(train_path, rows)
    overrides = {k: yaml.safe_load(v) for k, v in
                 (item.split("=", 1) for item in name.partition(":")[2].split(";") if item)}
    spec = GRPOStage.model_validate({
        "name": "grpo", "type": "grpo", "data": "prompts",
        "rewards": [RewardSpec(fn=fn, weight=w) for fn, w in REWARDS],
        "num_generations": opts.num_generations, "max_completion_length": opts.max_completion_length,
        "temperature": opts.temperature,
        "lora": LoraSpec(r=opts.rank, alpha=2 * opts.rank, dropout=0.05),
        "train": TrainSpec(max_steps=opts.steps, lr=opts.lr, batch_size=opts.batch_size, logging_steps=1,
                           save_steps=10 * opts.steps),
        **({"use_vllm": True} if opts.vllm and torch.cuda.is_available() else {}),
        **overrides,
    })
    ctx = StageContext(
        model_spec=ModelSpec(base=model_path, dtype="auto"), eval_spec=EvalSpec(), seed=opts.seed,
        stage_dir=out / "stage", input=Lineage(model_path), tokenizer=tokenizer,
        datasets={"prompts": SimpleNamespace(train_path=train_path)}, console=Console(quiet=True),
        callbacks=[callback],
    )
    run(ctx, spec)
    rollouts = getattr(spec, "rollouts", None)
    return f"dtype: auto, grad ckpt={spec.train.gradient_checkpointing}, rollouts={rollouts}"


def completions_per_s(record: dict, opts: argparse.Namespace) -> float:
    timed = record.get("times", [])[opts.warmup:]
    return opts.batch_size * len(timed) / sum(timed) if timed else float("nan")


def print_table(opts: argparse.Namespace, runs: dict[str, list[dict]], load_before: str) -> list[dict]:
    """Print the table; its rows as dicts (tokens/s counts prompt + completion tokens of the timed steps)."""
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else f"CPU, {opts.threads} threads per run"
    peak_flops = next((v for k, v in benchlib.GPU_BF16_PEAK.items() if gpu and k in device), None)
    rows: list[dict] = []
    print(f"\ndevice: {device} | load average before {load_before}, after {benchlib.machine_load()}")
    print(f"{opts.rounds} rounds, each config in its own process, alternating; {opts.steps} steps (first "
          f"{opts.warmup} untimed) of {opts.batch_size} completions = {opts.batch_size // opts.num_generations} "
          f"prompts × {opts.num_generations}, ≤{opts.max_completion_length} new tokens, LoRA r{opts.rank}")
    width = max(len(f"{name} {LABELS[name[0]]}") for name in runs) + 2
    phase_head = "".join(f"{p[:6]:>7}" for p in PHASES)
    header = (f"{'config':<{width}}{'compl/s':>8}{'  min-max':<12}{'steps/s':>8}{phase_head}{'peak MB':>9}"
              f"{'reward first→last':>19}  setup")
    print(header)
    print("-" * len(header))
    medians: dict[str, float] = {}
    for name, records in runs.items():
        label = f"{name} {LABELS[name[0]]}"
        good = [r for r in records if "error" not in r and len(r["times"]) > opts.warmup]
        if not good:
            print(f"{label:<{width}} failed: {records[0].get('error', 'too few steps')}")
            continue
        speeds = [completions_per_s(r, opts) for r in good]
        medians[name] = statistics.median(speeds)
        phases = {p: statistics.median(statistics.mean(s[p] for s in r["phases"][opts.warmup:]) for r in good)
                  for p in PHASES}
        peak_mb = max(r["peak_bytes"] for r in good) / 2**20
        rewards = good[0]["rewards"]
        k = max(1, len(rewards) // 4)
        first, last = (sum(rewards[:k]) / k, sum(rewards[-k:]) / k) if rewards else (float("nan"),) * 2
        timed = good[0]["tokens"][opts.warmup:len(good[0]["times"])]
        tokens_s = sum(timed) / sum(good[0]["times"][opts.warmup:opts.warmup + len(timed)]) if timed else float("nan")
        # 6N per token: a 2N forward to generate it, 4N forward + backward (frozen base) to train on it.
        frozen = good[0].get("params", 0) - good[0].get("trainable", 0)
        mfu = 6 * frozen * tokens_s / peak_flops if peak_flops else None
        rows.append({"check": "grpo", "config": label, "tokens_per_s": tokens_s, "completions_per_s": medians[name],
                     "mfu": mfu, "peak_mb": peak_mb, "phases": phases, "reward_first": first, "reward_last": last})
        print(f"{label:<{width}}{medians[name]:>8.2f}{f'  {min(speeds):.2f}-{max(speeds):.2f}':<12}"
              f"{medians[name] / opts.batch_size:>8.3f}{''.join(f'{phases[p]:>7.2f}' for p in PHASES)}"
              f"{peak_mb:>9.0f}{f'{first:.3f}→{last:.3f}':>19}  {good[0]['setup']}")
    print("(phases: seconds per optimizer step, medians over rounds)")
    for name in medians:
        if name.startswith("c") and "a" in medians:
            print(f"{name}/a = {medians[name] / medians['a']:.2f}x in completions/s "
                  f"(medians of {opts.rounds} alternating rounds)")
    return rows


if __name__ == "__main__":
    main()
