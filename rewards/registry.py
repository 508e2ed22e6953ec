"""Turn a recipe's reward reference into a function, checked before training starts.

A reference is one of:

- a built-in short name: ``exact_number`` (see :data:`BUILTIN_REWARDS`);
- ``package.module:function``, imported like any module;
- ``path/to/file.py:function``, relative to ``base_dir`` (the recipe's folder).

Every failure is a ``ValueError`` naming the reference and what is wrong.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rewards.code import code_exec
from rewards.format import answer_line, matches_pattern
from rewards.instructions import follows_constraints
from rewards.length import length_penalty
from rewards.math import exact_number, math_equivalent

__all__ = ["BUILTIN_REWARDS", "check_reward_signature", "resolve_reward"]

RewardFn = Callable[..., list[float]]

# The one name -> function map; recipes may use these names bare.
BUILTIN_REWARDS: dict[str, RewardFn] = {
    "exact_number": exact_number,
    "math_equivalent": math_equivalent,
    "answer_line": answer_line,
    "matches_pattern": matches_pattern,
    "follows_constraints": follows_constraints,
    "length_penalty": length_penalty,
    "code_exec": code_exec,
}


def resolve_reward(ref: str, *, base_dir: Path | None = None) -> RewardFn:
    """The reward function that ``ref`` names, with its signature checked.

    >>> resolve_reward("rewards.math:exact_number").__name__
    'exact_number'
    >>> resolve_reward("exact_number") is BUILTIN_REWARDS["exact_number"]
    True
    >>> resolve_reward("rewards.math:nope")
    Traceback (most recent call last):
    ...
    ValueError: reward 'rewards.math:nope': module 'rewards.math' has no function 'nope'; it has: exact_number, extract_number, math_equivalent, parse_number
    """
    fn = _resolve(ref, base_dir)
    # A reward that needs something of the machine (code_exec: an OS sandbox) checks it now, so that a
    # recipe fails at validation rather than in the middle of training.
    preflight = getattr(fn, "preflight", None)
    if callable(preflight):
        try:
            preflight()
        except Exception as exc:
            raise ValueError(f"reward {ref!r}: {exc}") from None
    return fn


def _resolve(ref: str, base_dir: Path | None) -> RewardFn:
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"reward {ref!r}: expected 'module:function', 'file.py:function' or a built-in name")
    ref = ref.strip()
    if ":" not in ref:
        if ref in BUILTIN_REWARDS:
            return BUILTIN_REWARDS[ref]
        raise ValueError(f"reward {ref!r}: unknown built-in; known: {', '.join(sorted(BUILTIN_REWARDS))} "
                         "(or write 'module:function' / 'file.py:function')")
    target, _, name = ref.rpartition(":")
    if not target or not name.isidentifier():
        raise ValueError(f"reward {ref!r}: expected 'module:function' or 'file.py:function'")
    module = _load_file(ref, target, base_dir) if target.endswith(".py") else _import(ref, target)
    if not hasattr(module, name):
        raise ValueError(f"reward {ref!r}: module {target!r} has no function {name!r}; "
                         f"it has: {', '.join(_public_functions(module)) or 'no public functions'}")
    fn = getattr(module, name)
    if not callable(fn):
        raise ValueError(f"reward {ref!r}: {name!r} is a {type(fn).__name__}, not a function")
    check_reward_signature(fn, ref)
    return fn


def check_reward_signature(fn: Callable, ref: str) -> None:
    """Raise ``ValueError`` unless ``fn`` can be called the way GRPO calls rewards.

    TRL calls ``fn(prompts=..., completions=..., completion_ids=..., **columns)``,
    so ``completions`` must be the first parameter and ``**kwargs`` must soak
    up whatever the trainer and the dataset add.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ValueError(f"reward {ref!r}: cannot read the signature of {fn!r}") from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].name != "completions" or params[0].kind not in positional:
        got = f"({', '.join(str(p) for p in params)})"
        raise ValueError(f"reward {ref!r}: first parameter must be 'completions' (positional), "
                         f"signature is {got}")
    if params[0].kind is inspect.Parameter.POSITIONAL_ONLY:
        raise ValueError(f"reward {ref!r}: 'completions' must not be positional-only; the trainer passes it by name")
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise ValueError(f"reward {ref!r}: must accept **kwargs (the trainer also passes prompts, "
                         "completion_ids and every dataset column)")


def _import(ref: str, target: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ValueError(f"reward {ref!r}: module not found ({exc})") from None
    except Exception as exc:
        raise ValueError(f"reward {ref!r}: importing {target!r} failed: {type(exc).__name__}: {exc}") from None


def _load_file(ref: str, target: str, base_dir: Path | None) -> ModuleType:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"reward {ref!r}: file not found: {path}")
    # One module per file path, so two recipes' rewards.py never collide.
    mod_name = f"_posttrain_reward_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"reward {ref!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # registered first so pickling (multiprocess data loaders) finds it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise ValueError(f"reward {ref!r}: executing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _public_functions(module: ModuleType) -> list[str]:
    return sorted(n for n, v in vars(module).items()
                  if not n.startswith("_") and inspect.isfunction(v)
                  and getattr(v, "__module__", None) == module.__name__)
