"""LoRA SFT throughput in ONE run: plain TRL defaults, TRL's best single option, and posttrain's sft stage.

Configurations (same model, same data, same LoRA, same schedule and seed):
  a  plain TRL defaults: `from_pretrained(path)` + SFTTrainer(peft_config=LoraConfig) + SFTConfig defaults
     (on CPU `use_cpu=True`, which TRL requires there; its default `bf16=True` then means bf16 autocast)
  b  TRL with its best single option for the device: on GPU `use_liger_kernel=True`; on CPU the model
     loaded in bf16 (PEFT keeps the adapter fp32)
  c  posttrain: `posttrain.stages.sft.run` itself, `model.dtype: auto`, through its StageContext

The configurations run in threads that take turns step by step (a, b, c, a, b, c, ...); the
first `--warmup` steps of each are not timed. CAVEAT, measured on the shared 2-core CPU: the
same configurations gave c/b 0.57 with c's thread started last and 2.47 with it started first,
and TRL defaults alone in a process took 65 s/step against 12 s in a threaded run: either the
threads bias the timing or the machine's other tenants swamp it. Until that is settled, on CPU
run one configuration per process, alternate them, and repeat:
    for c in a c b a c; do python scripts/bench_sft.py --configs $c --steps 4 --warmup 1; done Prints real
(non-pad) tokens/s, the peak memory, MFU where the device's peak is known, the first and last
mean losses, and the ratios c/a and c/b.

Memory: on GPU, the highest `torch.cuda.max_memory_allocated()` rise during a step plus the
configuration's own weights, gradients and optimizer states; on CPU the same with the RSS rise
(sampled every 5 ms; an estimate, the allocator keeps freed pages). MFU: 4·N·tokens FLOPs per
step for a LoRA (forward 2N, backward through frozen weights 2N; attention not counted) over the
GPU's dense bf16 peak; not printed on CPU (no documented peak for this part).

CPU (the embedded SmolLM2-135M-Instruct and the quickstart chats):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_sft.py
GPU (random-init Qwen2.5-0.5B shape, ~600-token mean, up to 2048, batch 8):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_sft.py --shape qwen2.5-0.5b --steps 30 --warmup 5 \
        --batch-size 8 --max-length 2048 --mean-tokens 600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

LABELS = {"a": "TRL defaults", "b": "TRL best option", "c": "posttrain sft stage"}


@dataclass
class Record:
    name: str
    times: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    gpu_rise: int = 0
    static: int = 0
    trainable: int = 0
    params: int = 0
    setup: str = ""
    set_up: bool = False
    error: str | None = None


def timing_callback(record: Record, turns: benchlib.Turns, sampler: benchlib.PeakSampler) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Times each optimizer step inside its turn; reads real tokens and loss from TRL's per-step logs."""

        def __init__(self) -> None:
            self.seen_tokens = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            record.set_up = True
            turns.setup_lock.release()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            turns.begin(record.name)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.gpu_start = torch.cuda.memory_allocated()
            sampler.step_begin(record.name)
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                record.gpu_rise = max(record.gpu_rise, torch.cuda.max_memory_allocated() - self.gpu_start)
            record.times.append(time.perf_counter() - self.start)
            sampler.step_end()
            turns.end(record.name)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and "num_tokens" in logs:
                record.tokens.append(float(logs["num_tokens"]) - self.seen_tokens)
                self.seen_tokens = float(logs["num_tokens"])
                record.losses.append(float(logs["loss"]))

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            optimizer = kwargs.get("optimizer")
            record.static = benchlib.static_bytes(model, optimizer)
            record.params = sum(p.numel() for p in model.parameters())
            record.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

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
    if name == "c":
        return run_posttrain_stage(opts, model_path, chats, callback, out, tokenizer)
    model_kwargs: dict[str, Any] = {}
    config_kwargs: dict[str, Any] = {}
    if name == "b":
        if gpu:
            config_kwargs["use_liger_kernel"] = True
        else:
            model_kwargs["dtype"] = torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(model_path, **model_kwargs)
    args = SFTConfig(
        output_dir=str(out / name), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
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
    return f"weights {model.dtype}, autocast bf16={args.bf16}, liger={args.use_liger_kernel}"


def run_posttrain_stage(
    opts: argparse.Namespace, model_path: str, chats: list, callback: Any, out: Path, tokenizer: Any
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
    spec = SFTStage(
        name="sft", type="sft", data="chat", lora=LoraSpec(r=opts.rank, alpha=2 * opts.rank, dropout=0.05),
        train=TrainSpec(max_steps=opts.steps, lr=opts.lr, batch_size=opts.batch_size, max_length=opts.max_length,
                        scheduler="cosine", logging_steps=1, save_steps=10 * opts.steps),
    )
    ctx = StageContext(
        model_spec=ModelSpec(base=model_path, dtype="auto"), eval_spec=EvalSpec(), seed=opts.seed,
        stage_dir=out / "c", input=Lineage(model_path), tokenizer=tokenizer,
        datasets={"chat": SimpleNamespace(train_path=train_path)}, console=Console(quiet=True), callbacks=[callback],
    )
    run(ctx, spec)
    autocast = mixed_precision("auto", trains_adapter=True)
    return f"weights {weights_dtype('auto', 'adapter')}, autocast bf16={autocast['bf16']}, dtype: auto"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="a,b,c", help="which of a,b,c to run (order = turn order)")
    parser.add_argument("--shape", choices=sorted(benchlib.SHAPES), help="random-init model of this shape (GPU)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--mean-tokens", type=int, default=600, help="mean length of synthetic chats (--shape)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    names = opts.configs.split(",")

    out = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    model_path = benchlib.embedded_model_path()
    rows = opts.batch_size * (opts.steps + 1)
    if opts.shape:
        model_path = benchlib.random_model_dir(opts.shape, out / "model", model_path)
        chats = benchlib.synthetic_chats(rows, opts.mean_tokens, opts.max_length, opts.seed)
    else:
        chats = benchlib.quickstart_chats(rows)
    load_before = benchlib.machine_load()

    turns = benchlib.Turns(names)
    sampler = benchlib.PeakSampler()
    sampler.start()
    records = {name: Record(name) for name in names}

    def worker(name: str) -> None:
        turns.setup_lock.acquire()
        callback = timing_callback(records[name], turns, sampler)
        try:
            records[name].setup = train_config(name, opts, model_path, chats, callback, out)
        except Exception:  # one failed configuration must not hide the others' numbers
            records[name].error = traceback.format_exc(limit=3).strip().splitlines()[-1]
            traceback.print_exc()
        finally:
            if not records[name].set_up:
                turns.setup_lock.release()
            turns.finish(name)

    threads = [threading.Thread(target=worker, args=(name,), name=name) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sampler.stop()
    print_table(opts, records, load_before, sampler)


def print_table(opts: argparse.Namespace, records: dict[str, Record], load_before: str, sampler: Any) -> None:
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    peak = next((v for k, v in benchlib.GPU_BF16_PEAK.items() if gpu and k in device), None)
    print(f"\ndevice: {device} | load average before {load_before}, after {benchlib.machine_load()}")
    print(f"steps {opts.steps} (first {opts.warmup} untimed), batch {opts.batch_size}, max_length {opts.max_length}, "
          f"LoRA r{opts.rank}, interleaved step by step")
    header = f"{'config':<24}{'real tok/s':>11}{'s/step':>8}{'peak MB':>9}{'MFU':>7}{'loss first→last':>18}  setup"
    print(header)
    print("-" * len(header))
    speed: dict[str, float] = {}
    for name, r in records.items():
        label = f"{name} {LABELS[name]}"
        if r.error or len(r.times) <= opts.warmup:
            print(f"{label:<24} failed: {r.error or 'too few steps'}")
            continue
        timed = r.times[opts.warmup:]
        tokens = sum(r.tokens[opts.warmup:opts.warmup + len(timed)])
        speed[name] = tokens / sum(timed)
        rise = r.gpu_rise if gpu else sampler.rise.get(name, 0)
        peak_mb = (r.static + rise) / 2**20
        mfu = f"{4 * (r.params - r.trainable) * speed[name] / peak:.1%}" if peak else "—"
        k = max(1, len(r.losses) // 4)
        first, last = sum(r.losses[:k]) / k, sum(r.losses[-k:]) / k
        print(f"{label:<24}{speed[name]:>11.0f}{sum(timed) / len(timed):>8.2f}{peak_mb:>9.0f}{mfu:>7}"
              f"{f'{first:.3f}→{last:.3f}':>18}  {r.setup}")
    for other in ("a", "b"):
        if "c" in speed and other in speed:
            print(f"c/{other} = {speed['c'] / speed[other]:.2f}x")


if __name__ == "__main__":
    main()
