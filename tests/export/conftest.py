"""Fixtures for the export tests: serving-engine virtualenvs, and run directories as `posttrain run` leaves them.

Training is not what the export tests test, so each stage's adapter is a PEFT
LoRA with random A and B (PEFT's `init_lora_weights=False`), scaled so that it
visibly changes greedy outputs without turning the model into noise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base_dir: Path, out: Path, *, r: int, seed: int, scale: float = 0.02,
                 targets: list[str] | None = None, base_model=None, **lora_kwargs) -> Path:
    """Save a random PEFT LoRA of rank `r` for the model in `base_dir`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = base_model or AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets or ALL_PROJECTIONS, lora_dropout=0.0,
                        init_lora_weights=False, task_type="CAUSAL_LM", **lora_kwargs)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    peft_model.save_pretrained(out)
    peft_model.unload()  # leave `base_model` as it was, for the next adapter
    return out


def make_run(runs: Path, base_dir: Path, stages: list[tuple[str, int]], *, name: str = "exp",
             scale: float = 0.02) -> Path:
    """A run directory with one completed LoRA stage per (name, rank), each on the one before."""
    from transformers import AutoModelForCausalLM

    run_dir = runs / name
    run_dir.mkdir(parents=True)
    recipe = {
        "name": name,
        "model": {"base": str(base_dir)},
        "datasets": {"chat": {"sources": [{"path": "chat.jsonl"}]}},
        "eval": {"tasks": ["pt_arith"], "limit": 4},
        "stages": [
            {"name": stage, "type": "sft", "data": "chat", "lora": {"r": r}} for stage, r in stages
        ],
    }
    (run_dir / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    base_model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    previous = "base"
    adapters: list[str] = []
    for index, (stage, r) in enumerate(stages):
        adapter = make_adapter(base_dir, run_dir / stage / "adapter", r=r, seed=index + 1, scale=scale,
                               base_model=base_model)
        adapters.append(str(adapter))
        status = {"name": stage, "type": "sft", "status": "completed", "input": previous,
                  "fingerprint": f"fp-{stage}-{r}", "lineage": {"base": str(base_dir), "adapters": list(adapters)}}
        (run_dir / stage / "stage.json").write_text(json.dumps(status))
        (run_dir / stage / "eval.json").write_text(json.dumps({
            "scores": {"pt_arith": 0.25 + 0.1 * index},
            "results": {"primary": {"pt_arith": "exact_match"},
                        "tasks": {"pt_arith": {"exact_match": 0.25 + 0.1 * index, "exact_match_stderr": 0.05}}},
        }))
        previous = stage
    (run_dir / "base").mkdir()
    (run_dir / "base" / "eval.json").write_text(json.dumps({"scores": {"pt_arith": 0.2}}))
    return run_dir


@pytest.fixture(scope="session")
def run_factory():
    """`make_run(runs, base_dir, [(stage, rank), ...])` for tests that build their own run."""
    return make_run

def engines_dir() -> Path:
    """Where scripts/setup_engines.sh puts the engine virtualenvs."""
    return Path(os.environ.get("POSTTRAIN_ENGINES", Path.home() / ".cache" / "posttrain" / "engines")).expanduser()


def engines_required() -> bool:
    """In CI (or when asked) a missing engine fails the test instead of skipping it."""
    return bool(os.environ.get("CI")) or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1"


def find_engine_python(name: str) -> Path:
    """The python of the engine's own virtualenv (`vllm`, `llama-cpp`), or skip/fail saying how to install it."""
    venv = engines_dir() / f"{name}-venv"
    if not list(venv.glob(".installed-*")):
        message = (f"the {name} engine is not installed in {venv}; run scripts/setup_engines.sh "
                   f"(or `make engines`), POSTTRAIN_ENGINES={engines_dir()}")
        if engines_required():
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def embedded_base() -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder (converted once, cached)."""
    from posttrain.models.resolve import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").path)


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory: pytest.TempPathFactory, embedded_base: Path) -> Path:
    """A two-stage run on the embedded model: `sft` (LoRA r=8), then `dpo` (r=16) on top of it.

    The cumulative adapter of `dpo` has rank 24, which vLLM serves with --max-lora-rank 32.
    """
    return make_run(tmp_path_factory.mktemp("engine-runs"), embedded_base, [("sft", 8), ("dpo", 16)], name="emb")


@pytest.fixture(scope="session")
def engine_python():
    """`engine_python("vllm")`: the engine venv's python, or skip (fail in CI) with how to install it."""
    return find_engine_python
