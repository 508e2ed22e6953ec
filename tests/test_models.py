"""Model references resolve offline; tokenizers keep their chat template and learn to stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from posttrain.errors import UserError
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.models.resolve import resolve_model
from posttrain.stages.sft import sft_example


def test_local_folder_resolves_and_loads(tiny_model_dir: Path) -> None:
    resolved = resolve_model(str(tiny_model_dir))
    assert resolved.source == "local" and resolved.path == str(tiny_model_dir.resolve())
    assert load_model(resolved.path, dtype="float32").config.num_hidden_layers == 2


def test_relative_path_resolves_against_recipe_folder(tiny_model_dir: Path) -> None:
    resolved = resolve_model(tiny_model_dir.name, base_dir=tiny_model_dir.parent)
    assert resolved.source == "local"


def test_hub_ids_are_passed_through_and_nonsense_is_an_error(tmp_path: Path) -> None:
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct").source == "hub"
    with pytest.raises(UserError, match="neither a known alias"):
        resolve_model("not a model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"no config\.json"):
        resolve_model(str(empty))


def test_hub_id_offline_is_a_user_error() -> None:
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        load_tokenizer("nobody-here/no-such-model-xyz")


def test_tokenizer_pad_differs_from_eos_and_eos_is_learned(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert tokenizer.chat_template and tokenizer.pad_token_id != tokenizer.eos_token_id

    messages = [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": "Answer: 2"}]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir="/tmp/unused", report_to="none", use_cpu=True, max_length=64),
        train_dataset=Dataset.from_list([sft_example(messages, "completion")]),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    learned = [label for label in row["labels"] if label != -100]
    assert tokenizer.eos_token_id in learned, "the end-of-turn token must be a training target"
    assert tokenizer.decode(learned).startswith("Answer: 2")
    prompt_ids = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label == -100]
    assert "1 + 1?" in tokenizer.decode(prompt_ids)
