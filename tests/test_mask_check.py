"""The loss-mask check on the SFT trainer's own batches: planted mask bugs each fail with the row and the fix;
a healthy setup (also pad == eos with TRL's collator, as the embedded model has) passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posttrain.errors import UserError
from posttrain.training.mask_check import batches_as_trained, check_loss_mask, end_of_turn_id

ROWS = [{"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                      {"role": "assistant", "content": f"It is {i + 7}. Answer: {i + 7}"}]} for i in range(6)]


def _trainer(model_dir: Path, tokenizer, tmp_path: Path, *, max_length: int = 128):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from posttrain.stages.sft import sft_example

    config = SFTConfig(output_dir=str(tmp_path / "out"), max_length=max_length, completion_only_loss=True,
                       per_device_train_batch_size=4, report_to=[], use_cpu=True)
    return SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
        train_dataset=Dataset.from_list([sft_example(r["messages"], "completion") for r in ROWS]),
        processing_class=tokenizer,
    )


def _check(trainer, tokenizer, max_length: int = 128) -> dict | None:
    return check_loss_mask(trainer, tokenizer, stage="sft", dataset="chat", rows=ROWS, max_length=max_length)


@pytest.fixture
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_a_healthy_mask_passes_and_supervises_answer_and_end_of_turn(tiny_model_dir, tokenizer, tmp_path) -> None:
    trainer = _trainer(tiny_model_dir, tokenizer, tmp_path)
    example = _check(trainer, tokenizer)
    end = end_of_turn_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(end) == "<|im_end|>"
    first = batches_as_trained(trainer)[0]
    assert tokenizer.decode(first.supervised, skip_special_tokens=True).strip() == "It is 7. Answer: 7"
    assert first.supervised.count(end) == 1
    # What the report highlights: the rendered example, its learned runs exactly the supervised tokens.
    segments = example["segments"]
    assert "".join(seg["text"] for seg in segments) == tokenizer.decode(first.input_ids)
    learned = "".join(seg["text"] for seg in segments if seg["learned"])
    assert "It is 7. Answer: 7" in learned and learned.rstrip().endswith("<|im_end|>")
    assert "What is 0 + 7?" not in learned
    assert example["learned_tokens"] == len(first.supervised) == sum(seg["tokens"] for seg in segments if seg["learned"])


def test_pad_equal_to_eos_with_trls_collator_still_trains_the_end_of_turn(tiny_model_dir, tokenizer, tmp_path):
    tokenizer.pad_token = tokenizer.eos_token  # as SmolLM2-Instruct ships
    _check(_trainer(tiny_model_dir, tokenizer, tmp_path), tokenizer)


def test_pad_equal_to_eos_with_a_collator_masking_padding_by_id_fails(tiny_model_dir, tokenizer, tmp_path) -> None:
    tokenizer.pad_token = tokenizer.eos_token
    trainer = _trainer(tiny_model_dir, tokenizer, tmp_path)
    inner = trainer.data_collator

    def masks_pad_by_id(examples):  # the classic collator bug: every pad-id token, EOS included, leaves the loss
        batch = inner(examples)
        batch["labels"][batch["input_ids"] == tokenizer.pad_token_id] = -100
        return batch

    trainer.data_collator = masks_pad_by_id
    with pytest.raises(UserError) as caught:
        _check(trainer, tokenizer)
    first = caught.value.problems[0]
    assert first.startswith("row 1 of dataset 'chat': the end-of-turn token '<|im_end|>' is never trained")
    assert "pad == end-of-turn" in first and "fix: give the tokenizer a pad token distinct" in first


def test_an_answer_truncated_away_fails(tiny_model_dir, tokenizer, tmp_path) -> None:
    with pytest.raises(UserError) as caught:
        _check(_trainer(tiny_model_dir, tokenizer, tmp_path, max_length=12), tokenizer, max_length=12)
    first = caught.value.problems[0]
    assert first.startswith("row 1 of dataset 'chat': the prompt alone is ") and "train.max_length is 12" in first
    assert "fix: raise train.max_length" in first and len(caught.value.problems) == 5


def test_a_template_whose_assistant_marker_does_not_match_fails(tiny_model_dir, tokenizer, tmp_path) -> None:
    # The generation prompt says "assistant:" but a rendered answer follows "assistant": the prompt is no prefix.
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant: the answer follows after this long marker\n{% endif %}"
    )
    with pytest.raises(UserError) as caught:
        _check(_trainer(tiny_model_dir, tokenizer, tmp_path), tokenizer)
    (problem,) = caught.value.problems
    assert problem.startswith("row 1 of dataset 'chat': the chat template's generation prompt is not how it renders")
    assert "fix: a chat template whose assistant markers match" in problem


def test_the_check_draws_no_random_numbers(tiny_model_dir, tokenizer, tmp_path) -> None:
    trainer = _trainer(tiny_model_dir, tokenizer, tmp_path)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _check(trainer, tokenizer)
    assert torch.equal(torch.rand(3), expected)
