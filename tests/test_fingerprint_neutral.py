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
