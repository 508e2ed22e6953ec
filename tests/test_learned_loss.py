"""The learned-positions SFT loss equals TRL's own loss, gradients and logged metrics included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posttrain.training import learned_loss
from posttrain.training.learned_loss import learned_positions_loss


def make_trainer(model_dir: Path, trainer_class: type, tmp_path: Path):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    rows = [
        {"prompt": [{"role": "user", "content": "How many apples " * n}],
         "completion": [{"role": "assistant", "content": "Answer: " + "19 " * (7 - n)}]}
        for n in range(1, 7)
    ]
    torch.manual_seed(0)
    return trainer_class(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, report_to="none", use_cpu=True,
                       bf16=False, max_length=64, seed=0),
        train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False),
    )


def loss_grads_metrics(trainer, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]
    return loss.detach(), grads, {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.parametrize("chunk", [2048, 5])  # 5: the chunked, recomputed path on a small batch
def test_same_loss_gradients_and_metrics_as_trl(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    from trl import SFTTrainer

    monkeypatch.setattr(learned_loss, "CHUNK_POSITIONS", chunk)
    trl_trainer = make_trainer(tiny_model_dir, SFTTrainer, tmp_path / "trl")
    ours = make_trainer(tiny_model_dir, learned_positions_loss(SFTTrainer), tmp_path / "ours")
    batch = next(iter(ours.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["attention_mask"] == 0).any()  # prompts and padding to skip
    assert ours._learned_loss_fits(ours.model)

    trl_loss, trl_grads, trl_metrics = loss_grads_metrics(trl_trainer, batch)
    our_loss, our_grads, our_metrics = loss_grads_metrics(ours, batch)
    torch.testing.assert_close(our_loss, trl_loss, atol=1e-5, rtol=1e-5)
    for ours_g, trl_g in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours_g, trl_g, atol=1e-5, rtol=1e-4)
    assert our_metrics == pytest.approx(trl_metrics, rel=1e-4)
    assert set(our_metrics) == {"entropy", "mean_token_accuracy", "num_tokens"}


def test_falls_back_to_trl_where_it_does_not_fit(tiny_model_dir: Path, tmp_path: Path) -> None:
    from trl import SFTTrainer

    ours = make_trainer(tiny_model_dir, learned_positions_loss(SFTTrainer), tmp_path)
    ours.model.config.final_logit_softcapping = 30.0  # Gemma-style logits: not `lm_head(hidden)` as is
    assert not ours._learned_loss_fits(ours.model)
