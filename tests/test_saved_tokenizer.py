"""A saved model keeps the tokenizer files of the model it came from while its tokenizer is unchanged.

transformers re-saves a loaded tokenizer as its backend sees it (no SentencePiece `tokenizer.model`, the
family's tokenizer class), which llama.cpp's converter then reads differently from the base: the GGUF export of
a full fine-tune failed for Qwen2, Gemma-2, Gemma-3 and Phi-3 (tests/matrix).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.models.loading import TOKENIZER_FILES, load_tokenizer, save_tokenizer
from tests.export.conftest import build_family

SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=64)
TEMPLATE = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"


@pytest.fixture(scope="module")
def embedded() -> Path:
    from posttrain.models.resolve import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").path)


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in TOKENIZER_FILES if (folder / name).is_file()}


def _sentencepiece_family(tmp_path: Path, embedded: Path) -> Path:
    from transformers import AutoTokenizer

    base = build_family("gemma2", tmp_path / "base", embedded, shape=SHAPE, bpe=False)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(base)
    return base


def test_qwen2_bpe_keeps_its_tokenizer_class(tmp_path: Path, embedded: Path) -> None:
    base = build_family("qwen2", tmp_path / "base", embedded, shape=SHAPE, bpe=True)
    tokenizer = load_tokenizer(str(base))
    tokenizer.save_pretrained(tmp_path / "plain")
    assert _files(tmp_path / "plain") != _files(base)  # what the bug was: the re-save differs from the base
    save_tokenizer(tokenizer, tmp_path / "out", base)
    assert _files(tmp_path / "out") == _files(base)
    assert load_tokenizer(str(tmp_path / "out")).get_vocab() == tokenizer.get_vocab()


def test_sentencepiece_model_is_kept(tmp_path: Path, embedded: Path) -> None:
    base = _sentencepiece_family(tmp_path, embedded)
    tokenizer = load_tokenizer(str(base))
    save_tokenizer(tokenizer, tmp_path / "out", base)
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == (base / "tokenizer.model").read_bytes()
    assert _files(tmp_path / "out") == _files(base)


def test_a_changed_tokenizer_is_saved_as_it_is(tmp_path: Path, embedded: Path) -> None:
    base = _sentencepiece_family(tmp_path, embedded)
    tokenizer = load_tokenizer(str(base))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|turn|>"]})
    save_tokenizer(tokenizer, tmp_path / "out", base)
    assert "<|turn|>" in load_tokenizer(str(tmp_path / "out")).get_vocab()
    assert _files(tmp_path / "out") != _files(base)
