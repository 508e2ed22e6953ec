"""`RunDir`: one definition of stage order, the last completed stage and lineage, and a run directory that
still evaluates, exports and reports the same after it was moved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from posttrain.errors import UserError
from posttrain.models.lineage import Lineage
from posttrain.pipeline.evaluate_any import resolve_target
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.run_layout import RunDir

ROOT = Path(__file__).resolve().parents[1]


def _fake_run(root: Path, stages: list[tuple[str, str, str, str]], *, base: str = "some/hub-model") -> RunDir:
    """A run directory of stage.json files: (name, input, status, weights: adapter | model | none)."""
    run = RunDir(root)
    run.write_recipe(yaml.safe_dump({"name": root.name, "model": {"base": base},
                                     "stages": [{"name": n, "type": "sft"} for n, *_ in stages]}))
    for name, source, status, weights in stages:
        run.write_stage(name, {"name": name, "input": source, "status": status})
        if weights == "adapter":
            run.adapter_dir(name).mkdir(parents=True)
            (run.adapter_dir(name) / "adapter_config.json").write_text("{}")
        elif weights == "model":
            run.model_dir(name).mkdir(parents=True)
    return run


def test_the_last_completed_stage_is_the_last_in_recipe_order_that_completed(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "r", [("zeta", "base", "completed", "adapter"), ("alpha", "zeta", "completed", "adapter"),
                                     ("mid", "alpha", "failed", "none"), ("last", "mid", "running", "none")])
    assert run.stages() == ["zeta", "alpha", "mid", "last"]  # the recipe's order, not the folders' names
    assert run.last_completed_stage() == "alpha"
    run.write_stage("stray", {"status": "completed"})  # a stage since removed from the recipe comes after
    assert run.stages() == ["zeta", "alpha", "mid", "last", "stray"]
    assert RunDir(tmp_path / "empty").last_completed_stage() is None


def test_lineage_follows_inputs_back_to_the_base_or_a_whole_model(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "r", [("sft", "base", "completed", "adapter"), ("dpo", "sft", "completed", "adapter"),
                                     ("distill", "sft", "completed", "model"), ("polish", "distill", "completed", "adapter")])
    base = Lineage("/models/base", revision="v1")
    r = run.root
    assert run.chain("dpo") == ["sft", "dpo"]
    assert run.lineage("dpo", base) == Lineage("/models/base", [str(r / "sft/adapter"), str(r / "dpo/adapter")], "v1")
    assert run.chain("polish") == ["distill", "polish"]
    run.write_stage("noop", {"input": "sft", "status": "completed"})  # keeps its input's model: adds no weights
    run.write_stage("after", {"input": "noop", "status": "completed"})
    run.adapter_dir("after").mkdir(parents=True)
    (run.adapter_dir("after") / "adapter_config.json").write_text("{}")
    assert run.chain("after") == ["sft", "after"]
    assert run.lineage("polish") == Lineage(str(r / "distill/model"), [str(r / "polish/adapter")])
    assert run.lineage_record(run.lineage("dpo", base), base) == {"base": "base", "adapters": ["sft/adapter", "dpo/adapter"]}
    assert run.lineage_record(run.lineage("polish"), base) == {"base": "distill/model", "adapters": ["polish/adapter"]}
    outside = Lineage("/models/other", ["/adapters/x"])  # a model from outside the run keeps its absolute paths
    assert run.lineage_record(outside, base) == {"base": "/models/other", "adapters": ["/adapters/x"]}
    assert run.lineage("dpo").base == "some/hub-model"  # without a base: the recipe's, resolved from here

    moved = RunDir(shutil.move(str(r), str(tmp_path / "elsewhere")))
    assert moved.lineage("dpo", base).adapters == [str(moved.root / "sft/adapter"), str(moved.root / "dpo/adapter")]
    assert moved.lineage("polish") == Lineage(str(moved.root / "distill/model"), [str(moved.root / "polish/adapter")])


def test_a_stage_json_of_an_older_version_still_reads(tmp_path: Path) -> None:
    elsewhere = tmp_path / "adapters" / "a1"
    run = _fake_run(tmp_path / "r", [("sft", "base", "completed", "none")])
    run.write_stage("sft", {"status": "completed", "input": "base",
                            "lineage": {"base": "/old/base", "adapters": [str(elsewhere)]}})
    assert run.lineage("sft") == Lineage("some/hub-model", [str(elsewhere)])  # adapters as recorded; base gone
    run.write_stage("sft", {"status": "completed", "lineage": {"base": str(tmp_path), "adapters": [str(elsewhere)]}})
    assert run.lineage("sft") == Lineage(str(tmp_path), [str(elsewhere)])  # a recorded base that is still there
    run.write_stage("sft", {"status": "completed", "lineage": {"base": "base", "adapters": ["sft/adapter"]}})
    assert run.lineage("sft", Lineage("/b")) == Lineage("/b", [str(run.root / "sft/adapter")])
    run.write_stage("sft", {"status": "completed"})
    with pytest.raises(UserError, match="neither an adapter/ nor a model/"):
        run.lineage("sft")


def test_the_base_falls_back_to_an_old_recorded_path_and_says_when_it_is_gone(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    run = _fake_run(tmp_path / "r", [("sft", "base", "completed", "adapter")], base=str(tmp_path / "gone"))
    with pytest.raises(UserError, match="cannot find the base model"):
        run.lineage("sft")
    run.write_stage("sft", {"status": "completed", "input": "base",
                            "lineage": {"base": str(tiny_model_dir), "adapters": ["/old/sft/adapter"]}})
    assert run.lineage("sft") == Lineage(str(tiny_model_dir), [str(run.adapter_dir("sft"))])


RECIPE = """\
name: tiny
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 3, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 2, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 1, batch_size: 4, lr: 1.0e-3, max_length: 64}}}}
export: {{formats: [peft]}}
"""


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_moved_run_directory_exports_evaluates_and_reports_the_same(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with (data / "chat.jsonl").open("w") as f:
        for i in range(12):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                                             {"role": "assistant", "content": f"Answer: {i + 7}"}]}) + "\n")
    with (data / "prefs.jsonl").open("w") as f:
        for i in range(8):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} + 3?"}],
                                "chosen": f"Answer: {i + 3}", "rejected": f"Answer: {i + 4}"}) + "\n")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    runs = tmp_path / "runs"
    run_recipe(load_recipe(recipe), runs_dir=runs, console=Console(quiet=True))
    original = RunDir(runs / "tiny")
    assert original.read_stage("dpo")["lineage"] == {"base": "base", "adapters": ["sft/adapter", "dpo/adapter"]}
    exported, report = _files(original.export_dir("dpo") / "peft"), original.report_md.read_text()
    scores = {s: json.loads(original.eval_file(s).read_text())["results"]["tasks"] for s in ("sft", "dpo")}
    identity = resolve_target(str(original.root / "dpo"), runs_dir=runs).identity

    moved = RunDir(tmp_path / "moved" / "tiny")
    shutil.copytree(original.root, moved.root)
    shutil.rmtree(original.root)  # nothing may still point into the old place
    elsewhere = tmp_path / "cwd"  # and nothing may depend on the folder a command runs from
    elsewhere.mkdir()

    assert resolve_target(str(moved.root / "dpo"), runs_dir=runs).identity == identity
    done = _posttrain("export", str(moved.root), "--format", "peft", cwd=elsewhere)  # the last completed stage
    assert f"peft: {moved.export_dir('dpo') / 'peft'}" in " ".join(done.stdout.split())
    _posttrain("export", str(moved.root), "--format", "peft", "--out", str(tmp_path / "fresh"), cwd=elsewhere)
    assert _files(tmp_path / "fresh" / "peft").keys() == exported.keys()
    assert _files(tmp_path / "fresh" / "peft")["adapter_model.safetensors"] == exported["adapter_model.safetensors"]
    assert _files(moved.export_dir("dpo") / "peft")["adapter_model.safetensors"] == exported["adapter_model.safetensors"]

    evals = tmp_path / "evals"
    for ref, stage in ((str(moved.root / "sft"), "sft"), (str(moved.root), "dpo")):
        _posttrain("eval", ref, "--tasks", "pt_arith_mc", "--limit", "3", "--batch-size", "2", "--seed", "1",
                   "--runs-dir", str(evals), cwd=elsewhere)
        saved = json.loads((evals / "_eval" / f"tiny_{stage}" / "eval.json").read_text())
        assert saved["results"]["tasks"] == scores[stage]

    _posttrain("report", str(moved.root), cwd=elsewhere)
    assert moved.report_md.read_text().replace(str(moved.root), "RUN") == report.replace(str(original.root), "RUN")
