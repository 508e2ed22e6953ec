"""`regex`: regex and keyword filters: drop rows whose text matches."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec, TextField
from data_prep.rows import Row, texts


class RegexSpec(StrictSpec):
    drop: list[str] = Field(default_factory=list, description="Drop rows where any of these regexes matches.")
    keywords: list[str] = Field(
        default_factory=list, description="Drop rows containing any of these whole words."
    )
    field: TextField = Field(default="all", description="Which text the patterns are matched against.")
    ignore_case: bool = Field(default=True, description="Case-insensitive matching.")

    @field_validator("drop")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regex {p!r}: {e}") from None
        return patterns


def regex_filter(rows: list[Row], spec: RegexSpec, ctx: OpContext) -> OpResult:
    flags = re.IGNORECASE if spec.ignore_case else 0
    patterns = [(re.compile(p, flags), "regex", f"matched /{p}/") for p in spec.drop]
    if spec.keywords:
        words = "|".join(re.escape(k) for k in spec.keywords)
        patterns.append((re.compile(rf"(?<!\w)(?:{words})(?!\w)", flags), "keyword", ""))
    result = OpResult(kept=[])
    for row in rows:
        text = "\n".join(texts(row.data, ctx.kind, spec.field))
        for pattern, reason, detail in patterns:
            m = pattern.search(text)
            if m:
                result.removed.append((row, reason, detail or f"keyword {m.group(0)!r}"))
                break
        else:
            result.kept.append(row)
    return result


OPERATOR = Operator(name="regex", spec=RegexSpec, apply=regex_filter, description="Regex / keyword filters.")
