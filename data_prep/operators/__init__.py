"""Curation operators: one module per family, dispatched on the step's model type."""

from __future__ import annotations

from data_prep.operators.base import OpContext, OpResult
from data_prep.rows import Row
from data_prep.spec import (
    DecontaminateStep,
    DedupStep,
    ExactDedup,
    FilterStep,
    PiiStep,
    QualityStep,
    RegexStep,
)

__all__ = ["OpContext", "OpResult", "run_step", "step_name"]


def step_name(step: object) -> str:
    if isinstance(step, DedupStep):
        return f"dedup.{step.dedup.method}"
    return str(getattr(step, "op", type(step).__name__))


def run_step(step: object, rows: list[Row], ctx: OpContext) -> OpResult:
    # Imports are local so that a recipe without minhash or a tokenizer filter
    # never pays for numpy / transformers imports.
    if isinstance(step, DedupStep):
        if isinstance(step.dedup, ExactDedup):
            from data_prep.operators.exact import exact_dedup

            return exact_dedup(rows, step.dedup, ctx)
        from data_prep.operators.minhash import minhash_dedup

        return minhash_dedup(rows, step.dedup, ctx)
    if isinstance(step, FilterStep):
        from data_prep.operators.length import token_filter

        return token_filter(rows, step.filter, ctx)
    if isinstance(step, QualityStep):
        from data_prep.operators.quality import quality_filter

        return quality_filter(rows, step.quality, ctx)
    if isinstance(step, RegexStep):
        from data_prep.operators.regex import regex_filter

        return regex_filter(rows, step.regex, ctx)
    if isinstance(step, PiiStep):
        from data_prep.operators.pii import pii_step

        return pii_step(rows, step.pii, ctx)
    if isinstance(step, DecontaminateStep):
        from data_prep.operators.decontaminate import decontaminate

        return decontaminate(rows, step.decontaminate, ctx)
    raise TypeError(f"unknown curate step {step!r}")
