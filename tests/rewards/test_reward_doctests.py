"""Every docstring example in rewards/ runs and holds."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["rewards._common", "rewards.math", "rewards.format", "rewards.instructions",
           "rewards.length", "rewards.code", "rewards._code_cases", "rewards.sandbox", "rewards.registry"]


@pytest.mark.parametrize("name", MODULES)
def test_reward_module_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring examples"


def test_reward_every_builtin_has_an_example():
    from rewards import BUILTIN_REWARDS

    for name, fn in BUILTIN_REWARDS.items():
        assert ">>>" in (fn.__doc__ or ""), f"{name} lacks a docstring example"
