"""The merged-copy rollout path generates what the policy itself generates, and trains to the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posttrain.training.rollouts import MergedCopy, lora_linears


def _peft(model_dir: Path, dtype: torch.dtype = torch.float32):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter: B is zero at init, which would make every check trivial
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return peft.eval()


def _sampled(model, prompt: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=12,
                              min_new_tokens=12, pad_token_id=0)


def test_merged_copy_is_the_policy_and_follows_its_updates(tiny_model_dir: Path) -> None:
    peft = _peft(tiny_model_dir)
    merged = MergedCopy(peft)
    assert len(merged.layers) == 14  # 7 linears × 2 layers, all merged
    prompt = torch.tensor([[1, 5, 9, 13, 40, 41]] * 3)
    with torch.no_grad():
        torch.testing.assert_close(merged.model(prompt).logits, peft(prompt).logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(_sampled(merged.model, prompt, 7), _sampled(peft, prompt, 7))

    with torch.no_grad():  # an optimizer step moves the adapter; the copy follows after sync, from the exact base
        for name, param in peft.named_parameters():
            if "lora_A" in name:
                param.add_(0.3)
    merged.sync()
    with torch.no_grad():
        torch.testing.assert_close(merged.model(prompt).logits, peft(prompt).logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(_sampled(merged.model, prompt, 8), _sampled(peft, prompt, 8))
    # The trainer's own weights were never merged into.
    assert not any(layer.merged for layer in merged.layers.values())


def test_the_copy_prefills_each_distinct_prompt_once_and_samples_what_generate_samples(tiny_model_dir: Path) -> None:
    merged = MergedCopy(_peft(tiny_model_dir))
    model = merged.model
    prompts = torch.tensor([[0, 0, 5, 9, 13, 40], [1, 5, 9, 13, 40, 41]])  # the first left-padded
    rows = prompts.repeat_interleave(3, dim=0)  # two prompts, three rows each, as GRPO lays them out
    mask = (rows != 0).long()
    seen: list[tuple[int, int]] = []
    hook = model.model.layers[0].register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[:2])))

    def sampled(generate) -> torch.Tensor:
        torch.manual_seed(11)
        return generate(input_ids=rows, attention_mask=mask, do_sample=True, max_new_tokens=8, min_new_tokens=8,
                        pad_token_id=0)

    try:
        plain = sampled(lambda **kw: type(model).generate(model, **kw))
        plain_passes = list(seen)
        seen.clear()
        shared = sampled(model.generate)
    finally:
        hook.remove()
    assert torch.equal(shared, plain)
    assert plain_passes[0] == (6, 6)  # generate's own prefill: every row
    assert seen[:2] == [(2, 5), (6, 1)]  # two distinct prompts less their last token, then each row's last token


def test_layers_the_copy_cannot_merge_exactly_keep_the_plain_path(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    dora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], use_dora=True, task_type="CAUSAL_LM"))
    assert lora_linears(dora) == {}


@pytest.fixture(scope="module")
def two_engines(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Two GRPO steps (fp32, no autocast) with the merged copy, with TRL's own generation, and with the merged
    copy but TRL's one-pass-per-row log-probs (no shared prompts), same seed."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from posttrain.training.grpo_trainer import PosttrainGRPOTrainer

    def longer(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}]} for i in range(8)])
    results = {}
    for name, engine, share_prompts in (("auto", "auto", True), ("hf", "hf", True), ("unshared", "auto", False)):
        out = tmp_path_factory.mktemp(f"grpo-{name}")
        args = GRPOConfig(
            output_dir=str(out), max_steps=2, per_device_train_batch_size=4, num_generations=2,
            max_completion_length=8, learning_rate=5e-2, logging_steps=1, save_strategy="no", report_to="none",
            seed=5, data_seed=5, use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True,
        )
        trainer = PosttrainGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
            reward_funcs=[longer], args=args, train_dataset=prompts,
            processing_class=AutoTokenizer.from_pretrained(tiny_model_dir), rollout_engine=engine,
            share_prompts=share_prompts,
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        lora_calls = _count_lora_calls_in_generation(trainer)
        trainer.train()
        results[name] = {
            "copy": trainer.rollout_copy,
            "lora_calls_in_generation": lora_calls["generation"],
            "logs": [r for r in trainer.state.log_history if "reward" in r],
            "weights": {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k},
        }
    return results


def _count_lora_calls_in_generation(trainer) -> dict[str, int]:
    """Calls of the trainer's own LoRA layers made while it generates, counted as training runs."""
    from peft.tuners.lora import LoraLayer

    counts = {"all": 0, "generation": 0}
    for module in trainer.model.modules():
        if isinstance(module, LoraLayer):
            module.register_forward_hook(lambda *_: counts.__setitem__("all", counts["all"] + 1))
    generate = trainer._generate_single_turn

    def counting(*args, **kwargs):
        before = counts["all"]
        try:
            return generate(*args, **kwargs)
        finally:
            counts["generation"] += counts["all"] - before

    trainer._generate_single_turn = counting
    return counts


def test_grpo_with_the_merged_copy_learns_what_plain_trl_learns(two_engines: dict[str, dict]) -> None:
    fast, plain = two_engines["auto"], two_engines["hf"]
    assert fast["copy"] is not None and plain["copy"] is None
    # The copy generates on its own merged weights: the trainer's adapter layers are not run at all (TRL patches
    # the model's forward with a closure over the original model, which a naive deepcopy would keep calling).
    assert fast["lora_calls_in_generation"] == 0
    assert plain["lora_calls_in_generation"] > 0
    assert len(fast["logs"]) == len(plain["logs"]) == 2
    for a, b in zip(fast["logs"], plain["logs"], strict=True):
        # Same rollouts (rewards and lengths are read off them), same loss.
        for key in ("reward", "completions/mean_length", "loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert any(w.abs().sum() > 0 for k, w in fast["weights"].items() if "lora_B" in k)
    for name, weight in fast["weights"].items():
        torch.testing.assert_close(weight, plain["weights"][name], rtol=1e-4, atol=1e-5)


def test_grpo_with_shared_prompt_passes_learns_what_one_pass_per_row_learns(two_engines: dict[str, dict]) -> None:
    shared, unshared = two_engines["auto"], two_engines["unshared"]
    for a, b in zip(shared["logs"], unshared["logs"], strict=True):
        for key in ("reward", "completions/mean_length", "loss", "entropy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for name, weight in shared["weights"].items():
        torch.testing.assert_close(weight, unshared["weights"][name], rtol=1e-4, atol=1e-5)
