"""Memory pre-flight: the worst-case batch runs once before the first step; out-of-memory is said in seconds.

The pre-flight must change nothing (weights, gradients, random state), find the longest row of what a trainer
will see, and turn an allocation failure at the worst-case shape into one message with the knobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from posttrain.training.preflight import MemoryPreflight, is_out_of_memory, longest_row, worst_case_step

ROOT = Path(__file__).resolve().parents[1]


def test_worst_case_step_moves_no_weight_and_restores_random_state(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.attention_dropout = 0.1  # random state is consumed in the pass: it must be given back
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    worst_case_step(model, rows=3, length=17)
    assert torch.equal(torch.rand(4), expected_next)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training  # the mode it came in


def test_longest_row_of_what_trainers_hold() -> None:
    sft = Dataset.from_dict({"input_ids": [[1] * 5, [1] * 40, [1] * 7]})
    assert longest_row(sft) == 40
    pairs = Dataset.from_dict({"prompt_input_ids": [[1] * 10, [1] * 3], "chosen_input_ids": [[1] * 2, [1] * 30],
                               "rejected_input_ids": [[1] * 9, [1] * 4]})
    assert longest_row(pairs) == 33  # prompt + the longer answer, per row
    assert longest_row(Dataset.from_dict({"prompt": ["a", "b"]})) is None  # prompts only: generation decides


def test_out_of_memory_is_told_apart() -> None:
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 52428800000 bytes. Error code 12"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("shapes do not match"))
    hook = MemoryPreflight(stage="s", max_length=8)
    assert hook.shape is None


RECIPE = """\
name: big
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}], max_line_bytes: 2000000, shuffle: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4}},
     train: {{max_steps: 3, batch_size: 4096, lr: 1.0e-3, logging_steps: 1, max_length: 120000}}}}
export: {{formats: [peft]}}
"""


@pytest.mark.slow
def test_a_batch_too_big_for_memory_fails_before_the_first_step(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                          {"role": "assistant", "content": f"Answer: {i + 7}"}]} for i in range(12)]
    # One long conversation among short ones: without the pre-flight it fails only when its batch comes.
    rows.append({"messages": [{"role": "user", "content": "Repeat: " + "7 " * 100_000},
                              {"role": "assistant", "content": "7"}]})
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "big.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "posttrain.cli", "run", "big.yaml", "--runs-dir", "runs"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    message = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr[-3000:]
    assert "stage sft: its longest batch (4096 rows ×" in message and "does not fit in memory" in message
    for knob in ("train.batch_size", "train.max_length", "train.gradient_checkpointing", "model.quantize: 4bit"):
        assert knob in message
    assert "Traceback" not in done.stderr
    metrics = tmp_path / "runs" / "big" / "sft" / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text().strip(), "a step ran before the pre-flight"
    print(f"failed after {time.monotonic() - started:.1f} s")
