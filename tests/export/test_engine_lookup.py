"""A missing engine skips the engine tests on a laptop but fails them in CI, saying how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_missing_engine_fails_in_ci_with_the_setup_command(engine_python, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"run scripts/setup_engines\.sh"):
        engine_python("vllm")


def test_missing_engine_skips_outside_ci(engine_python, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("POSTTRAIN_REQUIRE_ENGINES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="llama-cpp engine is not installed"):
        engine_python("llama-cpp")


def test_installed_engine_is_found_by_its_stamp(engine_python, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path))
    (tmp_path / "vllm-venv" / "bin").mkdir(parents=True)
    (tmp_path / "vllm-venv" / ".installed-0.32.0").touch()
    assert engine_python("vllm") == tmp_path / "vllm-venv" / "bin" / "python"
