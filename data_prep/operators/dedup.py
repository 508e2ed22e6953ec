"""`dedup`: remove duplicate rows, exactly (normalized-text hash) or near (MinHash + LSH).

The first row of each group of duplicates is kept. The near-duplicate search
itself lives in `data_prep/minhash.py` and is imported only when a step uses it (numpy).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import xxhash
from pydantic import Field

from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec, TextField
from data_prep.rows import Row, texts
from data_prep.text import normalize_text

_SEP = "\x1e"  # keeps ("ab", "c") and ("a", "bc") apart


class ExactDedup(StrictSpec):
    method: Literal["exact"] = Field(
        default="exact", description="Hash of the normalized text (case and whitespace folded)."
    )
    on: TextField = Field(
        default="all", description="Which text identifies a duplicate: the whole row, prompt or answer."
    )


class MinHashDedup(StrictSpec):
    method: Literal["minhash"] = Field(
        default="minhash", description="MinHash + LSH near-duplicate detection."
    )
    threshold: float = Field(
        default=0.8, gt=0, lt=1, description="Jaccard similarity above which rows are near-duplicates."
    )
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash signature length (permutations).")
    shingle: int = Field(default=3, ge=1, le=16, description="Word n-gram size of the shingles.")
    on: TextField = Field(
        default="all", description="Which text is compared: the whole row, prompt or answer."
    )


DedupSpec = Annotated[ExactDedup | MinHashDedup, Field(discriminator="method")]


def _expand_method(value: Any) -> Any:
    """`exact` / `minhash` / `{minhash: 0.85}` / `{minhash: {...}}` -> `{method: ..., ...}`."""
    if isinstance(value, str):
        return {"method": value}
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key in ("exact", "minhash"):
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return {"method": key, "threshold": inner}
            if isinstance(inner, dict):
                return {"method": key, **inner}
            if inner is None:
                return {"method": key}
    return value


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


def minhash_dedup(rows: list[Row], spec: MinHashDedup, ctx: OpContext) -> OpResult:
    from data_prep.minhash import lsh_params, near_duplicates

    docs = ["\n".join(texts(r.data, ctx.kind, spec.on)) for r in rows]
    drop = near_duplicates(docs, spec.threshold, spec.num_perm, spec.shingle, ctx.seed)
    result = OpResult(kept=[])
    for i, row in enumerate(rows):
        if i in drop:
            j, jac = drop[i]
            result.removed.append((row, "near_duplicate", f"Jaccard {jac:.2f} with {rows[j].where}"))
        else:
            result.kept.append(row)
    bands, r = lsh_params(spec.threshold, spec.num_perm)
    result.details = {"bands": bands, "rows_per_band": r}
    return result


def dedup(rows: list[Row], spec: ExactDedup | MinHashDedup, ctx: OpContext) -> OpResult:
    if isinstance(spec, ExactDedup):
        return exact_dedup(rows, spec, ctx)
    return minhash_dedup(rows, spec, ctx)


OPERATOR = Operator(
    name="dedup",
    spec=DedupSpec,
    apply=dedup,
    description="Duplicate removal: `exact`, `minhash`, `{minhash: 0.85}` or "
    "`{minhash: {threshold, num_perm, shingle}}`.",
    short_forms=_expand_method,
    label=lambda spec: f"dedup.{spec.method}",
)
