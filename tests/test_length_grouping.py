"""Length-grouped batches pad less, see every example once per epoch, and resume to the same training."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from posttrain.training.length_grouping import LengthGroupedBatches, length_grouped


def real_fraction(order: list[int], lengths: list[int], batch_size: int) -> float:
    """Real tokens over padded tokens when `order` is cut into batches padded to their longest row."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_each_epoch_is_a_permutation_in_batches_that_pad_little() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(20, 200) for _ in range(603)]
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=0)
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(lengths)))  # every example exactly once
        epochs.append(order)
    assert epochs[0] != epochs[1]

    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    assert real_fraction(shuffled, lengths, 8) < 0.8
    assert real_fraction(epochs[0], lengths, 8) > 0.95
    # Random batches of 8 from 20-200 span ~140 tokens. 603 = 75 full batches + 3: the partial batch comes last,
    # so the DataLoader's cuts stay on batch boundaries.
    batches = [epochs[0][i:i + 8] for i in range(0, 603, 8)]
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 40 for b in batches[:-1])


def test_order_depends_on_seed_and_epoch_only() -> None:
    lengths = list(range(1, 101))
    first = list(LengthGroupedBatches(lengths, 4, seed=3))
    torch.manual_seed(123)  # a resumed run restores the global RNG from its checkpoint; the order must not care
    assert list(LengthGroupedBatches(lengths, 4, seed=3)) == first
    assert list(LengthGroupedBatches(lengths, 4, seed=4)) != first


@pytest.fixture()
def train_dataset():
    from datasets import Dataset

    rng = random.Random(1)
    words = ["apples", "buys", "gives", "away", "more", "how", "many", "now", "hello", "there"]
    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(2, 30)))}],
         "completion": [{"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 20)))}]}
        for _ in range(40)
    ])


def train(model_dir: Path, dataset, out: Path, resume: bool = False) -> list[float]:
    """Four steps of length-grouped LoRA SFT on the tiny model, checkpointing at step 2; the logged losses."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=1,
        save_strategy="steps", save_steps=2, report_to="none", seed=0, data_seed=0, use_cpu=True, bf16=False,
        disable_tqdm=True, max_length=64,
    )
    trainer = length_grouped(SFTTrainer)(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), args=args, train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    assert isinstance(trainer._get_train_sampler(), LengthGroupedBatches)
    batches = list(trainer.get_train_dataloader())
    padded = sum(b["attention_mask"].numel() for b in batches)
    assert sum(b["attention_mask"].sum().item() for b in batches) / padded > 0.85
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-2") if resume else None)
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_resumed_run_trains_on_the_same_batches(tiny_model_dir: Path, train_dataset, tmp_path: Path) -> None:
    uninterrupted = train(tiny_model_dir, train_dataset, tmp_path / "a")
    torch.manual_seed(99)  # another process: the global RNG is not where the first run left it
    resumed = train(tiny_model_dir, train_dataset, tmp_path / "a", resume=True)
    assert len(uninterrupted) == 4
    # The resumed log holds steps 1-2 from the checkpoint's state and steps 3-4 trained again.
    assert resumed == pytest.approx(uninterrupted, abs=1e-5)
