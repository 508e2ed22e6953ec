"""vLLM's adapter rules: what is refused, why, and the --max-lora-rank each rank needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.export.vllm import MAX_LORA_RANKS, max_lora_rank_for, vllm_problems, write_vllm_manifest

PLAIN = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"], "bias": "none"}
LLAMA = "LlamaForCausalLM"


@pytest.mark.parametrize(("rank", "slot"), [(1, 1), (2, 8), (8, 8), (9, 16), (24, 32), (300, 320), (512, 512)])
def test_rank_rounds_up_to_a_max_lora_rank_vllm_accepts(rank: int, slot: int) -> None:
    assert max_lora_rank_for(rank) == slot
    assert slot in MAX_LORA_RANKS


def test_plain_lora_has_no_problems() -> None:
    assert vllm_problems(PLAIN, LLAMA) == []


@pytest.mark.parametrize(("change", "phrase"), [
    ({"use_dora": True}, "DoRA"),
    ({"bias": "all"}, "biases"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"init_lora_weights": "pissa"}, "rewrites the base weights"),
    ({"target_modules": ["q_proj", "lm_head"]}, "['lm_head']"),
    ({"r": 600}, "above vLLM's largest --max-lora-rank (512)"),
])
def test_each_broken_rule_is_named(change: dict, phrase: str) -> None:
    problems = vllm_problems({**PLAIN, **change}, LLAMA)
    assert len(problems) == 1 and phrase in problems[0], problems


def test_every_broken_rule_is_reported_at_once() -> None:
    problems = vllm_problems({**PLAIN, "use_dora": True, "r": 1000, "target_modules": ["wte"]}, "GPT2LMHeadModel")
    assert len(problems) == 3  # DoRA, architecture, rank


def test_too_large_rank_is_refused_with_reason_and_fix_before_writing(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({**PLAIN, "r": 640}))
    with pytest.raises(UserError) as caught:
        write_vllm_manifest(tmp_path / "vllm", base_path="/base", architecture=LLAMA, name="x", adapter_dir=adapter)
    message = caught.value.render()
    assert "rank 640 is above vLLM's largest --max-lora-rank (512)" in message
    assert "Fix: train with a smaller lora.r" in message
    assert not (tmp_path / "vllm").exists()


def test_manifest_has_the_serve_command_and_the_base_it_needs(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({**PLAIN, "r": 24}))
    manifest = write_vllm_manifest(tmp_path / "vllm", base_path="/models/base", architecture=LLAMA, name="run-dpo",
                                   adapter_dir=adapter)
    assert manifest["command"] == ["vllm", "serve", "/models/base", "--enable-lora", "--lora-modules",
                                   f"run-dpo={adapter}", "--max-lora-rank", "32"]
    assert json.loads((tmp_path / "vllm" / "manifest.json").read_text())["base_path"] == "/models/base"
    assert manifest["command_line"] in (tmp_path / "vllm" / "README.md").read_text()
