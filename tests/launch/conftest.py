"""Helpers for launch tests: a recipe writer with data small enough for one step on 8 examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_data(folder: Path, chats: int = 8, prefs: int = 8) -> None:
    """`chats` distinct arithmetic conversations and `prefs` preference pairs, as JSONL."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "chat.jsonl").open("w") as f:
        for i in range(chats):
            messages = [
                {"role": "user", "content": f"What is {i} + 7? End your reply with \"Answer: <number>\"."},
                {"role": "assistant", "content": f"{i} + 7 = {i + 7}.\nAnswer: {i + 7}"},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (folder / "prefs.jsonl").open("w") as f:
        for i in range(prefs):
            prompt = [{"role": "user", "content": f"What is {i} + 3?"}]
            f.write(json.dumps({"prompt": prompt, "chosen": f"Answer: {i + 3}", "rejected": f"Answer: {i + 4}"}) + "\n")


@pytest.fixture(autouse=True)
def _one_thread_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Launched workers inherit this: N torch processes on a shared 2-core machine must not oversubscribe.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def nf4_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose linear layers NF4 can pack: bitsandbytes' CPU kernels want in_features of 64 or more."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-nf4-model")
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
