"""`decontaminate`: drop training rows that contain (most of) an eval text.

Texts are tokenized into words and single symbols ("12 + 7" and "12 - 7"
differ). Each eval text is cut into `ngram`-token windows; a training row is
contaminated by an eval text when it contains at least `min_overlap` of that
text's windows. A single shared 13-gram (the GPT-3 rule, `min_overlap: 0`)
is too eager for templated data: eval prompts and clean training prompts
share instruction tails ('... each friend get? End your reply with
"Answer: <number>".') that alone span many 13-grams. On the quickstart mix,
any-13-gram removed 733 of 1548 rows for 24 planted copies; coverage >= 0.8
removes exactly the 24.

Eval prompts are often shorter than `ngram` tokens, so a text with
`min_ngram <= len < ngram` tokens is one window of its own length, matched
anywhere in a row; shorter texts (a bare answer like "19") would match
everything and are skipped, and counted in the report.

Lookup cost: windows are indexed by their first token, so each training
token costs one dict lookup, and a tuple is built only where a window could start.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from data_prep.errors import DataPrepError
from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec, TextField
from data_prep.rows import Row, texts
from data_prep.text import tokens


class DecontaminateSpec(StrictSpec):
    against: Literal["eval"] | list[str] = Field(
        default="eval",
        description="`eval` (the recipe's eval suite texts) or a list of files (JSONL or text; `eval` may be listed too).",
    )
    ngram: int = Field(default=13, ge=3, le=64, description="Word n-gram length counted as overlap.")
    min_ngram: int = Field(
        default=6,
        ge=1,
        description="Eval texts shorter than `ngram` but at least this many tokens are matched whole.",
    )
    min_overlap: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of an eval text's n-grams a row must contain to count as contaminated "
        "(0: any single n-gram).",
    )
    field: TextField = Field(default="all", description="Which text of a training row is checked.")

    @property
    def sources(self) -> list[str]:
        """What the rows are checked against: `eval` and/or file paths."""
        return ["eval"] if self.against == "eval" else list(self.against)


class NgramIndex:
    def __init__(self, docs: list[str], n: int, min_n: int, min_overlap: float) -> None:
        self.docs = docs
        self.owners: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.need: dict[int, int] = {}
        self.total: dict[int, int] = {}
        self.lengths_by_first: dict[str, set[int]] = defaultdict(set)
        self.skipped_short = 0
        for doc_id, doc in enumerate(docs):
            toks = tokens(doc)
            if len(toks) >= n:
                grams = {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}
            elif len(toks) >= min_n:
                grams = {tuple(toks)}
            else:
                self.skipped_short += bool(toks)
                continue
            self.total[doc_id] = len(grams)
            self.need[doc_id] = max(1, math.ceil(min_overlap * len(grams)))
            for gram in grams:
                self.owners[gram].append(doc_id)
                self.lengths_by_first[gram[0]].add(len(gram))

    def find(self, text: str) -> tuple[int, int, int] | None:
        """(eval text id, its windows found, its windows) of the first eval text the row covers enough."""
        toks = tokens(text)
        found: dict[int, set[tuple[str, ...]]] = defaultdict(set)
        for i, tok in enumerate(toks):
            for length in self.lengths_by_first.get(tok, ()):
                gram = tuple(toks[i : i + length])
                for doc_id in self.owners.get(gram, ()):
                    found[doc_id].add(gram)
        for doc_id, grams in found.items():
            if len(grams) >= self.need[doc_id]:
                return doc_id, len(grams), self.total[doc_id]
        return None


def load_texts(path: Path) -> list[str]:
    """Eval texts from a file: JSONL (all string values of a row, one doc per row) or plain text lines."""
    if not path.is_file():
        raise DataPrepError(f"decontamination file not found: {path}")
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
    docs: list[str] = []
    for item in spec.sources:
        if item == "eval":
            docs.extend(ctx.eval_texts)
        else:
            p = Path(item).expanduser()
            docs.extend(load_texts(p if p.is_absolute() else ctx.base_dir / p))
    index = NgramIndex(docs, spec.ngram, spec.min_ngram, spec.min_overlap)
    result = OpResult(kept=[])
    for row in rows:
        hit = index.find("\n".join(texts(row.data, ctx.kind, spec.field)))
        if hit is None:
            result.kept.append(row)
        else:
            doc_id, found, total = hit
            detail = f"holds {found}/{total} of the {spec.ngram}-grams of eval text {docs[doc_id][:100]!r}"
            result.removed.append((row, "eval_overlap", detail))
    result.details = {
        "eval_texts": len(docs),
        "eval_ngrams": len(index.owners),
        "eval_texts_too_short": index.skipped_short,
    }
    if not docs:
        result.details["warning"] = "no eval texts to decontaminate against"
    return result


def _against(value: Any) -> Any:
    return {"against": value} if isinstance(value, (str, list)) else value


OPERATOR = Operator(
    name="decontaminate",
    spec=DecontaminateSpec,
    apply=decontaminate,
    description="Remove rows overlapping the eval suite (n-gram match).",
    short_forms=_against,
    reads_eval=lambda spec: "eval" in spec.sources,
    input_files=lambda spec: [p for p in spec.sources if p != "eval"],
)
