"""Score an in-memory model on lm-eval tasks, in process, with every score's uncertainty.

A stage's model (a PeftModel included) is handed to lm-eval's HFLM directly,
so nothing is saved and reloaded. Decoding is greedy unless a task says
otherwise, and seeds are fixed, so a model gets the same scores every time,
and the same scores plain `lm_eval --model hf` gives on the saved model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.evaluation.quiet import quiet
from posttrain.evaluation.samples import chance_level, document_rows, per_doc_values, write_rows
from posttrain.evaluation.stats import task_stats
from posttrain.evaluation.suite import available_tasks
from posttrain.evaluation.tasks import TaskPlan, plan_tasks
from posttrain.stagekit.specs import EvalSpec, EvalTask

__all__ = ["available_tasks", "evaluate_lm", "evaluate_model", "evaluate_spec", "headline"]


@lru_cache(maxsize=4)
def _task_manager(include_paths: tuple[str, ...]) -> Any:
    # Only the folders the plan needs: indexing lm-eval's ~14,000 built-in task YAMLs costs close to a
    # minute on a small CPU (see tasks.py / registry.py).
    from lm_eval.tasks import TaskManager

    with quiet():
        return TaskManager(include_path=list(include_paths), include_defaults=False)


def compact_metrics(raw: dict[str, Any]) -> dict[str, float | None]:
    """`{"acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict-match": 0}` ->
    `{"acc": 0.5, "acc_stderr": 0.1, "exact_match,strict-match": 0.0}`."""
    out: dict[str, float | None] = {}
    for key, value in raw.items():
        if "," not in key:  # "alias", "name", "sample_len": bookkeeping, not metrics
            continue
        metric, filter_name = key.split(",", 1)
        name = metric if filter_name == "none" else key
        out[name] = float(value) if isinstance(value, int | float) else None  # "N/A" stderr
    return out


def stderr_key(metric: str) -> str:
    name, _, filter_name = metric.partition(",")
    return f"{name}_stderr" + (f",{filter_name}" if filter_name else "")


def pick_metric(metrics: dict[str, float | None], wanted: str | None) -> str:
    """The headline metric: `wanted` (with or without its `,filter`), else the task's first metric."""
    names = [m for m in metrics if "_stderr" not in m]
    if wanted:
        for name in names:
            if name == wanted or name.split(",", 1)[0] == wanted:
                return name
        raise UserError(f"metric {wanted!r} is not reported by the task (it reports: {', '.join(names)})")
    if not names:
        raise RuntimeError("lm-eval reported no metric")
    return names[0]


def evaluate_spec(model: Any, tokenizer: Any, spec: EvalSpec, *, seed: int, samples_dir: Path | None = None,
                  device: str | None = None, accelerator: Any = None) -> dict[str, Any] | None:
    """`evaluate_model` with everything a recipe's `eval` section says."""
    return evaluate_model(
        model, tokenizer, tasks=spec.tasks, include=spec.include, limit=spec.limit, num_fewshot=spec.num_fewshot,
        gen_kwargs=spec.gen_kwargs, batch_size=spec.batch_size, seed=seed, samples_dir=samples_dir, device=device,
        accelerator=accelerator,
    )


