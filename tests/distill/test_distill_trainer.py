"""The loss the trainer optimizes is the tested math of posttrain.distill.losses, on a real batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

import posttrain.distill.trainer as distill_trainer
from posttrain.distill.losses import distill_loss
from posttrain.distill.prune import prune_layers
from posttrain.distill.trainer import DistillTrainer, GKDConfig, answer_window

EXAMPLES = [
    {"messages": [{"role": "user", "content": f"What is {i} + 7?"}, {"role": "assistant", "content": f"Answer: {i + 7}"}]}
    for i in range(6)
]


def make_trainer(folder: Path, tmp_path: Path, **settings: Any) -> DistillTrainer:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    teacher = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    student = prune_layers(teacher, [0])
    loss, ce_weight = settings.pop("loss", "jsd"), settings.pop("ce_weight", 0.0)
    config = GKDConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=3, max_steps=1, learning_rate=1e-2,
        report_to="none", use_cpu=True, save_strategy="no", max_length=64, pad_token=tokenizer.pad_token,
        **{"lmbda": 0.0, "beta": 0.3, "temperature": 2.0, "max_new_tokens": 4, **settings},
    )
    return DistillTrainer(
        model=student, teacher_model=teacher, args=config, train_dataset=Dataset.from_list(EXAMPLES),
        processing_class=tokenizer, loss=loss, ce_weight=ce_weight,
    )


@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "jsd"])
def test_trainer_loss_equals_distill_loss(tiny_model_dir: Path, tmp_path: Path, loss: str) -> None:
    trainer = make_trainer(tiny_model_dir, tmp_path, loss=loss, ce_weight=0.25)
    batch = trainer.data_collator(EXAMPLES[:3])
    assert (batch["attention_mask"][:, 0] == 0).any(), "left padding exercised"
    student, teacher = trainer.model, trainer.teacher_model
    with torch.no_grad():
        got = trainer.compute_loss(student, batch)
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=positions)
        expected, parts = distill_loss(
            student(**kwargs).logits[:, :-1], teacher(**kwargs).logits[:, :-1], batch["labels"][:, 1:],
            kind=loss, beta=0.3, temperature=2.0, ce_weight=0.25,
        )
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["kd"] > 0 and parts["ce"] > 0
    assert (batch["labels"][:, 1:] != -100).sum() < batch["attention_mask"].sum()  # prompts are not targets


def test_answer_window_gives_the_full_logits_loss_and_gradients(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_model_dir, tmp_path, loss="forward_kl", ce_weight=0.5)
    batch = trainer.data_collator(EXAMPLES[:3])
    length = batch["labels"].shape[-1]
    assert trainer._answer_window and answer_window(batch["labels"]) < length, "the window skips the prompts"

    def loss_and_grads(window: bool) -> tuple[float, list[torch.Tensor]]:
        trainer._answer_window = window
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    full_loss, full_grads = loss_and_grads(False)
    window_loss, window_grads = loss_and_grads(True)
    assert window_loss == pytest.approx(full_loss, rel=1e-6)
    assert len(window_grads) == len(full_grads)
    for got, expected in zip(window_grads, full_grads, strict=True):
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_answer_window_doctest_and_edges() -> None:
    import doctest

    assert doctest.testmod(distill_trainer).failed == 0
    assert answer_window(torch.full((2, 5), -100)) == 5  # nothing labelled: every position
    assert answer_window(torch.tensor([[3, 4, 5]])) == 3  # the first token labelled: never longer than the row


def test_a_training_step_moves_the_student_and_not_the_teacher(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_model_dir, tmp_path, lmbda=1.0)  # on-policy: the student's own samples
    before_s = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    before_t = {k: v.clone() for k, v in trainer.teacher_model.state_dict().items()}
    trainer.train()
    assert trainer._on_policy, "lmbda=1 generated from the student"
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in before_s.items())
    assert all(torch.equal(v, trainer.teacher_model.state_dict()[k]) for k, v in before_t.items())
