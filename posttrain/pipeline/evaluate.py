"""Evaluate a model with the recipe's lm-eval suite, once per (model, eval spec, task files)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.evaluation.harness import evaluate_spec, headline
from posttrain.evaluation.tasks import plan_tasks
from posttrain.failpoints import failpoint
from posttrain.fingerprint import fingerprint
from posttrain.launch.evaluation import EVAL_LAUNCH_DIR, evaluate_launched
from posttrain.recipe.schema import Recipe
from posttrain.run_layout import RunDir
from posttrain.rundir import read_json, write_json
from posttrain.stagekit.specs import EvalSpec

SAMPLES_DIR = "samples"
"""Per-document results, `samples/<task>.jsonl` beside eval.json."""


def eval_fingerprint(model_fingerprint: str, spec: EvalSpec) -> str:
    """The model, the eval settings and the content of every task and data file the tasks read."""
    digest = plan_tasks(spec.tasks, spec.include, num_fewshot=spec.num_fewshot).digest()
    # How many processes share the documents decides the speed, not the scores.
    settings = spec.model_dump(mode="json", exclude={"num_processes"})
    return fingerprint(model_fingerprint, settings, digest)


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
    return evaluate_folder(
        recipe.eval, folder, model_fingerprint, load_model, tokenizer=tokenizer, console=console, label=label,
        seed=recipe.seed,
    )


def evaluate_folder(
    spec: EvalSpec,
    folder: Path,
    model_fingerprint: str,
    load_model: Callable[[], Any],
    *,
    tokenizer: Any,
    console: Console,
    label: str,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Evaluate into `folder` (eval.json + samples/), unless it already holds this very evaluation."""
    eval_fp = eval_fingerprint(model_fingerprint, spec)
    cached = read_json(folder / RunDir.EVAL)
    if cached and cached.get("fingerprint") == eval_fp and (folder / SAMPLES_DIR).is_dir():
        return cached["scores"]

    console.print(f"[bold]eval[/] {label}: {', '.join(spec.task_labels)} (limit {spec.limit})")
    model = load_model()
    model.eval()
    shutil.rmtree(folder / SAMPLES_DIR, ignore_errors=True)
    if spec.num_processes > 1:
        results = evaluate_launched(
            model, tokenizer, spec, seed=seed, samples_dir=folder / SAMPLES_DIR, work_dir=folder / EVAL_LAUNCH_DIR,
            label=label, console=console,
        )
    else:
        results = evaluate_spec(model, tokenizer, spec, seed=seed, samples_dir=folder / SAMPLES_DIR)
    scores = headline(results)
    failpoint("evaluation")
    record = {
        "fingerprint": eval_fp, "label": label, "scores": scores, "stats": results["stats"],
        "samples": {task: f"{SAMPLES_DIR}/{task}.jsonl" for task in scores}, "results": results,
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."), **(extra or {}),
    }
    write_json(folder / RunDir.EVAL, record)
    return scores
