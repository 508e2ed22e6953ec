"""Width pruning keeps each MLP's most active neurons exactly; a model whose dropped neurons were dead is unchanged;
the least-squares refit of down_proj reproduces the whole MLP better than the copied weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from posttrain.distill.models import build_student, load_teacher
from posttrain.distill.prune import (
    gated_mlps,
    mlp_activation_grams,
    mlp_neuron_importance,
    mlp_neurons_to_keep,
    prune_mlp_width,
)
from posttrain.errors import UserError

from .test_distill_models import context

SHAPE = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=1,
)
FAMILIES = [(LlamaForCausalLM, LlamaConfig), (Qwen2ForCausalLM, Qwen2Config), (Gemma2ForCausalLM, Gemma2Config)]
DEAD = list(range(0, 48, 3))  # a third of each MLP's neurons


def tiny(cls: Any, config_cls: Any) -> Any:
    torch.manual_seed(0)
    return cls(config_cls(**SHAPE)).eval()


def kill(model: Any, neurons: list[int]) -> None:
    """Neurons whose up projection is zero never write anything: removing them changes no output."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[neurons] = 0


def batches() -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(2, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding: never counted
    return [{"input_ids": ids, "attention_mask": mask}]


@pytest.mark.parametrize(("cls", "config_cls"), FAMILIES, ids=lambda c: getattr(c, "__name__", ""))
def test_dropping_dead_neurons_changes_nothing(cls: Any, config_cls: Any, tmp_path: Path) -> None:
    model = tiny(cls, config_cls)
    kill(model, DEAD)
    ids = torch.randint(2, 64, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    importance = mlp_neuron_importance(model, batches())
    assert all(torch.equal(scores[DEAD], torch.zeros(len(DEAD))) for scores in importance)
    assert all(bool((scores[[i for i in range(48) if i not in DEAD]] > 0).all()) for scores in importance)
    prune_mlp_width(model, importance, 48 - len(DEAD))
    assert model.config.intermediate_size == 32
    assert all(layer.mlp.down_proj.weight.shape == (32, 32) for layer in model.model.layers)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path)  # the config carries the new width: it reloads as saved
    reloaded = cls.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)


def test_the_kept_neurons_are_the_most_active_in_their_order() -> None:
    model = tiny(LlamaForCausalLM, LlamaConfig)
    original = [layer.mlp.gate_proj.weight.detach().clone() for layer in model.model.layers]
    down = [layer.mlp.down_proj.weight.detach().clone() for layer in model.model.layers]
    importance = mlp_neuron_importance(model, batches())
    prune_mlp_width(model, importance, 10)
    for layer, scores, gate, down_weight in zip(model.model.layers, importance, original, down, strict=True):
        kept = torch.topk(scores, 10).indices.sort().values
        assert torch.equal(layer.mlp.gate_proj.weight, gate[kept])
        assert torch.equal(layer.mlp.down_proj.weight, down_weight[:, kept])
        assert scores[kept].min() == torch.sort(scores, descending=True).values[9]


def test_padding_does_not_count() -> None:
    model = tiny(LlamaForCausalLM, LlamaConfig)
    full = batches()
    trimmed = [{"input_ids": full[0]["input_ids"][:, :6], "attention_mask": full[0]["attention_mask"][:, :6]}]
    totals = [s * 15 for s in mlp_neuron_importance(model, full)]  # 9 + 6 real tokens
    # Causal attention: the first 6 positions read the same tokens either way.
    trimmed_totals = [s * 12 for s in mlp_neuron_importance(model, trimmed)]
    row0_tail = mlp_neuron_importance(model, [{"input_ids": full[0]["input_ids"][:1],
                                               "attention_mask": full[0]["attention_mask"][:1]}])
    row0_head = mlp_neuron_importance(model, [{"input_ids": full[0]["input_ids"][:1, :6],
                                               "attention_mask": full[0]["attention_mask"][:1, :6]}])
    for total, trimmed_total, tail, head in zip(totals, trimmed_totals, row0_tail, row0_head, strict=True):
        torch.testing.assert_close(total, trimmed_total + tail * 9 - head * 6, rtol=1e-4, atol=1e-5)


def test_a_fused_mlp_is_refused_with_the_reason() -> None:
    model = Phi3ForCausalLM(Phi3Config(**{**SHAPE, "pad_token_id": 0})).eval()
    with pytest.raises(UserError, match=r"layer 0's MLP is not a gated MLP of plain linears.*mlp_keep_fraction"):
        mlp_neuron_importance(model, batches())


def test_the_stage_builds_a_width_pruned_student(tmp_path: Path, tiny_model_dir: Path) -> None:
    ctx, spec = context(tmp_path, tiny_model_dir, teacher="base", student="{init: prune, mlp_keep_fraction: 0.5}")
    teacher = load_teacher(ctx, spec.teacher).model
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": f"Answer: {2 * i}"}]} for i in range(5)]
    student, facts = build_student(ctx, spec.student, teacher, rows)
    width = teacher.config.intermediate_size
    assert facts["mlp_width"] == [width, mlp_neurons_to_keep(width, 0.5)]
    assert facts["kept_layers"] == list(range(teacher.config.num_hidden_layers))  # depth untouched
    assert student.config.intermediate_size == mlp_neurons_to_keep(width, 0.5) and teacher.config.intermediate_size == width
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert facts["mlp_refit"] is False  # the default: the kept neurons' weights copied
    (tmp_path / "refit").mkdir()
    refit_ctx, refit_spec = context(tmp_path / "refit", tiny_model_dir, teacher="base",
                                    student="{init: prune, mlp_keep_fraction: 0.5, mlp_refit: true}")
    refit_student, refit_facts = build_student(refit_ctx, refit_spec.student, teacher, rows)
    assert refit_facts["mlp_refit"] is True
    copied_mlp, refit_mlp = gated_mlps(student)[0], gated_mlps(refit_student)[0]
    assert torch.equal(copied_mlp.gate_proj.weight, refit_mlp.gate_proj.weight)  # 5 rows: the same neurons
    assert not torch.equal(copied_mlp.down_proj.weight, refit_mlp.down_proj.weight)
    saved = Path(facts["student_init"])
    assert '"intermediate_size": ' + str(mlp_neurons_to_keep(width, 0.5)) in (saved / "config.json").read_text()