def evaluate_model(
    model: Any,
    tokenizer: Any,
    *,
    tasks: Sequence[str | EvalTask],
    limit: int | None,
    include: Sequence[str | Path] = (),
    num_fewshot: int | None = None,
    gen_kwargs: dict[str, Any] | None = None,
    batch_size: int = 8,
    device: str | None = None,
    seed: int = 0,
    apply_chat_template: bool = True,
    samples_dir: Path | None = None,
    accelerator: Any = None,
) -> dict[str, Any] | None:
    """Run the named tasks (or groups) and return a compact, JSON-able result.

    `limit` caps the documents per task (None = all). The model is evaluated on
    `device` (default: cuda when available, else cpu) and is left in the
    train/eval mode it came in. With `samples_dir`, each task's per-document
    results go to `samples_dir/<task>.jsonl` (see samples.py). Returns
    `{"tasks": {task: {metric: value, metric_stderr: value}}, "primary": {task: metric},
    "stats": {task: TaskStats as JSON}, "output_type": {task: str}, "limit", "n_samples": {task: n},
    "num_fewshot", "gen_kwargs", "seconds", "lm_eval_version", "apply_chat_template", "seed"}`.

    With an `accelerator` of several processes (every rank calls this with
    the same arguments), each rank evaluates its share of the documents and
    rank 0 returns the result for all of them; the other ranks return None.
    """
    plan = plan_tasks(list(tasks), include, num_fewshot=num_fewshot)
    if device is None:
        from posttrain.models.loading import default_device

        device = default_device()
    if apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError("the tokenizer has no chat template; evaluate with apply_chat_template=False")

    from lm_eval.models.huggingface import HFLM

    from posttrain.evaluation.sharded import ShardedHFLM

    if str(getattr(model, "device", device)) != device:
        model.to(device)
    was_training = bool(getattr(model, "training", False))
    try:
        with quiet():
            # softmax in fp32: a bf16 model's log-likelihoods would otherwise carry ~3 significant digits.
            settings = dict(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
                            softmax_dtype="float32")
            lm = ShardedHFLM(accelerator=accelerator, **settings) if accelerator is not None else HFLM(**settings)
        result = evaluate_lm(lm, plan, limit=limit, num_fewshot=num_fewshot, gen_kwargs=gen_kwargs, seed=seed,
                             apply_chat_template=apply_chat_template, samples_dir=samples_dir,
                             gathered=accelerator is None or accelerator.process_index == 0)
    finally:
        model.train(was_training)
    return result


def evaluate_lm(
    lm: Any,
    plan: TaskPlan,
    *,
    limit: int | None,
    num_fewshot: int | None,
    gen_kwargs: dict[str, Any] | None,
    seed: int,
    apply_chat_template: bool,
    samples_dir: Path | None,
    gathered: bool = True,
    chat_template: str | None = None,
) -> dict[str, Any] | None:
    """Run lm-eval's `simple_evaluate` on any lm-eval model object (HFLM, an API model of a serving engine) with
    the settings every evaluation of posttrain uses, and summarize it (see `evaluate_model`). `gathered`: False on
    the ranks of a data-parallel evaluation that hand their documents to rank 0 (they return None).
    `chat_template`: the template the model is prompted with, for the protocol (default: the lm's tokenizer's;
    a served model's engine renders its own, checked equal to the tokenizer's by the artifact's parity check)."""
    import lm_eval
    from lm_eval import simple_evaluate

    start = time.perf_counter()
    with quiet():
        out = simple_evaluate(
            model=lm,
            tasks=plan.lm_names,
            limit=limit,
            num_fewshot=num_fewshot,
            gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
            task_manager=_task_manager(tuple(str(p) for p in plan.include_paths)),
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=apply_chat_template,
            log_samples=True,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            bootstrap_iters=1000,  # means have a closed-form stderr; this only bounds other metrics
        )
    seconds = time.perf_counter() - start
    if not gathered:
        return None  # rank 0 gathered this rank's documents
    if out is None:
        raise RuntimeError("lm-eval returned no results")
    result = _summarize(plan, out, samples_dir)
    if chat_template is None:
        chat_template = getattr(getattr(lm, "tokenizer", None), "chat_template", None)
    result["protocol"] = protocols(
        plan, out, limit=limit, seed=seed, apply_chat_template=apply_chat_template, chat_template=chat_template,
        lm_eval_version=lm_eval.__version__,
    )
    result.update(
        limit=limit, num_fewshot=num_fewshot, gen_kwargs=gen_kwargs, seconds=round(seconds, 2),
        lm_eval_version=lm_eval.__version__, apply_chat_template=apply_chat_template, seed=seed,
        task_digest=plan.digest(),
    )
    return result


