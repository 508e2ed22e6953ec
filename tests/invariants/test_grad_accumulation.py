"""One batch of 8 and eight accumulated micro-batches of 1 take the same optimizer step.

The trainers are configured as posttrain configures them (training/arguments.py
and the sft/dpo stages): TRL's SFTTrainer with a completion-only loss over
conversational prompt/completion examples, TRL's DPOTrainer over preference
pairs, a LoRA, max_grad_norm 1.0. The examples have very different answer
lengths, so a loss averaged per micro-batch and then over micro-batches would
weigh the tokens of short answers more than those of long ones; the SFT loss
must be the mean over all answer tokens of the step (transformers passes
`num_items_in_batch` for that), and the DPO loss the mean over pairs.

The model runs in float64. In float32 the two gradients differ by up to
5e-3 (relative L2) on this near-uniform tiny model, from rounding alone. In
float64 only TRL's fused LM head still rounds: it folds the vocabulary in
float32 whatever the model's dtype, so rows scored in batches of a different
size (8 rows or 1; all positions, or only the labelled ones as on a CPU with
posttrain's training/compact_scoring.py) differ by ~1e-8 relative. A
per-micro-batch mean instead (what transformers does when it cannot pass
`num_items_in_batch`) moves the SFT gradient by 0.8, so the tolerance below
(1e-6) still separates the two by five orders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

# Answers from 1 to ~40 tokens; prompts of different lengths too.
ANSWERS = ["7", "Answer: 19", "12 + 7 = 19. Answer: 19", "Hello there, how are you? You are a helpful assistant.",
           "0 1 2 3 4 5 6 7 8 9 10", "apples", "How many apples now? 3 + 4 = 7 apples. Answer: 7",
           "buys gives away more " * 3]
LR = 0.1
QUESTIONS = [f"What is {i} + {i * 3}?" + " Hello there." * (i % 3) for i in range(8)]


class GradientRecorder(TrainerCallback):
    """Copies every trainable parameter's gradient just before the optimizer applies it (after clipping)."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _model_and_lora(model_dir: Path) -> dict[str, Any]:
    """The tiny model in float64, and a LoRA whose B is random too, so A and B both get gradients at once.

    As in posttrain, the trainer adds the LoRA itself (so DPO's reference is the
    model with the adapter switched off); the seed makes both runs' LoRA equal.
    """
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", bias="none",
                        task_type="CAUSAL_LM", init_lora_weights=False)
    return {"model": base, "peft_config": config}


def _common(tmp: Path, batch_size: int, grad_accum: int) -> dict[str, Any]:
    """The TrainingArguments posttrain sets, for one plain SGD step (its update is lr × gradient)."""
    return {
        "output_dir": str(tmp), "max_steps": 1, "learning_rate": LR, "optim": "sgd",
        "lr_scheduler_type": "constant", "warmup_steps": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0,
        "per_device_train_batch_size": batch_size, "gradient_accumulation_steps": grad_accum,
        "logging_steps": 1, "logging_nan_inf_filter": False, "save_strategy": "no", "seed": 0, "data_seed": 0,
        "report_to": "none", "use_cpu": True, "dataloader_num_workers": 0, "disable_tqdm": True,
    }


def _trained_weights(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _step(trainer: Any) -> tuple[dict[str, float], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run one step; (its logged loss and grad norm, the applied gradients, the LoRA weights before it)."""
    recorder = GradientRecorder()
    trainer.add_callback(recorder)
    before = _trained_weights(trainer.model)
    assert before and all("lora_" in name for name in before), "only the LoRA trains"
    trainer.train()
    logged = next(r for r in trainer.state.log_history if "loss" in r)
    after = _trained_weights(trainer.model)
    assert recorder.grads.keys() == after.keys(), "every LoRA weight gets a gradient"
    for name, grad in recorder.grads.items():  # plain SGD: the step is exactly -lr × the recorded gradient
        torch.testing.assert_close(after[name], before[name] - LR * grad, rtol=1e-12, atol=1e-12)
    return {"loss": logged["loss"], "grad_norm": logged["grad_norm"]}, recorder.grads, before


def _assert_same_step(one: tuple, accumulated: tuple) -> None:
    (logs_1, grads_1, start_1), (logs_8, grads_8, start_8) = one, accumulated
    # The logged loss is rounded to float32 on its way to the logs.
    assert logs_1["loss"] == pytest.approx(logs_8["loss"], rel=1e-6)
    assert logs_1["grad_norm"] == pytest.approx(logs_8["grad_norm"], rel=1e-6)
    assert grads_1.keys() == grads_8.keys()
    for name in grads_1:
        assert grads_1[name].dtype == torch.float64
        torch.testing.assert_close(start_8[name], start_1[name], rtol=0, atol=0)  # same starting LoRA
        relative_l2 = float((grads_8[name] - grads_1[name]).norm() / grads_1[name].norm())
        assert relative_l2 < 1e-6, (name, relative_l2)


def _sft_step(model_dir: Path, tmp: Path, batch_size: int, grad_accum: int) -> tuple:
    examples = [
        {"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]}
        for q, a in zip(QUESTIONS, ANSWERS, strict=True)
    ]
    config = SFTConfig(**_common(tmp, batch_size, grad_accum), max_length=128, packing=False,
                       completion_only_loss=True)
    trainer = SFTTrainer(**_model_and_lora(model_dir), args=config, train_dataset=Dataset.from_list(examples),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    return _step(trainer)


def _dpo_step(model_dir: Path, tmp: Path, batch_size: int, grad_accum: int) -> tuple:
    pairs = [
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
         "rejected": [{"role": "assistant", "content": ANSWERS[(i + 3) % 8]}]}
        for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True))
    ]
    config = DPOConfig(**_common(tmp, batch_size, grad_accum), max_length=128, beta=0.1, loss_type=["sigmoid"])
    trainer = DPOTrainer(**_model_and_lora(model_dir), ref_model=None, args=config,
                         train_dataset=Dataset.from_list(pairs), processing_class=AutoTokenizer.from_pretrained(model_dir))
    return _step(trainer)


def test_sft_batch_of_8_equals_8_accumulated_micro_batches(tiny_model_dir: Path, tmp_path: Path) -> None:
    one = _sft_step(tiny_model_dir, tmp_path / "b8", batch_size=8, grad_accum=1)
    accumulated = _sft_step(tiny_model_dir, tmp_path / "b1x8", batch_size=1, grad_accum=8)
    _assert_same_step(one, accumulated)


def test_dpo_batch_of_8_equals_8_accumulated_micro_batches(tiny_model_dir: Path, tmp_path: Path) -> None:
    one = _dpo_step(tiny_model_dir, tmp_path / "b8", batch_size=8, grad_accum=1)
    accumulated = _dpo_step(tiny_model_dir, tmp_path / "b1x8", batch_size=1, grad_accum=8)
    _assert_same_step(one, accumulated)
