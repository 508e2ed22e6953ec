"""`posttrain validate` checks LoRA stages and the vLLM export against the model's family before any training:
module names read from the model built on the meta device, vLLM's side read from vLLM's own model registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.export.conftest import build_family, find_engine_python

pytestmark = pytest.mark.engines

SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)
RECIPE = """\
name: fam
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: {targets}}}}}
export: {{formats: [peft, vllm]}}
"""


def _validate(tmp_path: Path, model: Path, targets: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                  {"role": "assistant", "content": "hello"}]}) + "\n")
    (tmp_path / "fam.yaml").write_text(RECIPE.format(model=model, targets=targets))
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "posttrain.cli", "validate", "fam.yaml"], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=env)


@pytest.fixture(scope="module")
def vllm_installed() -> None:
    find_engine_python("vllm")


@pytest.fixture(scope="module")
def embedded_base() -> Path:
    from posttrain.models.resolve import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").path)


def test_phi3_recipe_with_llama_projection_names_fails_at_validate(tmp_path: Path, embedded_base: Path,
                                                                   vllm_installed) -> None:
    model = build_family("phi3", tmp_path / "phi3", embedded_base, shape=SHAPE)
    done = _validate(tmp_path, model, "[q_proj, v_proj]")
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, output
    assert "stages[0].lora.target_modules: Phi3ForCausalLM has no module named q_proj, v_proj" in output
    assert "its linear layers: down_proj, gate_up_proj, o_proj, qkv_proj" in output
    assert not (tmp_path / "runs").exists()
    assert _validate(tmp_path, model, "[qkv_proj, o_proj]").returncode == 0  # Phi-3's own names: vLLM takes them


def test_vllm_registry_refuses_an_output_head_adapter_where_its_model_class_does(
        tmp_path: Path, embedded_base: Path, vllm_installed) -> None:
    """vLLM's Gemma-2 declares no embedding modules, so it takes no LoRA on lm_head (its Llama does)."""
    gemma = build_family("gemma2", tmp_path / "gemma2", embedded_base, shape=SHAPE, bpe=False)
    done = _validate(tmp_path, gemma, "[q_proj, lm_head]")
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, output
    assert "takes LoRA on Gemma2ForCausalLM (Gemma2ForCausalLM) only for" in output and "not lm_head" in output
    llama = build_family("llama", tmp_path / "llama", embedded_base, shape=SHAPE)
    assert _validate(tmp_path, llama, "[q_proj, lm_head]").returncode == 0
