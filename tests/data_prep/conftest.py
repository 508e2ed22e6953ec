"""Small data builders for the data_prep tests (everything is made inside the test, offline)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def chat_row(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": msgs}


class WordTokenizer:
    """Stands in for a transformers tokenizer: one token per whitespace word, a visible chat template."""

    name_or_path = "test/word-tokenizer"
    chat_template = "<role> content"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = " ".join(f"<{m['role']}> {m['content']}" for m in messages)
        return text + (" <assistant>" if add_generation_prompt else "")

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [t.split() for t in texts]}


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    return chat_row


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, list[Any]], Path]:
    """Write rows (dicts, or raw bytes/str lines taken as-is) to tmp_path/name."""

    def write(name: str, rows: list[Any]) -> Path:
        path = tmp_path / name
        with open(path, "wb") as f:
            for row in rows:
                if isinstance(row, bytes):
                    f.write(row)
                elif isinstance(row, str):
                    f.write(row.encode("utf-8"))
                else:
                    f.write(json.dumps(row).encode("utf-8"))
                f.write(b"\n")
        return path

    return write


@pytest.fixture
def word_tokenizer() -> WordTokenizer:
    return WordTokenizer()
