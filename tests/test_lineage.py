"""Lineage math: a chain of LoRAs equals one cumulative LoRA; merged equals base + adapter."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from posttrain.models.lineage import Lineage, cumulative_adapter, materialize


def _random_adapter(base_dir: Path, out: Path, *, r: int, alpha: int, targets: list[str], seed: int) -> Path:
    """A LoRA with non-zero B (PEFT initializes B to zero, which would make every check trivial)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    peft_model.save_pretrained(out)
    return out


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_cumulative_adapter_equals_sequential_merge(tiny_model_dir: Path, tmp_path: Path) -> None:
    first = _random_adapter(tiny_model_dir, tmp_path / "a1", r=4, alpha=8, targets=["q_proj", "v_proj"], seed=1)
    # The second stage trains on the first stage's merged weights and targets other modules too.
    stage1 = materialize(Lineage(str(tiny_model_dir), [str(first)]), dtype="float32")
    stage1.save_pretrained(tmp_path / "stage1")
    second = _random_adapter(tmp_path / "stage1", tmp_path / "a2", r=2, alpha=6, targets=["v_proj", "up_proj"], seed=2)

    chained = materialize(Lineage(str(tiny_model_dir), [str(first), str(second)]), dtype="float32")
    combined_dir = cumulative_adapter([first, second], tmp_path / "cum", base_model=str(tiny_model_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    combined = PeftModel.from_pretrained(base, combined_dir)

    ids = torch.randint(3, 300, (2, 12))
    assert combined.peft_config["default"].r == 6
    torch.testing.assert_close(_logits(combined, ids), _logits(chained, ids), atol=1e-5, rtol=1e-5)
    # and the chain really moved the model
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert (_logits(plain, ids) - _logits(chained, ids)).abs().max() > 1e-3


def test_merged_model_equals_base_plus_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = _random_adapter(tiny_model_dir, tmp_path / "a", r=8, alpha=16, targets=["q_proj", "o_proj"], seed=3)
    merged = materialize(Lineage(str(tiny_model_dir), [str(adapter)]), dtype="float32")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, adapter)
    ids = torch.randint(3, 300, (3, 10))
    torch.testing.assert_close(_logits(merged, ids), _logits(with_adapter, ids), atol=1e-4, rtol=0)
