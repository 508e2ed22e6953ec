"""`filter`: token-length filter, counted the way training counts: through the chat template."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from data_prep.errors import DataPrepError
from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec
from data_prep.rows import Row

_BATCH = 512


class TokenFilter(StrictSpec):
    min_tokens: int = Field(default=0, ge=0, description="Drop rows shorter than this many tokens.")
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Drop rows longer than this many tokens (as the chat template renders them).",
    )


def _conversations(data: dict[str, Any], kind: str) -> list[tuple[list[dict[str, str]], bool]]:
    """(messages, add_generation_prompt) pairs whose longest rendering is the row's length."""
    if kind == "chat":
        return [(data["messages"], False)]
    if kind == "preference":
        p = data["prompt"]
        return [
            ([*p, {"role": "assistant", "content": data["chosen"]}], False),
            ([*p, {"role": "assistant", "content": data["rejected"]}], False),
        ]
    if kind == "unpaired":
        return [([*data["prompt"], {"role": "assistant", "content": data["completion"]}], False)]
    return [(data["prompt"], True)]


def count_tokens(rows: list[dict[str, Any]], kind: str, tokenizer: Any) -> list[int]:
    """Tokens per row; a preference row counts its longer side."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    texts: list[str] = []
    owner: list[int] = []
    for i, data in enumerate(rows):
        for msgs, gen in _conversations(data, kind):
            if templated:
                texts.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen))
            else:
                texts.append("\n".join(m["content"] for m in msgs))
            owner.append(i)
    counts = [0] * len(rows)
    for start in range(0, len(texts), _BATCH):
        # The template already wrote BOS/EOS where the model wants them.
        ids = tokenizer(texts[start : start + _BATCH], add_special_tokens=not templated)["input_ids"]
        for j, seq in enumerate(ids, start=start):
            counts[owner[j]] = max(counts[owner[j]], len(seq))
    return counts


def token_filter(rows: list[Row], spec: TokenFilter, ctx: OpContext) -> OpResult:
    if ctx.tokenizer is None:
        raise DataPrepError(
            "a `filter: {min_tokens/max_tokens}` step needs the stage model's tokenizer, and none was given"
        )
    counts = count_tokens([r.data for r in rows], ctx.kind, ctx.tokenizer)
    result = OpResult(kept=[])
    for row, n in zip(rows, counts, strict=True):
        if spec.max_tokens is not None and n > spec.max_tokens:
            result.removed.append((row, "too_long", f"{n} tokens > max_tokens={spec.max_tokens}"))
        elif n < spec.min_tokens:
            result.removed.append((row, "too_short", f"{n} tokens < min_tokens={spec.min_tokens}"))
        else:
            result.kept.append(row)
    return result


OPERATOR = Operator(
    name="filter",
    spec=TokenFilter,
    apply=token_filter,
    description="Token-length filter using the stage model's tokenizer.",
    needs_tokenizer=True,
)
