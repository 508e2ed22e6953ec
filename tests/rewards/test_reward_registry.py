from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rewards
from rewards import BUILTIN_REWARDS, resolve_reward
from rewards.math import exact_number


def test_reward_resolve_builtins_and_modules():
    for name, fn in BUILTIN_REWARDS.items():
        assert resolve_reward(name) is fn
        assert resolve_reward(f"{fn.__module__}:{fn.__name__}") is fn
    assert resolve_reward("rewards.math:exact_number") is exact_number


def test_reward_resolve_file_relative_to_base_dir(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my_rewards.py").write_text(textwrap.dedent("""
        def shortness(completions, **kwargs):
            return [1.0 / (1 + len(c)) for c in completions]

        def bad_first(prompts, completions, **kwargs):
            return []

        def no_kwargs(completions):
            return []

        def positional_only(completions, /, **kwargs):
            return []

        NOT_A_FUNCTION = 3
    """))
    fn = resolve_reward("sub/my_rewards.py:shortness", base_dir=tmp_path)
    assert fn(["a", "abc"]) == [0.5, 0.25]
    assert resolve_reward(f"{tmp_path}/sub/my_rewards.py:shortness") is fn  # absolute path, same module

    with pytest.raises(ValueError, match="first parameter must be 'completions'"):
        resolve_reward("sub/my_rewards.py:bad_first", base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"\*\*kwargs"):
        resolve_reward("sub/my_rewards.py:no_kwargs", base_dir=tmp_path)
    with pytest.raises(ValueError, match="positional-only"):
        resolve_reward("sub/my_rewards.py:positional_only", base_dir=tmp_path)
    with pytest.raises(ValueError, match="not a function"):
        resolve_reward("sub/my_rewards.py:NOT_A_FUNCTION", base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"has no function 'nope'.*bad_first, no_kwargs, positional_only, shortness"):
        resolve_reward("sub/my_rewards.py:nope", base_dir=tmp_path)
    with pytest.raises(ValueError, match="file not found"):
        resolve_reward("missing.py:fn", base_dir=tmp_path)


def test_reward_resolve_file_that_fails_to_import(tmp_path):
    (tmp_path / "broken.py").write_text("raise ImportError('needs torch 9')\n")
    with pytest.raises(ValueError, match=r"executing .*broken\.py failed: ImportError: needs torch 9"):
        resolve_reward("broken.py:fn", base_dir=tmp_path)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("exact_numbr", "unknown built-in; known: answer_line, code_exec"),
        ("no_such_module_xyz:fn", "module not found"),
        ("rewards.math:nope", "has no function 'nope'; it has: exact_number"),
        ("rewards.math:", "expected 'module:function'"),
        (":fn", "expected 'module:function'"),
        ("", "expected 'module:function'"),
        ("rewards.sandbox:run_python", "first parameter must be 'completions'"),
    ],
)
def test_reward_resolve_errors_name_the_ref(ref, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_reward(ref)
    assert repr(ref.strip()) in str(info.value)


def test_reward_package_exports():
    assert set(rewards.__all__) >= {"resolve_reward", "BUILTIN_REWARDS", "completion_text"}


def test_rewards_never_import_posttrain():
    # rewards/ is a library the pipeline uses, never the other way round (issue 7): checked in the
    # source (also lazy imports inside functions) and in a fresh interpreter.
    package = Path(rewards.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "posttrain" for n in names), f"{path.name} imports {names}"
    code = ("import sys, rewards, rewards.code, rewards.sandbox, rewards.registry\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'posttrain'))")
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
