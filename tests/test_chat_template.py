"""`model.chat_template`: shipped templates render, bad values fail at validate with their YAML path, a base model
gets the template's tokens (trained as embedding rows) and its end of turn as eos, and chains keep those rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posttrain.errors import RecipeError, UserError
from posttrain.models.chat_template import SHIPPED, load_chat_template
from posttrain.models.templated import add_template_tokens, templated_base
from posttrain.recipe.loader import load_recipe

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
]


def base_tokenizer():
    """A byte-level BPE of a base model: no chat template, no chat tokens, only an end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["What is 2+2? Answer briefly. user assistant system"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_template_renders_a_conversation_with_single_token_markers(name: str) -> None:
    template = load_chat_template(name, None)
    assert template.special_tokens and template.end_of_turn in template.special_tokens
    tokenizer = base_tokenizer()
    added = add_template_tokens(tokenizer, template)
    assert added == list(template.special_tokens)
    assert tokenizer.eos_token == template.end_of_turn
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    for message in CONVERSATION:
        assert message["content"] in text
    assert "4" + template.end_of_turn in text  # the assistant's turn ends with the end-of-turn token
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for token in template.special_tokens:
        if token in text:
            assert tokenizer.convert_tokens_to_ids(token) in ids, f"{token} split into pieces"


def test_a_template_file_declares_its_own_tokens_and_resolves_against_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "mine.jinja").write_text(
        "{#- posttrain: special_tokens <U> <A> <E>; end_of_turn <E> -#}\n"
        "{% for m in messages %}{{ ('<U>' if m.role == 'user' else '<A>') + m.content + '<E>' }}{% endfor %}"
    )
    template = load_chat_template("tpl/mine.jinja", tmp_path)
    assert template.special_tokens == ("<U>", "<A>", "<E>") and template.end_of_turn == "<E>"
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert load_chat_template(str(plain), None).special_tokens == ()


RECIPE = """\
name: tpl
model:
  base: smollm2-135m-instruct
  chat_template: {value}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
stages:
  - {{name: sft, type: sft, data: chat}}
"""


@pytest.mark.parametrize(("value", "message"), [
    ("chatmll", "unknown chat template 'chatmll': use one of chatml, gemma, llama3, mistral or a .jinja file"),
    ("templates/none.jinja", "chat template file"),
    ("broken.jinja", "is not valid Jinja"),
])
def test_a_bad_chat_template_is_a_validate_error_at_its_yaml_path(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "chat.jsonl").write_text("")
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(value=value))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(p.startswith(f"{path}:4:3 model.chat_template: ") and message in p for p in info.value.problems), \
        info.value.problems


def test_validate_cli_exits_2_on_a_missing_template_file(tmp_path: Path) -> None:
    (tmp_path / "chat.jsonl").write_text("")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(value="missing.jinja"))
    result = subprocess.run([sys.executable, "-m", "posttrain.cli", "validate", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:4:3 model.chat_template: chat template file" in result.stderr


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny base model whose tokenizer has neither a chat template nor ChatML's tokens."""
    from tests.conftest import build_tiny_model

    folder = tmp_path_factory.mktemp("base-model")
    tokenizer = base_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_no_template_names_the_fix(base_dir: Path) -> None:
    from posttrain.models.loading import load_tokenizer

    with pytest.raises(UserError, match=r"Fix: give the base model one with model.chat_template: chatml"):
        load_tokenizer(str(base_dir))


def test_templated_base_adds_the_tokens_resizes_and_stops_at_the_end_of_turn(base_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from posttrain.models.loading import load_tokenizer
    from posttrain.stagekit.specs import LoraSpec
    from posttrain.training.lora import lora_config

    folder = templated_base(str(base_dir), load_chat_template("chatml", None), tmp_path / "templated")
    tokenizer = load_tokenizer(str(folder))
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    n = len(base_tokenizer())
    assert (start, end) == (n, n + 1) and tokenizer.eos_token_id == end and tokenizer.pad_token_id != end
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.get_input_embeddings().num_embeddings == n + 2
    assert model.config.eos_token_id == end and model.generation_config.eos_token_id == end
    # LoRA trains the two new rows (tied head: PEFT follows the embedding); nothing else of the embedding.
    assert lora_config(LoraSpec(), model).trainable_token_indices == {"embed_tokens": [n, n + 1]}


def test_the_cumulative_adapter_carries_the_last_trained_token_rows(base_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from posttrain.models.lineage import Lineage, cumulative_adapter, materialize
    from posttrain.stagekit.specs import LoraSpec
    from posttrain.training.lora import lora_config

    folder = templated_base(str(base_dir), load_chat_template("chatml", None), tmp_path / "templated")
    lineage = Lineage(str(folder))
    for stage in ("sft", "dpo"):  # each stage trains on the merge of the ones before, as a run does
        torch.manual_seed(len(lineage.adapters))
        merged = materialize(lineage, dtype="float32")
        model = get_peft_model(merged, lora_config(LoraSpec(r=4), merged))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name or "trainable_tokens_delta" in name:
                    param.add_(torch.randn_like(param) * 0.1)
        model.save_pretrained(tmp_path / stage)
        lineage = lineage.extended(tmp_path / stage)
    combined = cumulative_adapter(lineage.adapters, tmp_path / "peft", base_model=str(folder))
    assert json.loads((combined / "adapter_config.json").read_text())["trainable_token_indices"]
    n = len(base_tokenizer())
    ids = torch.tensor([[1, n, 40, 41, n + 1, 42]])
    with torch.no_grad():
        chained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), combined)(input_ids=ids)
        expected = materialize(lineage, dtype="float32")(input_ids=ids)
    assert torch.allclose(chained.logits, expected.logits, atol=1e-4), (chained.logits - expected.logits).abs().max()
