"""Checks that span several parts of a recipe: names that must refer to each other.

They run on the raw YAML tree, not on the validated model, so they still
report when other parts of the recipe fail validation: the user sees every
problem in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Problem = tuple[tuple[str | int, ...], str]


def check_references(document: Any, *, base_dir: Path) -> list[Problem]:
    from posttrain.stages import STAGES

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
        kind_name = stage.get("type")
        stage_type = STAGES.get(kind_name) if isinstance(kind_name, str) else None
        if name in seen:
            problems.append((("stages", index, "name"), f"duplicate stage name {name!r}"))
        if name == "base":
            problems.append((("stages", index, "name"), "'base' is reserved for the base model"))

        after = stage.get("after")
        if isinstance(after, str) and after != "base" and after not in seen:
            later = [s.get("name") for s in stages[index + 1 :] if isinstance(s, dict)]
            hint = "it comes later; stages run in list order" if after in later else f"known: {seen or 'none'}"
            problems.append((("stages", index, "after"), f"no earlier stage named {after!r} ({hint})"))

        data = stage.get("data")
        if isinstance(data, str):  # another type is the schema's to report
            if data not in datasets:
                problems.append(
                    (("stages", index, "data"), f"no dataset named {data!r} (declared: {list(datasets) or 'none'})")
                )
            else:
                kind = (datasets[data] or {}).get("kind", "chat") if isinstance(datasets[data], dict) else None
                wanted, hint = stage_type.accepted_kinds(stage) if stage_type else ((), "")
                if kind and wanted and kind not in wanted:
                    problems.append(
                        (
                            ("stages", index, "data"),
                            f"a {kind_name} stage trains on {' or '.join(wanted)} data; "
                            f"dataset {data!r} is kind {kind!r}{hint}",
                        )
                    )
        for key in stage_type.model_inputs if stage_type else ():
            ref = stage.get(key)
            if isinstance(ref, str) and ref != "base" and ref not in seen:
                later = [s.get("name") for s in stages[index + 1 :] if isinstance(s, dict)]
                problem = _model_input_problem(key, ref, later, base_dir)
                if problem:
                    problems.append((("stages", index, key), problem))
        if isinstance(name, str):
            seen.append(name)

    problems += _check_eval_tasks(document, base_dir)
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
                if isinstance(value, str) and not _exists(base_dir / Path(value).expanduser()):
                    where = ("datasets", name, "sources", index, key)
                    problems.append((where, f"file not found: {value} (looked in {base_dir})"))
    return problems


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: no such file
        return False


def _model_input_problem(key: str, ref: str, later: list[Any], base_dir: Path) -> str | None:
    """A model input (a distill teacher) that is no earlier stage must be a model reference that resolves."""
    if ref in later:
        return f"{key} {ref!r} is a later stage; stages run in list order"
    from posttrain.errors import UserError
    from posttrain.models.resolve import resolve_model

    try:
        resolve_model(ref, base_dir=base_dir, convert=False)
    except UserError as exc:
        return f"{key} {ref!r} is no earlier stage, and not a model: {exc}"
    return None


def _check_eval_tasks(document: Any, base_dir: Path) -> list[Problem]:
    """Every eval task resolves (shipped suite, include folders, lm-eval's registry) and its data is at hand."""
    eval_spec = document.get("eval") or {}
    tasks = eval_spec.get("tasks") if isinstance(eval_spec, dict) else None
    if not isinstance(tasks, list) or not tasks:
        return []
    from posttrain.evaluation.tasks import check_task_entries

    return check_task_entries(
        tasks, eval_spec.get("include"), base_dir=base_dir, num_fewshot=eval_spec.get("num_fewshot")
    )
