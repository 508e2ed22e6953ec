"""Evaluate a model with the recipe's lm-eval suite, once per (model, eval spec)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.evaluation.harness import evaluate_model, headline
from posttrain.failpoints import failpoint
from posttrain.fingerprint import fingerprint
from posttrain.recipe.schema import Recipe
from posttrain.rundir import read_json, write_json


def evaluate_cached(
    recipe: Recipe,
    folder: Path,
    model_fingerprint: str,
    load_model: Callable[[], Any],
    *,
    tokenizer: Any,
    console: Console,
    label: str,
) -> dict[str, float]:
    """Headline scores per task; `eval.json` in `folder` caches them under an eval fingerprint."""
    spec = recipe.eval
    eval_fp = fingerprint(model_fingerprint, spec.model_dump(mode="json"))
    cached = read_json(folder / "eval.json")
    if cached and cached.get("fingerprint") == eval_fp:
        return cached["scores"]

    console.print(f"[bold]eval[/] {label}: {', '.join(spec.tasks)} (limit {spec.limit})")
    model = load_model()
    model.eval()
    results = evaluate_model(
        model, tokenizer, tasks=spec.tasks, limit=spec.limit, batch_size=spec.batch_size, seed=recipe.seed
    )
    scores = headline(results)
    failpoint("evaluation")
    write_json(folder / "eval.json", {"fingerprint": eval_fp, "label": label, "scores": scores, "results": results})
    return scores
