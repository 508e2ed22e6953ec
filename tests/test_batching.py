"""Padding-free SFT batches train on exactly what padded batches train on, and are used where they fit."""

from __future__ import annotations

from pathlib import Path

import torch

from posttrain.models.precision import DeviceFacts
from posttrain.training.batching import padding_free_fits, sft_batching


def test_padding_free_where_it_fits() -> None:
    cpu, gpu_flash, gpu_sdpa = DeviceFacts(cpu_bf16=True), DeviceFacts(cuda=True, flash_attn=True), DeviceFacts(cuda=True)
    assert padding_free_fits(packing=False, facts=gpu_flash)
    assert not padding_free_fits(packing=False, facts=gpu_sdpa)  # SDPA with a block mask loses its flash kernel
    assert not padding_free_fits(packing=False, facts=cpu)  # off on CPU until measured without bias
    assert not padding_free_fits(packing=True, facts=gpu_flash)  # TRL's packing is padding-free already
    assert sft_batching(None, packing=False, facts=gpu_sdpa) == {}


def test_padding_free_loss_equals_padded_loss(tiny_model_dir: Path) -> None:
    """Same examples, same labels: the loss of one concatenated row equals that of the padded batch."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    examples = []
    for length in (5, 17, 9, 12):
        ids = torch.randint(3, 300, (length,), generator=generator).tolist()
        labels = [-100] * (length // 2) + ids[length // 2 :]  # completion-only: the prompt half is masked
        examples.append({"input_ids": ids, "labels": labels})

    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    gpu_flash = DeviceFacts(cuda=True, flash_attn=True)
    collator = sft_batching(type("Tok", (), {"pad_token_id": 0})(), packing=False, facts=gpu_flash)["data_collator"]
    flat = collator(examples)
    assert flat["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert "attention_mask" not in flat

    # use_cache=False as TRL's SFTTrainer sets it: with a cache, transformers does not look for packed sequences.
    with torch.no_grad():
        padded_loss = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                            labels=padded["labels"], use_cache=False).loss
        flat_loss = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], labels=flat["labels"],
                          use_cache=False).loss
        # Without position_ids the row is one long sequence: examples would see each other, and the loss moves.
        leaky_loss = model(input_ids=flat["input_ids"], labels=flat["labels"], use_cache=False).loss
    torch.testing.assert_close(flat_loss, padded_loss, atol=1e-5, rtol=0)
    assert abs(leaky_loss.item() - padded_loss.item()) > 1e-4  # a random tiny model leaks little, but measurably
