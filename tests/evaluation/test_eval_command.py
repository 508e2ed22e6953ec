"""`posttrain eval`: any model reference, the same evaluation as a run, recorded on the same leaderboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from posttrain.errors import UserError
from posttrain.evaluation.harness import evaluate_model
from posttrain.leaderboard.store import top
from posttrain.pipeline.evaluate_any import evaluate_reference, resolve_target
from posttrain.stagekit.specs import EvalSpec


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA on the tiny model, its B matrices made non-zero so it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    return folder


def test_adapter_folder_is_loaded_on_its_base_and_scored_like_in_process(
    adapter_dir: Path, tiny_model_dir: Path, tiny_tokenizer, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    runs = tmp_path / "runs"
    proc = _posttrain("eval", str(adapter_dir), "--tasks", "pt_arith_mc", "--limit", "6", "--seed", "42",
                      "--runs-dir", str(runs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((runs / "_eval" / adapter_dir.name / "eval.json").read_text())

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter_dir)).eval()
    expected = evaluate_model(model, tiny_tokenizer, tasks=["pt_arith_mc"], limit=6, seed=42)
    assert saved["results"]["tasks"] == expected["tasks"]
    assert saved["model_ref"] == str(adapter_dir)
    (row,) = top(runs / "leaderboard.sqlite")
    assert (row.run_name, row.stage, row.model_ref) == ("eval", adapter_dir.name, str(adapter_dir))
    assert row.stats["pt_arith_mc"]["n"] == 6 and row.stats["pt_arith_mc"]["stderr"] is not None


def test_a_run_and_its_stages_resolve(adapter_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "myrun"
    (run_dir / "sft").mkdir(parents=True)
    (run_dir / "recipe.resolved.yaml").write_text(yaml.safe_dump({
        "name": "myrun", "model": {"base": str(tiny_model_dir)}, "stages": [{"name": "sft", "type": "sft"}],
    }))
    lineage = {"base": str(tiny_model_dir), "adapters": [str(adapter_dir)], "revision": None}
    (run_dir / "sft" / "stage.json").write_text(json.dumps({"status": "completed", "fingerprint": "f", "lineage": lineage}))

    assert resolve_target("myrun", runs_dir=runs).label == "myrun/sft"  # a run: its last stage
    assert resolve_target(str(run_dir / "sft"), runs_dir=runs).label == "myrun/sft"
    base = resolve_target("myrun/base", runs_dir=runs)
    assert base.label == "myrun/base" and base.tokenizer_path == str(tiny_model_dir.resolve())

    spec = EvalSpec(tasks=["pt_arith_mc"], limit=3)
    outcome = evaluate_reference("myrun/sft", spec, runs_dir=runs, seed=1, console=Console(quiet=True))
    assert outcome.folder == runs / "_eval" / "myrun_sft"
    assert outcome.evidence is not None and outcome.evidence.stats["pt_arith_mc"].n == 3
    assert (outcome.folder / "samples" / "pt_arith_mc.jsonl").is_file()
    assert [r.stage for r in top(runs / "leaderboard.sqlite")] == ["myrun/sft"]

    (run_dir / "dpo").mkdir()
    (run_dir / "dpo" / "stage.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(UserError, match="has not completed"):
        resolve_target("myrun/dpo", runs_dir=runs)


def test_references_that_do_not_resolve_exit_2_naming_them(tmp_path: Path) -> None:
    adapter = tmp_path / "orphan"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/no/such/base"}))
    for ref, says in (
        ("runs/nope/sft", "cannot evaluate 'runs/nope/sft'"),
        (str(adapter), "its base model '/no/such/base' does not resolve"),
    ):
        proc = _posttrain("eval", ref, "--tasks", "pt_arith_mc", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert says in proc.stderr and "Traceback" not in proc.stderr
