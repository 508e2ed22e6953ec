"""GRPO's log-prob passes with each prompt run once per group give TRL's log-probs, entropies and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def trainer(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from posttrain.training.grpo_trainer import PosttrainGRPOTrainer

    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo-shared")), max_steps=1, per_device_train_batch_size=6,
        num_generations=3, max_completion_length=6, report_to="none", use_cpu=True, bf16=False,
        gradient_checkpointing=False, disable_tqdm=True, temperature=0.8,
    )
    trainer = PosttrainGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)], args=args,
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 6),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    torch.manual_seed(2)
    with torch.no_grad():  # a trained-looking adapter: B is zero at init
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return trainer


def _batch() -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two prompts (left-padded, different lengths) × 3 completions (right-padded), as TRL lays them out."""
    torch.manual_seed(0)
    prompts = [torch.randint(3, 60, (7,)), torch.randint(3, 60, (4,))]
    rows, masks = [], []
    for p, prompt in enumerate(prompts):
        for c in range(3):
            completion = torch.randint(3, 60, (5,))
            completion_mask = torch.ones(5, dtype=torch.long)
            completion_mask[5 - (p + c) % 3:] = 0  # ended early: padding after
            pad = 7 - len(prompt)
            rows.append(torch.cat([torch.zeros(pad, dtype=torch.long), prompt, completion * completion_mask]))
            masks.append(torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(len(prompt), dtype=torch.long),
                                    completion_mask]))
    return torch.stack(rows), torch.stack(masks), 5


def _pass(trainer, share: bool, input_ids, attention_mask, logits_to_keep):
    trainer.share_prompts = share
    trainer.model.zero_grad()
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, input_ids, attention_mask, logits_to_keep, compute_entropy=True)
    (logps * attention_mask[:, -logits_to_keep:]).sum().backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def test_shared_prompt_pass_gives_trls_numbers(trainer) -> None:
    input_ids, attention_mask, keep = _batch()
    calls: list[int] = []
    hook = trainer.model.get_base_model().model.layers[0].register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0] * args[0].shape[1]))
    try:
        plain = _pass(trainer, False, input_ids, attention_mask, keep)
        plain_tokens = sum(calls)
        calls.clear()
        shared = _pass(trainer, True, input_ids, attention_mask, keep)
    finally:
        hook.remove()
    # TRL's pass: 6 rows × 12 tokens; shared: 2 prompts × 6 tokens, then 6 rows × (1 + 5) tokens.
    assert plain_tokens == 6 * 12 and sum(calls) == 2 * 6 + 6 * 6
    valid = attention_mask[:, -keep:].bool()
    torch.testing.assert_close(shared[0][valid], plain[0][valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[1][valid], plain[1][valid], rtol=1e-5, atol=1e-5)
    assert plain[2] and plain[2].keys() == shared[2].keys()
    for name, grad in plain[2].items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(shared[2][name], grad, rtol=1e-4, atol=1e-6)


def test_rows_without_a_repeated_prompt_take_trls_path(trainer) -> None:
    from posttrain.training.shared_prompts import shared_prompt_logps

    input_ids, attention_mask, keep = _batch()
    distinct = [0, 3]  # one row of each prompt
    assert shared_prompt_logps(trainer.model, input_ids[distinct], attention_mask[distinct], keep,
                               compute_entropy=True) is None
