"""The vLLM LoRA probe's cache: one answer per vLLM version, architecture and every config field that changes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.export import vllm_lora


@pytest.fixture
def probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stub engine (version 9.9) whose probe answers from the config: lm_head only when the head is untied."""
    calls: list[dict] = []

    def probe(python: Path, config: dict) -> dict:
        calls.append(config)
        modules = ["q_proj", "v_proj"] + ([] if config.get("tie_word_embeddings") else ["lm_head"])
        return {"model_class": "Stub", "supports_lora": True, "expected_modules": modules}

    monkeypatch.setattr(vllm_lora.engines, "engine_python", lambda engine: tmp_path / "python")
    monkeypatch.setattr(vllm_lora.engines, "engine_version", lambda engine: "9.9")
    monkeypatch.setattr(vllm_lora.engines, "engines_dir", lambda: tmp_path)
    monkeypatch.setattr(vllm_lora, "_probe", probe)
    return calls


def config(**fields) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, **fields}


def test_tied_and_untied_heads_are_probed_apart(probed: list[dict]) -> None:
    untied = vllm_lora.vllm_lora(config(tie_word_embeddings=False))
    tied = vllm_lora.vllm_lora(config(tie_word_embeddings=True))
    assert "lm_head" in untied.expected_modules and "lm_head" not in tied.expected_modules
    assert len(probed) == 2
    # each answer is reused from its own cache file
    assert "lm_head" in vllm_lora.vllm_lora(config(tie_word_embeddings=False)).expected_modules
    assert "lm_head" not in vllm_lora.vllm_lora(config(tie_word_embeddings=True)).expected_modules
    assert len(probed) == 2


def test_fields_that_do_not_change_the_answer_share_the_cache(probed: list[dict], tmp_path: Path) -> None:
    vllm_lora.vllm_lora(config(tie_word_embeddings=False, hidden_size=64))
    vllm_lora.vllm_lora(config(tie_word_embeddings=False, hidden_size=4096, num_hidden_layers=30))
    assert len(probed) == 1
    (cached,) = (tmp_path / "probes" / "vllm-9.9").iterdir()
    assert cached.name.startswith("LlamaForCausalLM-") and json.loads(cached.read_text())["model_class"] == "Stub"


@pytest.mark.parametrize("field, values", [("tie_word_embeddings", (False, True)), ("num_experts", (None, 4)),
                                           ("mlp_only_layers", ([], [0])), ("model_type", ("llama", "mistral"))])
def test_every_probe_field_changes_the_key(field: str, values: tuple) -> None:
    assert field in vllm_lora.PROBE_FIELDS
    first, second = (vllm_lora.probe_key(config(**{field: v})) for v in values)
    assert first != second
