"""Checks that span several parts of a recipe: names that must refer to each other.

They run on the raw YAML tree, not on the validated model, so they still
report when other parts of the recipe fail validation: the user sees every
problem in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Which canonical dataset shape each stage type trains on.
STAGE_DATA_KINDS: dict[str, tuple[str, ...]] = {
    "sft": ("chat",),
    "dpo": ("preference",),
    "grpo": ("prompt",),
    "distill": ("chat", "prompt"),
}

Problem = tuple[tuple[str | int, ...], str]


def check_references(document: Any, *, base_dir: Path) -> list[Problem]:
    problems: list[Problem] = []
    datasets = document.get("datasets") or {}
    datasets = datasets if isinstance(datasets, dict) else {}
    stages = document.get("stages") or []
    if not isinstance(stages, list):
        return problems

    seen: list[str] = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        name = stage.get("name")
        if name in seen:
            problems.append((("stages", index, "name"), f"duplicate stage name {name!r}"))
        if name == "base":
            problems.append((("stages", index, "name"), "'base' is reserved for the base model"))

        after = stage.get("after")
        if after is not None and after != "base" and after not in seen:
            later = [s.get("name") for s in stages[index + 1 :] if isinstance(s, dict)]
            hint = "it comes later; stages run in list order" if after in later else f"known: {seen or 'none'}"
            problems.append((("stages", index, "after"), f"no earlier stage named {after!r} ({hint})"))

        data = stage.get("data")
        if data is not None:
            if data not in datasets:
                problems.append(
                    (("stages", index, "data"), f"no dataset named {data!r} (declared: {list(datasets) or 'none'})")
                )
            else:
                kind = (datasets[data] or {}).get("kind", "chat") if isinstance(datasets[data], dict) else None
                wanted = STAGE_DATA_KINDS.get(stage.get("type"))
                hint = ""
                if stage.get("type") == "dpo" and stage.get("on_policy"):
                    wanted = ("prompt",)  # pairs are sampled from prompts
                if stage.get("type") == "distill" and not stage.get("sequence_kd") and stage.get("lmbda", 0) != 1:
                    wanted = ("chat",)  # prompts alone have no answers: the teacher or the student must write them
                    hint = " (for prompts, set `sequence_kd: true` or `lmbda: 1`)"
                if kind and wanted and kind not in wanted:
                    problems.append(
                        (
                            ("stages", index, "data"),
                            f"a {stage.get('type')} stage trains on {' or '.join(wanted)} data; "
                            f"dataset {data!r} is kind {kind!r}{hint}",
                        )
                    )
        teacher = stage.get("teacher")
        if stage.get("type") == "distill" and isinstance(teacher, str) and teacher != "base" and teacher not in seen:
            later = [s.get("name") for s in stages[index + 1 :] if isinstance(s, dict)]
            problem = _teacher_problem(teacher, later, base_dir)
            if problem:
                problems.append((("stages", index, "teacher"), problem))
        if isinstance(name, str):
            seen.append(name)

    problems += _check_eval_tasks(document)
    problems += _check_source_files(datasets, base_dir)
    return problems


def _check_source_files(datasets: dict[str, Any], base_dir: Path) -> list[Problem]:
    """Local data files must exist now, not fail an hour into the run."""
    problems: list[Problem] = []
    for name, spec in datasets.items():
        sources = spec.get("sources") if isinstance(spec, dict) else None
        for index, source in enumerate(sources if isinstance(sources, list) else []):
            for key in ("path", "disk"):
                value = source.get(key) if isinstance(source, dict) else None
                if isinstance(value, str) and not (base_dir / Path(value).expanduser()).exists():
                    where = ("datasets", name, "sources", index, key)
                    problems.append((where, f"file not found: {value} (looked in {base_dir})"))
    return problems


def _teacher_problem(teacher: str, later: list[Any], base_dir: Path) -> str | None:
    """A distill teacher that is no earlier stage must be a model reference that resolves (typos caught here)."""
    if teacher in later:
        return f"teacher {teacher!r} is a later stage; stages run in list order"
    from posttrain.errors import UserError
    from posttrain.models.resolve import resolve_model

    try:
        resolve_model(teacher, base_dir=base_dir, convert=False)
    except UserError as exc:
        return f"teacher {teacher!r} is no earlier stage, and not a model: {exc}"
    return None


def _check_eval_tasks(document: Any) -> list[Problem]:
    eval_spec = document.get("eval") or {}
    tasks = eval_spec.get("tasks") if isinstance(eval_spec, dict) else None
    if not isinstance(tasks, list) or not tasks:
        return []
    from posttrain.evaluation.suite import available_tasks

    known = available_tasks()
    return [
        (("eval", "tasks", i), f"unknown eval task {task!r} (shipped: {', '.join(sorted(known))})")
        for i, task in enumerate(tasks)
        if isinstance(task, str) and task not in known
    ]
