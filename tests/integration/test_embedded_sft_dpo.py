"""SFT → DPO on the real embedded model through the CLI, then the exported adapter on the base."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.models.lineage import materialize
from posttrain.run_layout import RunDir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / "data" / "quickstart"

RECIPE = f"""\
name: mini
seed: 3
model: {{base: smollm2-135m-instruct, dtype: float32}}
datasets:
  chat: {{sources: [{{path: {DATA / "chat.jsonl"}}}], curate: [{{dedup: exact}}]}}
  prefs: {{kind: preference, sources: [{{path: {DATA / "prefs.jsonl"}}}]}}
eval: {{tasks: [pt_arith_mc], limit: 8, batch_size: 8}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 8}},
     train: {{max_steps: 6, batch_size: 4, lr: 1.0e-3, max_length: 256, logging_steps: 2}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 4}},
     train: {{max_steps: 3, batch_size: 2, lr: 1.0e-4, max_length: 256, logging_steps: 1}}}}
export: {{formats: [peft, merged]}}
"""

# fp32 throughout: posttrain scores the stage's lineage (base + adapters) and plain lm-eval the exported merged
# model, which round apart. In bf16 that flipped one near-tied pt_arith_mc document of 8 on an Intel Xeon
# (0.25 against 0.125); in fp32 they agree to ~1e-6. lm-eval's softmax in fp32 on both sides.
EVAL_PRECISION = {"dtype": "float32", "softmax_dtype": "float32"}


def _posttrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True, timeout=1200
    )


def _greedy(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    outputs = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        outputs.append(out[0, ids["input_ids"].shape[1] :].tolist())
    return outputs


def test_sft_then_dpo_on_embedded_model(tmp_path: Path) -> None:
    recipe = tmp_path / "mini.yaml"
    recipe.write_text(RECIPE)
    runs = tmp_path / "runs"

    first = _posttrain("run", str(recipe), "--runs-dir", str(runs))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "leaderboard" in first.stdout and "pt_arith_mc" in first.stdout

    run_dir = runs / "mini"
    dpo = json.loads((run_dir / "dpo" / "stage.json").read_text())
    assert dpo["status"] == "completed" and dpo["input"] == "sft"
    losses = [r["loss"] for r in map(json.loads, (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)  # max_steps 6, logged every 2

    second = _posttrain("run", str(recipe), "--runs-dir", str(runs))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage sft cached" in second.stdout and "stage dpo cached" in second.stdout, second.stdout
    assert "trained in" not in second.stdout

    # The exported adapter on the plain base reproduces the DPO stage's greedy outputs.
    assert dpo["lineage"] == {"base": "base", "adapters": ["sft/adapter", "dpo/adapter"]}  # relative: survives a move
    lineage = RunDir(run_dir).lineage("dpo")
    tokenizer = AutoTokenizer.from_pretrained(lineage.base)
    prompts = ["What is 17 + 25? End your reply with \"Answer: <number>\".", "Name a colour."]
    stage_model = materialize(lineage, dtype="float32").eval()
    base = AutoModelForCausalLM.from_pretrained(lineage.base, dtype=torch.float32)
    exported = PeftModel.from_pretrained(base, run_dir / "dpo" / "export" / "peft").eval()
    assert _greedy(exported, tokenizer, prompts) == _greedy(stage_model, tokenizer, prompts)

    merged = AutoModelForCausalLM.from_pretrained(run_dir / "dpo" / "export" / "merged", dtype=torch.float32).eval()
    ids = tokenizer(prompts[0], return_tensors="pt").input_ids
    with torch.no_grad():
        # fp32 rounding through 30 layers, on logits of magnitude ~20: 1e-4 absolute plus 1e-5 relative.
        torch.testing.assert_close(merged(ids).logits, exported(ids).logits, atol=1e-4, rtol=1e-5)

    # The scores posttrain computed in process are exactly plain lm-eval's on the exported merged model,
    # document by document (the run's eval.json + samples/ against `lm_eval --model hf`).
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from posttrain.evaluation.harness import compact_metrics
    from posttrain.paths import eval_tasks_dir

    plain = simple_evaluate(
        model="hf", model_args={"pretrained": str(run_dir / "dpo" / "export" / "merged"), **EVAL_PRECISION},
        tasks=["pt_arith_mc"], limit=8, batch_size=8, device="cpu", apply_chat_template=True,
        fewshot_as_multiturn=True, log_samples=True, random_seed=3, numpy_random_seed=3, torch_random_seed=3,
        fewshot_random_seed=3, task_manager=TaskManager(include_path=str(eval_tasks_dir()), include_defaults=False),
    )
    ours = json.loads((run_dir / "dpo" / "eval.json").read_text())
    assert ours["results"]["tasks"]["pt_arith_mc"] == compact_metrics(plain["results"]["pt_arith_mc"])
    rows = [json.loads(line) for line in (run_dir / "dpo" / "samples" / "pt_arith_mc.jsonl").read_text().splitlines()]
    assert {r["doc_id"]: r["metrics"]["acc"] for r in rows} == {
        s["doc_id"]: s["acc"] for s in plain["samples"]["pt_arith_mc"]
    }
    # Every delta of the run carries its paired test.
    board = json.loads(_posttrain("leaderboard", "--runs-dir", str(runs), "--format", "json").stdout)
    dpo_entry = next(e for e in board["entries"] if e["stage"] == "dpo")
    tests = {d["vs"]: d for d in dpo_entry["tasks"]["pt_arith_mc"]["deltas"]}
    assert set(tests) == {"base", "input"} and all(d["test"].startswith("mcnemar") for d in tests.values())
