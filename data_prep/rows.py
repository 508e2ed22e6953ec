"""The in-memory row (canonical data + provenance), its texts, and JSONL I/O."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass(slots=True)
class Row:
    """A canonical row plus where it came from, so removals can name file and line."""

    data: dict[str, Any]
    source: str
    line: int
    src_index: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def _contents(messages: list[dict[str, str]], roles: tuple[str, ...]) -> list[str]:
    return [m["content"] for m in messages if m["role"] in roles]


def prompt_texts(data: dict[str, Any], kind: str) -> list[str]:
    if kind == "chat":
        return _contents(data["messages"], ("system", "user"))
    return _contents(data["prompt"], ("system", "user", "assistant"))


def answer_texts(data: dict[str, Any], kind: str) -> list[str]:
    """What the model is trained to produce (for prompt rows: the answer columns)."""
    if kind == "chat":
        return _contents(data["messages"], ("assistant",))
    if kind == "preference":
        return [data["chosen"], data["rejected"]]
    if kind == "unpaired":
        return [data["completion"]]
    return [
        v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in data.items()
        if k != "prompt"
    ]


def texts(data: dict[str, Any], kind: str, field: str = "all") -> list[str]:
    if field == "prompt":
        return prompt_texts(data, kind)
    if field == "answer":
        return answer_texts(data, kind)
    return prompt_texts(data, kind) + answer_texts(data, kind)


def dumps(data: Any) -> str:
    # default=str: parquet/hub rows can carry dates or decimals in extra columns.
    text = json.dumps(data, ensure_ascii=False, default=str)
    if has_lone_surrogates(text):  # as written, not encodable in UTF-8; escaped, it is plain JSON
        text = json.dumps(data, ensure_ascii=True, default=str)
    return text


def has_lone_surrogates(text: str) -> bool:
    """Whether `text` holds a lone UTF-16 surrogate (JSON's `"\\ud83d"` decodes to one): no UTF-8 for it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def preview(value: Any, limit: int = 400) -> str:
    """A short text of a row for rejects and reports; never the whole of a huge row."""
    if isinstance(value, bytes):
        text = value[:limit].decode("utf-8", errors="replace")
    elif isinstance(value, str):
        text = value.encode("utf-8", "replace").decode("utf-8") if has_lone_surrogates(value) else value
    else:
        text = dumps(value)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """Write to a temp file beside `path`, rename on success: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with atomic_writer(path) as f:
        for row in rows:
            f.write(dumps(row))
            f.write("\n")
            n += 1
    return n


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by `prepare_dataset` (train/eval/rejects)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