def protocols(plan: TaskPlan, out: dict[str, Any], *, limit: int | None, seed: int, apply_chat_template: bool,
              chat_template: str | None, lm_eval_version: str) -> dict[str, dict[str, Any]]:
    """Per task column, everything besides the model that decides its score: the task as lm-eval ran it (its
    resolved config, hashed, data files by content), shots, documents, chat template on/off and its hash,
    generation settings, answer filters, metric, lm-eval version, seed. Two scores compare only under equal ones."""
    result: dict[str, dict[str, Any]] = {}
    for column, lm_name, wanted in _columns(plan, out):
        configs = [out["configs"].get(leaf, {}) for leaf in _leaves(lm_name, out)]
        first = configs[0] if configs else {}
        result[column] = {
            "task_hash": _digest([_content_only(c) for c in configs]),
            "num_fewshot": first.get("num_fewshot"),
            "limit": limit,
            "apply_chat_template": apply_chat_template,
            "chat_template_hash": _digest(chat_template) if apply_chat_template and chat_template else None,
            "generation_kwargs": first.get("generation_kwargs"),
            "filters": [f.get("name") for f in first.get("filter_list") or [] if isinstance(f, dict)],
            "metric": pick_metric(compact_metrics(out["results"][lm_name]), wanted),
            "lm_eval_version": lm_eval_version,
            "seed": seed,
        }
    return result


def _content_only(value: Any) -> Any:
    """A task config with its data files named by content, so one task on one file hashes alike wherever it sits."""
    if isinstance(value, dict):
        return {k: _content_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_content_only(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path = Path(value)
        if path.is_file():
            return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return "path:" + path.name
    return value if isinstance(value, (int, float, bool, type(None), str)) else str(value)


def _digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _leaves(name: str, out: dict[str, Any]) -> list[str]:
    subtasks = out.get("group_subtasks", {})
    if name not in subtasks:
        return [name]
    return [leaf for member in subtasks[name] for leaf in _leaves(member, out)]


def _columns(plan: TaskPlan, out: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(column, lm-eval name, wanted metric): a group with its own aggregate is one column, else its leaves."""
    columns: list[tuple[str, str, str | None]] = []
    for task in plan.tasks:
        metrics = compact_metrics(out["results"].get(task.lm_name, {}))
        if task.lm_name in out.get("group_subtasks", {}) and not metrics:
            columns += [(leaf, leaf, None) for leaf in _leaves(task.lm_name, out)]
        else:
            columns.append((task.column, task.lm_name, task.metric))
    return columns


def _summarize(plan: TaskPlan, out: dict[str, Any], samples_dir: Path | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"tasks": {}, "primary": {}, "stats": {}, "output_type": {}, "n_samples": {}}
    for column, lm_name, wanted in _columns(plan, out):
        metrics = compact_metrics(out["results"][lm_name])
        metric = pick_metric(metrics, wanted)
        leaves = _leaves(lm_name, out)
        output_type = str(out["configs"][leaves[0]].get("output_type", ""))
        rows = [r for leaf in leaves for r in document_rows(leaf, out["samples"].get(leaf, []), output_type)]
        if samples_dir is not None:
            write_rows(Path(samples_dir) / f"{column}.jsonl", rows)
        values = per_doc_values(rows, metric)
        n = sum(int(out["n-samples"][leaf]["effective"]) for leaf in leaves if leaf in out["n-samples"])
        note = None if values is not None else (
            f"{metric} is computed over the whole corpus, not per document: no standard error from documents "
            "and no paired significance test for its deltas"
        )
        stats = task_stats(
            metric, float(metrics[metric] or 0.0), list(values.values()) if values else None,
            reported_stderr=metrics.get(stderr_key(metric)), n=n or len(rows),
            chance=chance_level(rows, output_type), note=note,
        )
        summary["tasks"][column] = metrics
        summary["primary"][column] = metric
        summary["stats"][column] = stats.to_json()
        summary["output_type"][column] = output_type
        summary["n_samples"][column] = n
    return summary


def headline(results: dict[str, Any]) -> dict[str, float]:
    """One primary score per task (pt_arith: strict exact match, pt_arith_mc: acc, gsm8k: exact_match,strict-match)."""
    scores: dict[str, float] = {}
    for task, metrics in results["tasks"].items():
        metric = results.get("primary", {}).get(task) or pick_metric(metrics, None)
        value = metrics.get(metric)
        if value is not None:
            scores[task] = float(value)
    return scores
