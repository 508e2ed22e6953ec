"""`posttrain export`: bad input exits 2 with one clear line; a re-export reuses what is up to date."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.export.run_export import export_run

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "posttrain.cli", "export", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, run_factory) -> Path:
    return run_factory(tmp_path_factory.mktemp("runs"), tiny_model_dir, [("sft", 4), ("dpo", 8)])


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}"], "no run directory at"),
    (["{run}", "--stage", "grpo"], "has no stage 'grpo'; its stages are sft, dpo"),
    (["{run}", "--format", "peft,onnx"], "unknown export format(s) onnx; choose from gguf, merged, ollama, peft, vllm"),
])
def test_bad_input_exits_2_with_a_clear_message(tiny_run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    done = _cli(*[a.format(run=tiny_run, missing=tmp_path / "nope") for a in args])
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split()) and "Traceback" not in done.stderr


def test_cli_exports_the_last_stage_by_run_name(tiny_run: Path) -> None:
    done = _cli(tiny_run.name, "--runs-dir", str(tiny_run.parent), "--format", "vllm")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tiny_run / "dpo" / "export" / "vllm" / "manifest.json").read_text())
    assert manifest["max_lora_rank"] == 16  # sft r=4 + dpo r=8 = 12 -> 16


def test_reexport_reuses_formats_that_are_up_to_date(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    first = export_run(tiny_run, "sft", ["peft"], out)
    stamp = (Path(first["peft"]) / "adapter_model.safetensors").stat().st_mtime_ns
    second = export_run(tiny_run, "sft", ["peft", "vllm"], out)
    assert (Path(second["peft"]) / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "export.json").read_text())["formats"] == ["peft", "vllm"]
    assert "vllm serve" in (Path(second["peft"]) / "README.md").read_text()  # cards list every engine exported


def test_rank_vllm_cannot_take_is_refused_before_anything_is_written(
    tiny_model_dir: Path, tmp_path: Path, run_factory,
) -> None:
    run = run_factory(tmp_path / "runs", tiny_model_dir, [("sft", 400), ("dpo", 200)], name="wide")
    with pytest.raises(UserError) as caught:
        export_run(run, None, ["peft", "vllm"])
    message = caught.value.render()
    assert "rank 600" in message and "largest --max-lora-rank (512)" in message and "Fix:" in message
    assert not (run / "dpo" / "export").exists()


def test_recipe_export_block_takes_the_engine_formats_and_names_a_wrong_one(gguf_tools, tmp_path: Path) -> None:
    # gguf/ollama validate only where llama.cpp's tools are installed (recipe/export_checks.py): gguf_tools skips

    from posttrain.errors import RecipeError
    from posttrain.recipe.loader import load_recipe

    (tmp_path / "chat.jsonl").write_text("")
    body = ("name: r\nmodel: {base: smollm2-135m-instruct}\ndatasets: {chat: {sources: [{path: chat.jsonl}]}}\n"
            "stages: [{name: sft, type: sft, data: chat}]\nexport: {formats: [peft, vllm, gguf, ollama%s]}\n")
    good = tmp_path / "good.yaml"
    good.write_text(body % "")
    assert load_recipe(good).recipe.export.formats == ["peft", "vllm", "gguf", "ollama"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(body % ", onnx")
    with pytest.raises(RecipeError) as caught:
        load_recipe(bad)
    assert any("export.formats[4]" in p and ":5:" in p for p in caught.value.problems), caught.value.problems
