"""Router logits are a training-only output: models load, and stages save, with `output_router_logits` off.

TRL's trainers switch it on for the load-balancing aux loss and leave it in the config a full fine-tune saves;
with it on, transformers computes that loss in cached generation with the whole attention mask against one
step's router logits, and evaluation crashed on the first padded batch (Qwen3-MoE, tests/matrix).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from posttrain.models.loading import load_model, without_router_logits


def _moe(folder: Path) -> Path:
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    config = Qwen3MoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                            num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, pad_token_id=0,
                            eos_token_id=1, bos_token_id=1, output_router_logits=True)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def _generate_padded(model) -> torch.Tensor:
    ids = torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0)


def test_a_saved_moe_config_asking_for_router_logits_loads_without(tmp_path: Path) -> None:
    folder = _moe(tmp_path / "moe")
    assert json.loads((folder / "config.json").read_text())["output_router_logits"] is True
    model = load_model(str(folder), dtype="float32", purpose="inference")
    assert model.config.output_router_logits is False
    assert _generate_padded(model).shape == (2, 7)  # cached generation on a padded batch


def test_training_switch_is_not_saved(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = load_model(str(_moe(tmp_path / "moe")), dtype="float32")
    model.config.get_text_config().output_router_logits = True  # what TRL's SFTTrainer does for the aux loss
    without_router_logits(model).save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["output_router_logits"] is False
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert _generate_padded(reloaded).shape == (2, 7)
