"""Fixtures for the distillation tests: a factory of tiny random Llamas, and the shared tiny tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM


@pytest.fixture
def tiny_llama() -> Callable[..., Any]:
    """`tiny_llama(vocab_size, layers=4, seed=0)`: a random Llama small enough to run anywhere in milliseconds."""

    def build(vocab_size: int, layers: int = 4, seed: int = 0) -> Any:
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )
        return LlamaForCausalLM(config).eval()

    return build


@pytest.fixture
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)
