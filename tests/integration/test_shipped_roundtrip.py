"""Every shipped recipe, run as a user types it, then every command that reads its run directory.

`posttrain run` (one step per stage, two documents per task, on a tiny model with the embedded
model's tokenizer so the recipe's own data and curation apply), then `posttrain export --format
vllm,gguf,ollama`, `posttrain report`, `posttrain eval RUN` and `posttrain plan` of the resolved
recipe written in the run directory: it reloads — also through a YAML 1.1 reader — and plans to
the same fingerprints, every stage cached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def small_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 64) with SmolLM2's tokenizer and chat template: the shipped data tokenizes as it would."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from posttrain.models.loading import load_tokenizer
    from posttrain.models.resolve import resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct").path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("small-base")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True,
                          timeout=1200, cwd=cwd, env=env)


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, f"{what} failed:\n{output[-4000:]}"
    return result.stdout


REPLY_LENGTH = """
def reply_length(completions, **columns):
    \"\"\"A random model's replies rarely differ in correctness; they always differ in length.

    >>> reply_length(["ab", "abc"])
    [2.0, 3.0]
    \"\"\"
    return [float(len(str(c))) for c in completions]
"""


def _tiny_overrides(recipe: Path, base: Path, folder: Path) -> list[str]:
    """One step per stage, two documents per task; on-policy pairs ranked by length (no ties on a random model)."""
    from posttrain.recipe.loader import load_recipe

    reward = folder / "reply_length.py"
    reward.write_text(REPLY_LENGTH)
    loaded = load_recipe(recipe)
    sets = [f"model.base={base}", "eval.limit=2"]
    for stage in loaded.recipe.stages:
        sets += [f"stages.{stage.name}.train.max_steps=1", f"stages.{stage.name}.train.batch_size=4"]
        if getattr(stage, "num_generations", None):
            sets.append(f"stages.{stage.name}.num_generations=2")
        if getattr(stage, "on_policy", None):
            sets.append(f"stages.{stage.name}.on_policy.rewards=[{{fn: '{reward}:reply_length'}}]")
    return [arg for value in sets for arg in ("--set", value)]


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_round_trip(recipe: Path, small_base: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _ok(_posttrain("run", str(recipe), "--runs-dir", str(runs), *_tiny_overrides(recipe, small_base, tmp_path),
                  cwd=tmp_path),
        f"posttrain run {recipe.name}")
    run_dir = runs / recipe.stem
    resolved = run_dir / "recipe.resolved.yaml"

    # The resolved recipe reads back the same through a YAML 1.1 reader (PyYAML) and a 1.2 one (ruamel).
    from ruamel.yaml import YAML

    assert yaml.safe_load(resolved.read_text()) == YAML(typ="safe", pure=True).load(resolved.read_text())

    exported = _ok(_posttrain("export", str(run_dir), "--format", "vllm,gguf,ollama", cwd=tmp_path),
                   f"posttrain export {recipe.stem}")
    for fmt in ("vllm", "gguf", "ollama"):
        assert f"{fmt}:" in exported, exported

    _ok(_posttrain("report", str(run_dir), cwd=tmp_path), "posttrain report")
    assert (run_dir / "report.html").stat().st_size > 0

    _ok(_posttrain("eval", str(run_dir), "--limit", "2", "--runs-dir", str(runs), cwd=tmp_path), "posttrain eval RUN")

    plan = _ok(_posttrain("plan", str(resolved), "--runs-dir", str(runs), cwd=tmp_path), "posttrain plan (resolved)")
    for stage_json in sorted(run_dir.glob("*/stage.json")):
        record = json.loads(stage_json.read_text())
        if "fingerprint" in record:
            assert record["fingerprint"] in plan, f"{stage_json.parent.name}: fingerprint changed on reload\n{plan}"
    assert "will run" not in plan and "rerun" not in plan, plan