def long_batches() -> list[dict[str, torch.Tensor]]:
    """96 real tokens: more than the 48 neurons, so the kept neurons' Gram matrix is invertible."""
    ids = torch.randint(2, 64, (4, 26), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[3, 18:] = 0
    return [{"input_ids": ids, "attention_mask": mask}]


def mlp_inputs(model: Any, calibration: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Each layer's MLP input on the real tokens of `calibration`."""
    seen: list[list[torch.Tensor]] = [[] for _ in gated_mlps(model)]
    masks: list[torch.Tensor] = []

    def hook(index: int) -> Any:
        return lambda _mlp, args, _out: seen[index].append(args[0][masks[-1]])

    handles = [mlp.register_forward_hook(hook(i)) for i, mlp in enumerate(gated_mlps(model))]
    with torch.no_grad():
        for batch in calibration:
            masks.append(batch["attention_mask"].bool())
            model(**batch)
    for handle in handles:
        handle.remove()
    return [torch.cat(chunks) for chunks in seen]


@pytest.mark.parametrize(("cls", "config_cls"), FAMILIES, ids=lambda c: getattr(c, "__name__", ""))
def test_the_refit_reproduces_each_mlp_better_than_the_copied_weights(cls: Any, config_cls: Any) -> None:
    import copy

    teacher = tiny(cls, config_cls)
    calibration = long_batches()
    inputs = mlp_inputs(teacher, calibration)
    importance = mlp_neuron_importance(teacher, calibration)
    copied, refit = copy.deepcopy(teacher), copy.deepcopy(teacher)
    prune_mlp_width(copied, importance, 24)
    prune_mlp_width(refit, importance, 24, refit_grams=mlp_activation_grams(teacher, calibration))
    assert refit.config.intermediate_size == 24
    with torch.no_grad():
        for x, full, cut, fitted in zip(inputs, gated_mlps(teacher), gated_mlps(copied), gated_mlps(refit), strict=True):
            target = full(x)
            assert torch.equal(fitted.gate_proj.weight, cut.gate_proj.weight)  # only down_proj changes
            copied_error = (cut(x) - target).pow(2).sum()
            refit_error = (fitted(x) - target).pow(2).sum()
            assert refit_error < 0.9 * copied_error, (float(refit_error), float(copied_error))


def test_the_refit_of_a_model_whose_dropped_neurons_were_dead_changes_nothing() -> None:
    model = tiny(LlamaForCausalLM, LlamaConfig)
    kill(model, DEAD)
    ids = torch.randint(2, 64, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    calibration = long_batches()
    grams = mlp_activation_grams(model, calibration)
    # The dead neurons' rows and columns of G are zero, so W·G[:, K]·G[K, K]⁻¹ is the kept columns of W.
    prune_mlp_width(model, mlp_neuron_importance(model, calibration), 48 - len(DEAD), refit_grams=grams, ridge=0.0)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-4, atol=1e-4)


def test_grams_collected_a_layer_per_pass_equal_those_collected_at_once() -> None:
    model = tiny(Qwen2ForCausalLM, Qwen2Config)
    calibration = long_batches()
    at_once = mlp_activation_grams(model, calibration)
    one_by_one = mlp_activation_grams(model, calibration, budget_bytes=1)
    assert len(at_once) == 3 and all(torch.equal(a, b) for a, b in zip(at_once, one_by_one, strict=True))
    inputs = mlp_inputs(model, calibration)
    for x, mlp, gram in zip(inputs, gated_mlps(model), at_once, strict=True):
        with torch.no_grad():
            activation = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        torch.testing.assert_close(gram, activation.T @ activation, rtol=1e-4, atol=1e-5)


def test_a_fused_mlp_family_is_refused_at_validate(tmp_path: Path) -> None:
    from posttrain.errors import RecipeError
    from posttrain.recipe.loader import load_recipe

    Phi3Config(**{**SHAPE, "pad_token_id": 0}, architectures=["Phi3ForCausalLM"]).save_pretrained(tmp_path / "phi3")
    (tmp_path / "chat.jsonl").write_text("{}\n")
    (tmp_path / "r.yaml").write_text(
        "name: r\nmodel: {base: phi3}\ndatasets: {chat: {sources: [{path: chat.jsonl}]}}\nstages:\n"
        "  - {name: d, type: distill, data: chat, student: {init: prune, mlp_keep_fraction: 0.5}}\n"
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "r.yaml")
    message = " ".join(err.value.render().split())
    assert "stages[0].student.mlp_keep_fraction" in message
    assert "Phi3ForCausalLM: cannot width-prune" in message and "not a gated MLP of plain linears" in message


def test_prune_doctests() -> None:
    import doctest

    from posttrain.distill import prune

    result = doctest.testmod(prune)
    assert result.attempted >= 5 and result.failed == 0
