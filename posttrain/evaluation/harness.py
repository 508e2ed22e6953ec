"""Score an in-memory model on the shipped lm-eval suite, in process.

A stage's model (a PeftModel included) is handed to lm-eval's HFLM directly,
so nothing is saved and reloaded. Decoding is greedy (the task YAMLs say so)
and seeds are fixed, so a model gets the same scores every time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.evaluation.suite import available_tasks, resolve_tasks, shipped_tasks
from posttrain.paths import eval_tasks_dir

__all__ = ["available_tasks", "evaluate_model", "headline"]

_NOISY_LOGGERS = ("lm_eval", "lm-eval", "transformers", "datasets", "peft", "accelerate")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Mute lm-eval's INFO/WARNING chatter (its tqdm bars stay as a progress sign)."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@lru_cache(maxsize=2)
def _task_manager(include_path: str) -> Any:
    # Only the shipped suite: indexing lm-eval's thousands of built-in task YAMLs costs tens of
    # seconds on a small CPU, and they need downloads we cannot do offline anyway.
    from lm_eval.tasks import TaskManager

    with _quiet():
        return TaskManager(include_path=include_path, include_defaults=False)


def _compact_metrics(raw: dict[str, Any]) -> dict[str, float | None]:
    """`{"exact_match,none": 0.5, "exact_match_stderr,none": 0.1}` -> `{"exact_match": 0.5, ...}`."""
    out: dict[str, float | None] = {}
    for key, value in raw.items():
        if "," not in key:  # "alias", "name", "sample_len": bookkeeping, not metrics
            continue
        metric = key.split(",", 1)[0]
        out[metric] = float(value) if isinstance(value, int | float) else None  # "N/A" stderr
    return out


def _write_samples(path: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for task, rows in samples.items():
            for s in rows:
                # arguments: [(context, gen_kwargs)] for generation, [(context, choice), ...] for choices
                args = [a for a in s.get("arguments", []) if isinstance(a, list | tuple) and a]
                record = {
                    "task": task,
                    "doc_id": s.get("doc_id"),
                    "prompt": args[0][0] if args else None,
                    "choices": [a[1] for a in args if isinstance(a[1], str)] or None,
                    "response": s.get("filtered_resps"),
                    "target": s.get("target"),
                    "metrics": {m: s.get(m) for m in s.get("metrics", [])},
                }
                f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def evaluate_model(
    model: Any,
    tokenizer: Any,
    *,
    tasks: list[str],
    limit: int | None,
    batch_size: int = 8,
    device: str | None = None,
    seed: int = 0,
    apply_chat_template: bool = True,
    log_samples_path: Path | None = None,
) -> dict[str, Any]:
    """Run the named tasks (or groups) and return a compact, JSON-able result.

    `limit` caps the documents per task (None = all). The model is evaluated on
    `device` (default: cuda when available, else cpu; moved there if it lives elsewhere) and is left in the train/eval
    mode it came in. Returns
    `{"tasks": {task: {metric: value, metric_stderr: value}}, "primary": {task: metric},
    "limit", "n_samples": {task: n}, "seconds", "lm_eval_version", "apply_chat_template", "seed"}`.
    """
    names = resolve_tasks(tasks)
    if device is None:
        from posttrain.models.loading import default_device

        device = default_device()
    if apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; evaluate with apply_chat_template=False")

    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if str(getattr(model, "device", device)) != device:
        model.to(device)
    was_training = bool(getattr(model, "training", False))
    start = time.perf_counter()
    try:
        with _quiet():
            # softmax in fp32: a bf16 model's log-likelihoods would otherwise carry ~3 significant digits.
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device, softmax_dtype="float32")
            out = simple_evaluate(
                model=lm,
                tasks=names,
                limit=limit,
                task_manager=_task_manager(str(eval_tasks_dir())),
                apply_chat_template=apply_chat_template,
                fewshot_as_multiturn=apply_chat_template,
                log_samples=log_samples_path is not None,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                bootstrap_iters=1000,  # means have a closed-form stderr; this only bounds other metrics
            )
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    if out is None:  # simple_evaluate returns None on non-zero ranks; we run single-process
        raise RuntimeError("lm-eval returned no results")

    if log_samples_path is not None:
        _write_samples(Path(log_samples_path), out.get("samples", {}))
    shipped = shipped_tasks()
    return {
        "tasks": {t: _compact_metrics(out["results"][t]) for t in names},
        "primary": {t: shipped[t].primary_metric for t in names},
        "limit": limit,
        "n_samples": {t: int(out["n-samples"][t]["effective"]) for t in names},
        "seconds": round(seconds, 2),
        "lm_eval_version": lm_eval.__version__,
        "apply_chat_template": apply_chat_template,
        "seed": seed,
    }


def headline(results: dict[str, Any]) -> dict[str, float]:
    """One primary score per task (pt_arith: strict exact match, pt_arith_mc: acc, pt_ifeval: constraint acc)."""
    primary = results.get("primary", {})
    shipped = shipped_tasks()
    scores: dict[str, float] = {}
    for task, metrics in results["tasks"].items():
        metric = primary.get(task) or (shipped[task].primary_metric if task in shipped else "")
        if not metric:  # a task without a declared primary: its first non-stderr metric
            metric = next(m for m in metrics if not m.endswith("_stderr"))
        value = metrics.get(metric)
        if value is not None:
            scores[task] = float(value)
    return scores
