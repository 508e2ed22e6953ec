"""Where the files that ship with posttrain live: recipes, eval tasks, bundled data.

In a source checkout (or an editable install) they are the repository's own
`recipes/`, `eval/tasks/` and `data/` folders. A wheel copies the same folders
into `posttrain/_bundled/`, keeping their relative layout, so a recipe's
`../data/...` paths resolve the same way in both.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE_DIR / "_bundled"
_REPO_ROOT = _PACKAGE_DIR.parent


def shipped_root() -> Path:
    """The folder that holds `recipes/`, `eval/tasks/` and `data/`."""
    if (_BUNDLED / "eval" / "tasks").is_dir():
        return _BUNDLED
    return _REPO_ROOT


def eval_tasks_dir() -> Path:
    """lm-eval task YAMLs (and their JSONL data) that ship with posttrain."""
    return shipped_root() / "eval" / "tasks"


def recipes_dir() -> Path:
    return shipped_root() / "recipes"


def data_dir() -> Path:
    return shipped_root() / "data"
