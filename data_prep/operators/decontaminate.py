"""Decontamination: drop training rows that share an n-gram with the eval suite.

Texts are tokenized into words and single symbols ("12 + 7" and "12 - 7"
differ). Every `ngram`-token window of an eval text is a contaminating n-gram.
Eval prompts are often shorter than 13 tokens (an arithmetic question), so an
eval text with `min_ngram <= len < ngram` tokens counts as one n-gram of its
own length, matched anywhere in a training row; shorter texts (a bare answer
like "19") would match everything and are skipped, and counted in the report.

Lookup cost: grams are indexed by their first token, so each training token
costs one dict lookup, and a tuple is built only where an eval gram could start.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from data_prep.operators.base import OpContext, OpResult
from data_prep.rows import Row, texts
from data_prep.spec import DecontaminateSpec
from data_prep.text import tokens
from posttrain.errors import DataError


class NgramIndex:
    def __init__(self, docs: list[str], n: int, min_n: int) -> None:
        self.grams: set[tuple[str, ...]] = set()
        self.lengths_by_first: dict[str, set[int]] = defaultdict(set)
        self.skipped_short = 0
        for doc in docs:
            toks = tokens(doc)
            if len(toks) >= n:
                for i in range(len(toks) - n + 1):
                    self._add(tuple(toks[i : i + n]))
            elif len(toks) >= min_n:
                self._add(tuple(toks))
            elif toks:
                self.skipped_short += 1

    def _add(self, gram: tuple[str, ...]) -> None:
        self.grams.add(gram)
        self.lengths_by_first[gram[0]].add(len(gram))

    def find(self, text: str) -> tuple[str, ...] | None:
        toks = tokens(text)
        for i, tok in enumerate(toks):
            for length in self.lengths_by_first.get(tok, ()):
                gram = tuple(toks[i : i + length])
                if len(gram) == length and gram in self.grams:
                    return gram
        return None


def load_texts(path: Path) -> list[str]:
    """Eval texts from a file: JSONL (all string values of a row, one doc per row) or plain text lines."""
    if not path.is_file():
        raise DataError(f"decontamination file not found: {path}")
    docs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if path.suffix in (".jsonl", ".json") and line.startswith("{"):
                try:
                    docs.extend(_strings(json.loads(line)))
                    continue
                except json.JSONDecodeError:
                    pass
            docs.append(line)
    return docs


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def decontaminate(rows: list[Row], spec: DecontaminateSpec, ctx: OpContext) -> OpResult:
    against = ["eval"] if spec.against == "eval" else spec.against
    docs: list[str] = []
    for item in against:
        if item == "eval":
            docs.extend(ctx.eval_texts)
        else:
            p = Path(item).expanduser()
            docs.extend(load_texts(p if p.is_absolute() else ctx.base_dir / p))
    index = NgramIndex(docs, spec.ngram, spec.min_ngram)
    result = OpResult(kept=[])
    for row in rows:
        hit = index.find("\n".join(texts(row.data, ctx.kind, spec.field)))
        if hit is None:
            result.kept.append(row)
        else:
            shown = " ".join(hit)
            result.removed.append((row, "eval_overlap", f"{len(hit)}-gram from the eval set: {shown[:120]!r}"))
    result.details = {
        "eval_texts": len(docs),
        "eval_ngrams": len(index.grams),
        "eval_texts_too_short": index.skipped_short,
    }
    return result
