"""Regex and keyword filters: drop rows whose text matches."""

from __future__ import annotations

import re

from data_prep.operators.base import OpContext, OpResult
from data_prep.rows import Row, texts
from data_prep.spec import RegexSpec


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
