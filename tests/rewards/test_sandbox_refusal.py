"""Without OS isolation, code rewards refuse to run: never a silent downgrade to the weak mode."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import rewards.sandbox as sandbox
from rewards import resolve_reward
from rewards.code import code_exec
from rewards.sandbox import SandboxUnavailable, check_sandbox, run_python

REPLY = "```python\ndef square(x):\n    return x * x\n```"
TESTS = [["assert square(3) == 9"]]


@pytest.fixture
def fake_bwrap() -> Iterator[Path]:
    """A bubblewrap stand-in that fails the way a kernel without user namespaces makes it fail."""
    folder = Path(tempfile.mkdtemp(prefix="fake-bwrap-"))
    folder.chmod(0o755)  # the launcher runs it as nobody when the tests run as root
    script = folder / "bwrap"
    script.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    script.chmod(0o755)
    yield script
    shutil.rmtree(folder)


@pytest.mark.parametrize("setting", ["/nonexistent/bwrap", "namespaces_refused"])
def test_sandbox_refuses_without_isolation(monkeypatch, setting, fake_bwrap):
    monkeypatch.setenv("POSTTRAIN_BWRAP", str(fake_bwrap) if setting == "namespaces_refused" else setting)
    monkeypatch.delenv("POSTTRAIN_SANDBOX", raising=False)
    expected = "No permissions to create new namespace" if setting == "namespaces_refused" else "not an executable"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weak-mode warning here would mean a silent downgrade
        for attempt in (lambda: run_python("print(1)"), lambda: code_exec([REPLY], tests=TESTS), check_sandbox):
            with pytest.raises(SandboxUnavailable, match=expected) as info:
                attempt()
            message = str(info.value)
            assert "POSTTRAIN_SANDBOX=weak" in message and "allow_weak_sandbox=True" in message
            assert "bubblewrap" in message


def test_sandbox_refusal_reaches_recipe_validation(monkeypatch):
    # resolve_reward runs when a recipe is validated: a missing sandbox stops the run before training.
    monkeypatch.setenv("POSTTRAIN_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(ValueError, match=r"reward 'code_exec': code sandbox unavailable.*POSTTRAIN_SANDBOX=weak"):
        resolve_reward("code_exec")
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "weak")
    monkeypatch.setattr(sandbox, "_weak_warned", False)
    with pytest.warns(RuntimeWarning, match="WEAK mode"):
        assert resolve_reward("code_exec") is code_exec


def test_sandbox_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "off")
    with pytest.raises(SandboxUnavailable, match="POSTTRAIN_SANDBOX='off'"):
        run_python("print(1)")


@pytest.mark.filterwarnings("ignore:sandbox. running untrusted code in the WEAK mode")
def test_sandbox_weak_mode_only_by_explicit_opt_in(monkeypatch):
    monkeypatch.setenv("POSTTRAIN_BWRAP", "/nonexistent/bwrap")
    # the reward's own switch
    assert code_exec([REPLY], tests=TESTS, allow_weak_sandbox=True) == [1.0]
    result = run_python("print(1)", allow_weak=True)
    assert result.ok and "bwrap" not in result.layers and "hook" in result.layers
    # the environment switch, which wins even where bubblewrap works
    monkeypatch.delenv("POSTTRAIN_BWRAP")
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "weak")
    assert "bwrap" not in run_python("print(1)").layers
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "bwrap")
    assert "bwrap" in run_python("print(1)").layers


def test_sandbox_weak_mode_says_so(monkeypatch):
    monkeypatch.setattr(sandbox, "_weak_warned", False)
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "weak")
    with pytest.warns(RuntimeWarning, match="WEAK mode .*POSTTRAIN_SANDBOX=weak"):
        run_python("pass")
