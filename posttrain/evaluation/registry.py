"""lm-eval's own task registry (gsm8k, arc_easy, mmlu, leaderboard, ...): where a name's YAML is, what data it needs.

lm-eval indexes its ~14,000 built-in task YAMLs when a `TaskManager` is built
with its defaults: close to a minute on a small CPU. posttrain pays that at most
once per lm-eval version: the names, their YAML files and the datasets they
read are kept in a small JSON file in the posttrain cache. Before even that, a
name is looked up where lm-eval usually keeps it (`tasks/<folder>/<name>.yaml`),
so the common stock tasks never need the index. Runs that only use the shipped
suite or the user's include folders never come here.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    kind: str
    """task, group or tag."""
    yaml_path: str | None
    dataset_path: str | None = None
    dataset_name: str | None = None
    members: tuple[str, ...] = ()
    """A group's tasks and subgroups, by name."""


def lm_eval_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")


def lm_eval_tasks_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lm-eval is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def read_task_yaml(path: Path | str) -> dict[str, Any]:
    """A task YAML with its `include:` chain merged in, `!function` helpers left unimported."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(path), resolve_func=False)


def _entry(
    name: str, kind: str, yaml_path: Path | None, cfg: dict[str, Any] | None, tagged: set[str] | None = None
) -> RegistryEntry:
    cfg = cfg or {}
    members: tuple[str, ...] = tuple(sorted(tagged or ())) if kind == "tag" else ()
    if kind == "group":
        raw = cfg.get("task") or []
        members = tuple(m if isinstance(m, str) else str(m.get("task", "")) for m in raw if m)
    dataset_path = cfg.get("dataset_path")
    dataset_name = cfg.get("dataset_name")
    return RegistryEntry(
        name=name,
        kind=kind,
        yaml_path=str(yaml_path) if yaml_path else None,
        dataset_path=str(dataset_path) if dataset_path else None,
        dataset_name=str(dataset_name) if dataset_name else None,
        members=members,
    )


def quick_lookup(name: str) -> RegistryEntry | None:
    """The stock task `name` if its YAML sits at lm-eval's usual `tasks/<folder>/<name>.yaml`, else None."""
    if not _can_be_file_stem(name):  # not a file name (too long for the OS, a path, a glob): the index decides
        return None
    root = lm_eval_tasks_dir()
    for path in sorted(root.glob(f"*/{name}.yaml")):
        try:
            cfg = read_task_yaml(path)
        except Exception:  # a broken or exotic YAML: let the full index decide
            continue
        if cfg.get("task") == name and "class" not in cfg:
            return _entry(name, "task", path, cfg)
    return None


def _can_be_file_stem(name: str) -> bool:
    return 0 < len(name.encode("utf-8", "surrogatepass")) <= 200 and not any(c in name for c in "/\\\0*?[]")


def _index_file() -> Path:
    from posttrain.models.resolve import cache_root

    return cache_root() / "lm_eval" / f"task-index-{lm_eval_version()}.json"


def _build_index() -> dict[str, RegistryEntry]:
    from lm_eval.tasks import TaskManager

    from posttrain.evaluation.quiet import quiet

    with quiet():
        manager = TaskManager()
    kinds = {"TASK": "task", "PY_TASK": "task", "GROUP": "group", "TAG": "tag"}
    return {
        name: _entry(name, kinds.get(e.kind.name, "task"), e.yaml_path, e.cfg, e.tags)
        for name, e in manager.task_index.items()
    }


@lru_cache(maxsize=1)
def registry_index() -> dict[str, RegistryEntry]:
    """Every name lm-eval knows, read from the posttrain cache (built once per lm-eval version)."""
    path = _index_file()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {name: RegistryEntry(name=name, **{**v, "members": tuple(v["members"])}) for name, v in raw.items()}
    except (FileNotFoundError, json.JSONDecodeError, TypeError, KeyError):
        pass
    index = _build_index()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    data = {n: {k: v for k, v in e.__dict__.items() if k != "name"} for n, e in index.items()}
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
    return index


def lookup(name: str) -> RegistryEntry | None:
    """The registry entry for `name`: the quick look first, the cached full index only when that fails."""
    return quick_lookup(name) or registry_index().get(name)


def suggestions(name: str, known: list[str], *, limit: int = 3) -> list[str]:
    """Close names for a did-you-mean, from `known` and lm-eval's registry."""
    pool = set(known) | set(registry_index())
    return difflib.get_close_matches(name, sorted(pool), n=limit, cutoff=0.6)


def dataset_problem(entry: RegistryEntry) -> str | None:
    """Why `entry`'s data cannot be had offline, or None when it can (or when online).

    Only a hub dataset matters: one whose files are local (`json` with data
    files, a local path) or built in Python is always available. Offline
    (HF_DATASETS_OFFLINE or HF_HUB_OFFLINE), a hub dataset is available when
    it is in the datasets cache or the hub cache.
    """
    if entry.kind != "task" or not entry.dataset_path:
        return None
    if not _offline() or _is_local(entry.dataset_path) or _in_hf_cache(entry.dataset_path):
        return None
    needed = entry.dataset_path + (f" (config {entry.dataset_name!r})" if entry.dataset_name else "")
    return (
        f"needs the hub dataset {needed}, which is not in the local Hugging Face cache and the hub is "
        f"offline (HF_DATASETS_OFFLINE=1); point the task at a local copy: "
        f"{{task: {entry.name}, data_files: path/to/test.jsonl}}"
    )


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas"}


def _is_local(dataset_path: str) -> bool:
    return dataset_path in _LOCAL_BUILDERS or Path(dataset_path).expanduser().exists()


def _in_hf_cache(dataset_path: str) -> bool:
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", hf_home / "datasets")).expanduser()
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE", hf_home / "hub")))
    return (datasets_cache / dataset_path.replace("/", "___")).exists() or (
        Path(hub_cache).expanduser() / f"datasets--{dataset_path.replace('/', '--')}"
    ).exists()
