"""Depth pruning keeps the chosen layers exactly, and the pruned model still runs and generates."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from posttrain.distill.prune import layer_influence, layers_to_keep, most_influential_layers, prune_layers
from posttrain.errors import UserError

SHAPE = dict(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=1,
)


def tiny(cls=LlamaForCausalLM, config_cls=LlamaConfig, **extra):
    torch.manual_seed(0)
    return cls(config_cls(**{**SHAPE, **extra})).eval()


def test_layers_to_keep() -> None:
    assert layers_to_keep(30, keep_fraction=0.5) == [0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29]
    assert layers_to_keep(4, keep_fraction=0.5) == [0, 3]  # first and last
    assert layers_to_keep(4, keep_fraction=0.1) == [0]
    assert layers_to_keep(4, keep_fraction=1.0) == [0, 1, 2, 3]
    assert layers_to_keep(4, keep_layers=[3, 1]) == [1, 3]
    with pytest.raises(UserError, match=r"\[4\] out of range.*0\.\.3"):
        layers_to_keep(4, keep_layers=[0, 4])
    with pytest.raises(UserError, match="twice"):
        layers_to_keep(4, keep_layers=[1, 1])


def test_pruned_student_keeps_the_chosen_layers_exactly() -> None:
    teacher = tiny()
    student = prune_layers(teacher, [0, 2])
    assert teacher.config.tie_word_embeddings is False or student.lm_head.weight is student.model.embed_tokens.weight
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert teacher.config.num_hidden_layers == 4 and len(teacher.model.layers) == 4  # teacher untouched
    t, s = teacher.state_dict(), student.state_dict()
    for key, value in t.items():
        if ".layers." not in key:
            assert torch.equal(s[key], value), key  # embeddings, final norm, head
    for new, old in ((0, 0), (1, 2)):
        for key, value in t.items():
            if key.startswith(f"model.layers.{old}."):
                assert torch.equal(s[key.replace(f"layers.{old}.", f"layers.{new}.")], value), key
    assert s["model.layers.1.self_attn.q_proj.weight"].data_ptr() != t["model.layers.2.self_attn.q_proj.weight"].data_ptr()
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_pruned_model_runs_forward_and_generates_with_its_cache() -> None:
    student = prune_layers(tiny(), [1, 3])
    ids = torch.randint(2, 64, (2, 6))
    assert student(input_ids=ids).logits.shape == (2, 6, 64)
    with torch.no_grad():
        cached = student.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=True)
        uncached = student.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)  # the KV cache is indexed by the renumbered layer_idx


def test_per_layer_config_lists_are_pruned(tmp_path) -> None:
    types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    teacher = tiny(Qwen2ForCausalLM, Qwen2Config, layer_types=types, use_sliding_window=True, sliding_window=4)
    student = prune_layers(teacher, [1, 2])
    assert student.config.layer_types == ["sliding_attention", "full_attention"]
    student.save_pretrained(tmp_path)
    reloaded = Qwen2ForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(2, 64, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, student(input_ids=ids).logits)


def _identity_layers(model, layers: list[int]) -> None:
    """Zero what a layer adds to the residual stream: its output equals its input (influence exactly 0)."""
    with torch.no_grad():
        for i in layers:
            model.model.layers[i].self_attn.o_proj.weight.zero_()
            model.model.layers[i].mlp.down_proj.weight.zero_()


@pytest.mark.parametrize(("cls", "config_cls"), [(LlamaForCausalLM, LlamaConfig), (Qwen2ForCausalLM, Qwen2Config)])
def test_influence_finds_the_layers_that_pass_their_input_on(cls, config_cls) -> None:
    model = tiny(cls, config_cls, num_hidden_layers=6)  # SHAPE's 4 overridden
    _identity_layers(model, [2, 4])
    ids = torch.randint(2, 64, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # padding is not counted
    influence = layer_influence(model, [{"input_ids": ids, "attention_mask": mask}])
    assert len(influence) == 6
    assert influence[2] == pytest.approx(0.0, abs=1e-6) and influence[4] == pytest.approx(0.0, abs=1e-6)
    assert min(influence[i] for i in (1, 3)) > 1e-3
    assert most_influential_layers(influence, 4) == [0, 1, 3, 5]  # the two pass-through layers go
    # Dropping pass-through layers changes nothing: the pruned student computes what the model did.
    student = prune_layers(model, [0, 1, 3, 5])
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=ids).logits, model(input_ids=ids).logits)


def test_most_influential_layers_keeps_first_and_last() -> None:
    assert most_influential_layers([0.0, 0.9, 0.8, 0.0], 2) == [0, 3]
    assert most_influential_layers([0.1, 0.2, 0.3], 5) == [0, 1, 2]
    assert most_influential_layers([0.1, 0.2, 0.3], 1) == [0]
