"""The whole pipeline on a tiny random model: train, cache, rerun what changed, export."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from rich.console import Console
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from posttrain.models.lineage import materialize
from posttrain.pipeline.plan import plan_run
from posttrain.pipeline.runner import run_recipe
from posttrain.pipeline.session import open_session
from posttrain.recipe.loader import load_recipe
from posttrain.terminal import print_plan


def _write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "chat.jsonl").open("w") as f:
        for i in range(24):
            messages = [
                {"role": "user", "content": f"What is {i} + 7? End your reply with \"Answer: <number>\"."},
                {"role": "assistant", "content": f"{i} + 7 = {i + 7}.\nAnswer: {i + 7}"},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (folder / "prefs.jsonl").open("w") as f:
        for i in range(16):
            prompt = [{"role": "user", "content": f"What is {i} + 3?"}]
            f.write(json.dumps({"prompt": prompt, "chosen": f"Answer: {i + 3}", "rejected": f"Answer: {i + 4}"}) + "\n")


RECIPE = """\
name: tiny
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}], curate: [{{dedup: exact}}]}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 3, batch_size: 4, lr: 1.0e-2, logging_steps: 1, save_steps: 2, max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 2}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-3, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft, merged]}}
"""


@pytest.fixture
def recipe_path(tmp_path: Path, tiny_model_dir: Path) -> Path:
    _write_data(tmp_path / "data")
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def _run(path: Path, runs: Path, overrides: list[str] | None = None, force: set[str] | None = None):
    return run_recipe(load_recipe(path, overrides), runs_dir=runs, force=force, console=Console(quiet=True))


def test_pipeline_trains_caches_and_reruns_changed_stages(recipe_path: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = _run(recipe_path, runs)
    run_dir = runs / "tiny"
    assert (run_dir / "recipe.resolved.yaml").exists()
    for name in ("sft", "dpo"):
        stage = json.loads((run_dir / name / "stage.json").read_text())
        assert stage["status"] == "completed"
        assert stage["versions"]["trl"] == importlib.metadata.version("trl")
        weights = load_file(str(run_dir / name / "adapter" / "adapter_model.safetensors"))
        b_norm = sum(w.abs().sum().item() for k, w in weights.items() if "lora_B" in k)
        assert b_norm > 0, "LoRA B starts at zero: training must have moved it"
        logs = [json.loads(line) for line in (run_dir / name / "metrics.jsonl").read_text().splitlines()]
        assert any("loss" in record for record in logs)
        evaluation = json.loads((run_dir / name / "eval.json").read_text())
        assert evaluation["results"]["n_samples"] == {"pt_arith_mc": 2}, "the recipe's eval limit reaches lm-eval"
        assert evaluation["scores"] == {"pt_arith_mc": evaluation["results"]["tasks"]["pt_arith_mc"]["acc"]}
        assert evaluation["scores"]["pt_arith_mc"] in (0.0, 0.5, 1.0)  # a share of 2 documents
    assert (run_dir / "base" / "eval.json").exists()
    example = json.loads((run_dir / "sft" / "loss_mask.json").read_text())  # what the report highlights
    learned = "".join(seg["text"] for seg in example["segments"] if seg["learned"])
    assert "Answer: " in learned and "What is" not in learned
    assert [s.cached for s in report.stages] == [False, False]
    for outcome in report.stages:
        assert outcome.scores == json.loads((run_dir / outcome.name / "eval.json").read_text())["scores"]
    dpo_lineage = report.stages[1].lineage
    assert len(dpo_lineage.adapters) == 2

    # The exported adapter of the last stage is one LoRA on the base, equal to the chain.
    export = run_dir / "dpo" / "export"
    assert "`sft`, `dpo`" in (export / "peft" / "README.md").read_text()
    base = AutoModelForCausalLM.from_pretrained(dpo_lineage.base, dtype=torch.float32)
    exported = PeftModel.from_pretrained(base, export / "peft").eval()
    chained = materialize(dpo_lineage, dtype="float32").eval()
    merged = AutoModelForCausalLM.from_pretrained(export / "merged", dtype=torch.float32).eval()
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, chained(input_ids=ids).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(merged(input_ids=ids).logits, chained(input_ids=ids).logits, atol=1e-4, rtol=0)

    # `posttrain plan` shows what a run would do, from the plan the run itself follows.
    plan = plan_run(open_session(load_recipe(recipe_path), runs_dir=runs))
    assert [(s.name, s.status) for s in plan.stages] == [("sft", "cached"), ("dpo", "cached")]
    assert [s.fingerprint for s in plan.stages] == [s.fingerprint for s in report.stages]
    console = Console(record=True, width=200)
    print_plan(plan, load_recipe(recipe_path).recipe, console=console)
    assert console.export_text().count("cached") == 2

    again = _run(recipe_path, runs)
    assert [s.cached for s in again.stages] == [True, True]
    assert again.stages[1].scores == report.stages[1].scores

    changed = _run(recipe_path, runs, overrides=["stages.dpo.beta=0.5"])
    assert [s.cached for s in changed.stages] == [True, False]

    forced = _run(recipe_path, runs, overrides=["stages.dpo.beta=0.5"], force={"sft"})
    assert [s.cached for s in forced.stages] == [False, False]


def test_cached_stages_follow_a_moved_base_model(recipe_path: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    runs = tmp_path / "runs"
    _run(recipe_path, runs)
    moved = tmp_path / "moved-model"
    shutil.copytree(tiny_model_dir, moved)
    recipe_path.write_text(recipe_path.read_text().replace(str(tiny_model_dir), str(moved)))
    again = _run(recipe_path, runs)
    assert [s.cached for s in again.stages] == [True, True]  # same weights, same fingerprints
    assert again.stages[1].lineage.base == str(moved)
    assert all(Path(adapter).exists() for adapter in again.stages[1].lineage.adapters)


def test_killed_stage_resumes_from_its_checkpoint(recipe_path: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = _run(recipe_path, runs)
    sft_dir = runs / "tiny" / "sft"
    stage = json.loads((sft_dir / "stage.json").read_text())
    # Pretend the process died after the step-2 checkpoint: status running, checkpoint on disk.
    stage["status"] = "running"
    (sft_dir / "stage.json").write_text(json.dumps(stage))
    assert (sft_dir / "checkpoints" / "checkpoint-2").is_dir()
    resumed = _run(recipe_path, runs)
    assert not resumed.stages[0].cached and resumed.stages[0].resumed and not report.stages[0].resumed
    state = json.loads((sft_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    history = json.loads((sft_dir / "stage.json").read_text())["history"]
    assert [h["outcome"] for h in history] == ["trained", "resumed"]
    checkpoint = history[1]["resumed_from"]  # the newest whole checkpoint on disk
    assert (sft_dir / "checkpoints" / checkpoint).is_dir()
    assert re.search(rf"^\| sft \| sft \| base \| - \| chat \| resumed from {checkpoint} in \d+ s \|",
                     (runs / "tiny" / "report.md").read_text(), re.M)
    assert report.stages[0].fingerprint == resumed.stages[0].fingerprint
