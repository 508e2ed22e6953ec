"""What the shipped lm-eval suite (eval/tasks/) contains, read from its YAML files.

Reading the YAML directly is quick and needs no lm-eval task index (which also
walks every built-in lm-eval task). Each task's YAML declares, under
`metadata`, its `data_file` (JSONL next to the YAML) and its `primary_metric`,
so the data location and the headline metric are written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import UserError
from posttrain.paths import eval_tasks_dir

# Answer texts shorter than this are bare numbers or letters: useless for overlap search.
_MIN_ANSWER_WORDS = 3


@dataclass(frozen=True)
class TaskInfo:
    name: str
    yaml_path: Path
    primary_metric: str
    data_file: Path


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads lm-eval YAML without importing the `!function` helpers it references."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _read_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_TaskYamlLoader) or {}


@lru_cache(maxsize=8)
def scan_folder(root: Path) -> tuple[dict[str, TaskInfo], dict[str, list[str]]]:
    """Task and group names declared by the YAML files under `root` (read directly, no lm-eval index)."""
    tasks: dict[str, TaskInfo] = {}
    groups: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        cfg = _read_yaml(path)
        if "group" in cfg:
            groups[str(cfg["group"])] = [str(t) for t in cfg.get("task", [])]
        elif "task" in cfg:
            meta = cfg.get("metadata") or {}
            tasks[str(cfg["task"])] = TaskInfo(
                name=str(cfg["task"]),
                yaml_path=path,
                primary_metric=str(meta.get("primary_metric", "")),
                data_file=path.parent / str(meta.get("data_file", "")),
            )
    return tasks, groups


def shipped_tasks() -> dict[str, TaskInfo]:
    return dict(scan_folder(eval_tasks_dir())[0])


def shipped_groups() -> dict[str, list[str]]:
    return dict(scan_folder(eval_tasks_dir())[1])


def available_tasks() -> list[str]:
    """Task and group names the shipped suite answers to."""
    return sorted(shipped_tasks()) + sorted(shipped_groups())


def resolve_tasks(names: list[str]) -> list[str]:
    """Task names, groups expanded, order kept, duplicates dropped.

    A name without the suite's `pt_` prefix is accepted too (`arith` means
    `pt_arith`). Raises UserError naming every unknown entry and what exists.
    """
    tasks, groups = shipped_tasks(), shipped_groups()
    out: list[str] = []
    unknown: list[str] = []
    for raw in names:
        name = raw if raw in tasks or raw in groups else f"pt_{raw}"
        members = groups.get(name, [name] if name in tasks else [])
        if not members:
            unknown.append(raw)
        out += [m for m in members if m not in out]
    if unknown:
        raise UserError(
            f"unknown eval task(s): {', '.join(unknown)}; available: {', '.join(available_tasks())}"
        )
    if not out:
        raise UserError(f"no eval task given; available: {', '.join(available_tasks())}")
    return out


def read_docs(task: str) -> list[dict[str, Any]]:
    info = shipped_tasks()[task]
    with info.data_file.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def task_documents(task_names: list[str] | None = None) -> list[str]:
    """Prompt and answer texts of the shipped eval sets, for decontaminating training data.

    Each prompt appears once, in full, as the model sees it (user message). Answers
    are included only when they are real text (≥ 3 words); the arithmetic tasks'
    answers are bare numbers and would match everything.
    """
    names = resolve_tasks(task_names) if task_names is not None else sorted(shipped_tasks())
    texts: list[str] = []
    seen: set[str] = set()
    for name in names:
        for doc in read_docs(name):
            candidates = [doc.get("prompt"), doc.get("answer")]
            for text in candidates:
                if not isinstance(text, str) or text in seen:
                    continue
                if text is doc.get("answer") and len(text.split()) < _MIN_ANSWER_WORDS:
                    continue
                seen.add(text)
                texts.append(text)
    return texts
