"""A spec field added with NEUTRAL_AT_DEFAULT leaves existing stage fingerprints (and so caches) unchanged."""

from __future__ import annotations

from posttrain.fingerprint import stage_fingerprint
from posttrain.stagekit.specs import LoraSpec


def test_lora_experts_at_its_default_is_not_part_of_the_identity() -> None:
    from posttrain.stages.sft import SFTStage

    default = SFTStage(name="sft", type="sft", data="chat")
    same = SFTStage(name="sft", type="sft", data="chat", lora=LoraSpec(experts=True))
    changed = SFTStage(name="sft", type="sft", data="chat", lora=LoraSpec(experts=False))
    fp = [stage_fingerprint(s, "in", "data", 1) for s in (default, same, changed)]
    assert fp[0] == fp[1] != fp[2]
    # What it was before the field existed: the spec dumped without it.
    dumped = default.model_dump(mode="json", exclude={"evaluate"})
    del dumped["lora"]["experts"]
    from posttrain.fingerprint import fingerprint

    assert fp[0] == fingerprint(dumped, "in", "data", 1)


def test_grpo_rollouts_at_its_default_is_not_part_of_the_identity() -> None:
    from posttrain.stages.grpo import GRPOStage, Rollouts

    spec = dict(name="grpo", type="grpo", data="prompts", rewards=[{"fn": "rewards.math:exact_number"}])
    default, same, changed = (GRPOStage(**spec), GRPOStage(**spec, rollouts=Rollouts()),
                              GRPOStage(**spec, rollouts=Rollouts(engine="hf")))
    fp = [stage_fingerprint(s, "in", "data", 1) for s in (default, same, changed)]
    assert fp[0] == fp[1] != fp[2]
    assert "rollouts" not in default.model_dump(mode="json") or fp[0] == stage_fingerprint(same, "in", "data", 1)


def test_model_chat_template_left_unset_keeps_every_shipped_recipes_base_fingerprint(tmp_path) -> None:
    """Base fingerprints (which every stage fingerprint chains from) are what they were before the field."""
    from pathlib import Path

    from posttrain.fingerprint import fingerprint
    from posttrain.models.precision import precision_key
    from posttrain.models.resolve import ResolvedModel
    from posttrain.pipeline.session import RunSession
    from posttrain.recipe.loader import load_recipe

    recipes = [p for p in sorted((Path(__file__).parents[1] / "recipes").rglob("*.yaml")) if "accelerate" not in p.parts]
    base = ResolvedModel("ref", "path", "local", "identity")
    for path in recipes:
        loaded = load_recipe(path)
        model = loaded.recipe.model
        assert model.chat_template is None
        quantized = (model.quantize,) if model.quantize else ()
        old = fingerprint(base.identity, precision_key(model.dtype), model.revision, *quantized)
        assert RunSession(loaded, tmp_path, base, tokenizer=None).base_fingerprint == old, path
        with_template = loaded.recipe.model.model_copy(update={"chat_template": "chatml"})
        loaded.recipe.model = with_template
        assert RunSession(loaded, tmp_path, base, tokenizer=None).base_fingerprint != old, path
