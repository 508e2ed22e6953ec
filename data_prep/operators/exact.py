"""Exact deduplication: the first row of each normalized-text hash is kept."""

from __future__ import annotations

import xxhash

from data_prep.operators.base import OpContext, OpResult
from data_prep.rows import Row, texts
from data_prep.spec import ExactDedup
from data_prep.text import normalize_text

_SEP = "\x1e"  # keeps ("ab", "c") and ("a", "bc") apart


def row_key(row: Row, kind: str, field: str) -> bytes:
    joined = _SEP.join(normalize_text(t) for t in texts(row.data, kind, field))
    return xxhash.xxh3_128_digest(joined.encode("utf-8"))


def exact_dedup(rows: list[Row], spec: ExactDedup, ctx: OpContext) -> OpResult:
    first: dict[bytes, Row] = {}
    result = OpResult(kept=[])
    for row in rows:
        key = row_key(row, ctx.kind, spec.on)
        seen = first.get(key)
        if seen is None:
            first[key] = row
            result.kept.append(row)
        else:
            result.removed.append((row, "exact_duplicate", f"same text as {seen.where}"))
    return result
