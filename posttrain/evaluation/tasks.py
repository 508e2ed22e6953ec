"""Which lm-eval tasks an eval spec names, where lm-eval finds them, and what the leaderboard calls them.

A name is looked up, in order, in the shipped suite (eval/tasks, `arith` for
`pt_arith`), the recipe's `include` folders, then lm-eval's registry (see
registry.py; only reached for names found nowhere else). An entry with
`data_files` (or its own `num_fewshot`) becomes a small generated task YAML
that `include:`s the stock one and swaps the dataset for the local files, so
the stock prompt, filters and metrics run offline. lm-eval is then given only
the folders these tasks live in, never its whole built-in tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import UserError
from posttrain.evaluation import registry
from posttrain.evaluation.suite import scan_folder, shipped_groups, shipped_tasks
from posttrain.paths import eval_tasks_dir
from posttrain.stagekit.specs import EvalTask

Problem = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True)
class PlannedTask:
    column: str
    """The name on the leaderboard and in eval.json."""
    lm_name: str
    """The name lm-eval is asked for."""
    source: str
    """shipped, include, registry or local (a registry or include task on local data files)."""
    metric: str | None = None
    """The headline metric when declared (entry's `metric`, the shipped task's `primary_metric`)."""
    generated: str = ""
    """The generated task YAML of a `local` task (two entries with the same name must not share a column)."""


@dataclass
class TaskPlan:
    tasks: list[PlannedTask] = field(default_factory=list)
    include_paths: list[Path] = field(default_factory=list)
    """Folders lm-eval indexes (instead of its whole built-in tree)."""
    content: list[Path] = field(default_factory=list)
    """Task YAMLs and data files whose contents decide the scores (for the eval fingerprint)."""

    @property
    def lm_names(self) -> list[str]:
        return list(dict.fromkeys(t.lm_name for t in self.tasks))

    def digest(self) -> str:
        """A hash of every task file and data file the plan reads: an edited task or data file re-evaluates."""
        h = hashlib.sha256()
        for path in sorted(set(self.content)):
            h.update(str(path).encode())
            h.update(path.read_bytes() if path.is_file() else b"-")
        return h.hexdigest()[:16]


def _entry_of(raw: str | EvalTask | dict[str, Any]) -> EvalTask:
    if isinstance(raw, EvalTask):
        return raw
    return EvalTask(task=raw) if isinstance(raw, str) else EvalTask.model_validate(raw)


def plan_tasks(
    tasks: Sequence[str | EvalTask | dict[str, Any]],
    include: Sequence[str | Path] = (),
    *,
    num_fewshot: int | None = None,
) -> TaskPlan:
    """The plan for these entries; raises UserError listing every problem (unknown names, missing data)."""
    plan, problems = _plan([_entry_of(t) for t in tasks], [Path(p) for p in include], num_fewshot=num_fewshot)
    if problems:
        raise UserError("eval tasks: " + "; ".join(message for _, message in problems))
    if not plan.tasks:
        raise UserError("no eval task given")
    return plan


def check_task_entries(raw_tasks: list[Any], raw_include: Any, *, base_dir: Path, num_fewshot: Any) -> list[Problem]:
    """Recipe validation: every entry of `eval.tasks` resolves and its data is at hand, at its YAML path."""
    include = [base_dir / str(p) for p in raw_include] if isinstance(raw_include, list) else []
    problems: list[Problem] = [
        (("eval", "include", i), f"task folder not found: {p}") for i, p in enumerate(include) if not p.is_dir()
    ]
    entries: list[tuple[int, EvalTask]] = []
    for i, raw in enumerate(raw_tasks):
        try:
            entry = _entry_of(_with_base(raw, base_dir))
        except (ValueError, TypeError):
            continue  # a malformed entry: the schema reports it
        entries.append((i, entry))
    fewshot = num_fewshot if isinstance(num_fewshot, int) else None
    _, found = _plan([e for _, e in entries], [p for p in include if p.is_dir()], num_fewshot=fewshot)
    index_of = {id(e): i for i, e in entries}
    for entry_key, message in found:
        where: tuple[str | int, ...] = ("eval", "tasks", index_of[entry_key]) if entry_key in index_of else ("eval", "tasks")
        problems.append((where, message))
    return problems


def _with_base(raw: Any, base_dir: Path) -> Any:
    if isinstance(raw, dict) and raw.get("data_files") is not None:
        files = raw["data_files"]
        resolve = lambda p: str((base_dir / str(p)).resolve())  # noqa: E731
        files = resolve(files) if isinstance(files, str) else {k: resolve(v) for k, v in dict(files).items()}
        return {**raw, "data_files": files}
    return raw


def _plan(
    entries: list[EvalTask], include: list[Path], *, num_fewshot: int | None
) -> tuple[TaskPlan, list[tuple[Any, str]]]:
    """Resolve every entry; problems are keyed by `id(entry)` so validation can place them."""
    plan = TaskPlan()
    problems: list[tuple[Any, str]] = []
    shipped, groups = shipped_tasks(), shipped_groups()
    included: dict[str, Path] = {}
    for folder in include:
        found_tasks, found_groups = scan_folder(folder.resolve())
        included.update({name: info.yaml_path for name, info in found_tasks.items()})
        included.update(dict.fromkeys(found_groups, folder))
    uses_shipped = False

    for entry in entries:
        name = entry.task
        shipped_name = name if name in shipped or name in groups else f"pt_{name}"
        if entry.data_files is None and entry.num_fewshot is None and (
            shipped_name in shipped or shipped_name in groups
        ):
            uses_shipped = True
            members = groups.get(shipped_name, [shipped_name])
            for member in members:
                metric = entry.metric if len(members) == 1 and entry.metric else shipped[member].primary_metric
                plan.tasks.append(PlannedTask(member, member, "shipped", metric or None))
                plan.content += _files_of(shipped[member].yaml_path.parent)
            continue
        if name in included:
            stock, source = included[name], "include"
            if entry.data_files is None and entry.num_fewshot is None:
                plan.tasks.append(PlannedTask(entry.label, name, source, entry.metric))
                plan.include_paths += [p for p in include if p not in plan.include_paths]
                plan.content += [f for p in include for f in _files_of(p)]
                continue
        else:
            found = registry.lookup(name)
            if found is None:
                problems.append((id(entry), _unknown(name, included)))
                continue
            problem = _registry_problem(entry, found)
            if problem:
                problems.append((id(entry), problem))
                continue
            if entry.data_files is None and entry.num_fewshot is None:
                plan.tasks.append(PlannedTask(entry.label, name, "registry", entry.metric))
                plan.include_paths += [d for d in _registry_dirs(found) if d not in plan.include_paths]
                continue
            stock, source = Path(str(found.yaml_path)), "registry"
        wrapper, problem = _local_wrapper(entry, stock, num_fewshot=num_fewshot)
        if problem:
            problems.append((id(entry), problem))
            continue
        assert wrapper is not None
        plan.tasks.append(PlannedTask(entry.label, entry.label, "local", entry.metric, str(wrapper)))
        plan.include_paths.append(wrapper.parent)
        plan.content += [wrapper, *_data_paths(entry)]
        if source == "include":
            plan.include_paths += [p for p in include if p not in plan.include_paths]
    if uses_shipped:
        plan.include_paths.insert(0, eval_tasks_dir())
    plan.tasks = list(dict.fromkeys(plan.tasks))  # `posttrain` and `arith` both name pt_arith: run it once
    columns = [t.column for t in plan.tasks]
    for dup in sorted({c for c in columns if columns.count(c) > 1}):
        problems.append((None, f"eval task {dup!r} is listed twice; give one entry a `name`"))
    return plan, problems


def _files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in {".yaml", ".py", ".jsonl", ".json"})


def _data_paths(entry: EvalTask) -> list[Path]:
    files = entry.data_files
    return [Path(files)] if isinstance(files, str) else [Path(p) for p in (files or {}).values()]


def _unknown(name: str, included: dict[str, Path]) -> str:
    known = sorted(shipped_tasks()) + sorted(shipped_groups()) + sorted(included)
    close = registry.suggestions(name, known)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"unknown eval task {name!r}: not in the shipped suite ({', '.join(known)}), "
        f"the include folders, or lm-eval's registry{hint}"
    )


def _registry_problem(entry: EvalTask, found: registry.RegistryEntry) -> str | None:
    if entry.data_files is not None:
        if found.kind != "task":
            return f"eval task {entry.task!r} is an lm-eval {found.kind}; data_files needs a single task"
        missing = [p for p in _data_paths(entry) if not p.is_file()]
        return f"eval task {entry.task!r}: data file not found: {', '.join(map(str, missing))}" if missing else None
    leaves = _leaves(found)
    for leaf in leaves:
        problem = registry.dataset_problem(leaf)
        if problem:
            where = f" (in {entry.task!r})" if leaf.name != entry.task else ""
            return f"eval task {leaf.name!r}{where} {problem}"
    return None


def _leaves(found: registry.RegistryEntry, depth: int = 0) -> list[registry.RegistryEntry]:
    if found.kind == "task" or depth > 4:
        return [found]
    index = registry.registry_index()
    out: list[registry.RegistryEntry] = []
    for member in found.members:
        child = index.get(member)
        if child is not None:
            out += _leaves(child, depth + 1)
    return out


def _registry_dirs(found: registry.RegistryEntry) -> list[Path]:
    """The folders that hold `found` and its members: lm-eval indexes these, not its whole tree."""
    dirs: list[Path] = []
    stack = [found]
    index = registry.registry_index() if found.kind != "task" else {}
    seen: set[str] = set()
    while stack:
        entry = stack.pop()
        if entry.name in seen:
            continue
        seen.add(entry.name)
        if entry.yaml_path:
            folder = Path(entry.yaml_path).parent
            if not any(folder == d or d in folder.parents for d in dirs):
                dirs = [d for d in dirs if folder not in d.parents] + [folder]
        stack += [index[m] for m in entry.members if m in index]
    return dirs


def _local_wrapper(entry: EvalTask, stock: Path, *, num_fewshot: int | None) -> tuple[Path | None, str | None]:
    """A task YAML that includes the stock task and reads `entry.data_files`, written once into the cache."""
    cfg = registry.read_task_yaml(stock)
    config: dict[str, Any] = {"include": str(stock.resolve()), "task": entry.label}
    if entry.data_files is not None:
        split = cfg.get("test_split") or cfg.get("validation_split") or "test"
        given = {split: entry.data_files} if isinstance(entry.data_files, str) else dict(entry.data_files)
        files = {name: str(Path(path).resolve()) for name, path in given.items()}
        shots = entry.num_fewshot if entry.num_fewshot is not None else num_fewshot
        if shots is None:
            shots = cfg.get("num_fewshot") or 0
        fewshot_split = cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")
        has_fixed_shots = bool((cfg.get("fewshot_config") or {}).get("samples"))
        if shots and fewshot_split and fewshot_split not in files and not has_fixed_shots:
            return None, (
                f"eval task {entry.task!r} with {shots}-shot prompts draws examples from its {fewshot_split!r} "
                f"split: give data_files: {{{split}: ..., {fewshot_split}: ...}} or num_fewshot: 0"
            )
        config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
        for key in ("training_split", "validation_split", "fewshot_split"):
            if cfg.get(key) and cfg[key] not in files:  # a split the local copy lacks: lm-eval must not load it
                config[key] = None
    if entry.num_fewshot is not None:
        config["num_fewshot"] = entry.num_fewshot
    text = yaml.safe_dump(config, sort_keys=False)
    from posttrain.models.resolve import cache_root

    folder = cache_root() / "lm_eval" / "local-tasks" / hashlib.sha256(text.encode()).hexdigest()[:16]
    path = folder / f"{entry.label}.yaml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path, None
