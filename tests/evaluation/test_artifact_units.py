"""Artifact specs, finding an exported GGUF, engine lookup, which tasks a chat API can score, and the verdict math."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.evaluation.record import EvalEvidence
from posttrain.evaluation.stats import TaskStats
from posttrain.evaluation.verdict import compare_tasks, delta_interval, verdict
from posttrain.pipeline.artifact_eval import ArtifactSpec, gguf_files, parse_artifacts


def test_artifact_specs_parse_in_order_without_duplicates() -> None:
    specs = parse_artifacts(["gguf:q4_k_m,gguf:Q8_0", "vllm", "gguf:q4_k_m"])
    assert specs == [ArtifactSpec("gguf", "q4_k_m"), ArtifactSpec("gguf", "q8_0"), ArtifactSpec("vllm")]
    assert [s.name for s in specs] == ["q4_k_m", "q8_0", "vllm"]
    assert [s.engine for s in specs] == ["llama.cpp", "llama.cpp", "vllm"]
    assert [str(s) for s in specs] == ["gguf:q4_k_m", "gguf:q8_0", "vllm"]


@pytest.mark.parametrize("bad", ["gguf", "gguf:", "onnx", "vllm:q4", "gguf:q4 k", "gguf:../x"])
def test_unknown_artifact_spec_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserError, match=r"gguf:<quant>.*or vllm"):
        parse_artifacts(f"gguf:q8_0,{bad}")


def test_gguf_files_from_the_converter_listing(tmp_path: Path) -> None:
    (tmp_path / "files.json").write_text(json.dumps({
        "models": {"q4_k_m": "tiny-Q4_K_M.gguf", "f16": "model-f16.gguf"}, "chosen": "q4_k_m"}))
    assert gguf_files(tmp_path) == {"q4_k_m": "tiny-Q4_K_M.gguf", "f16": "model-f16.gguf"}


def test_gguf_files_from_file_names_for_the_older_listing(tmp_path: Path) -> None:
    (tmp_path / "files.json").write_text(json.dumps({"model_f16": "model-f16.gguf", "model_q8_0": "model-q8_0.gguf"}))
    for name in ("model-f16.gguf", "model-q8_0.gguf", "base-f16.gguf", "adapter-f16.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    assert gguf_files(tmp_path) == {"f16": "model-f16.gguf", "q8_0": "model-q8_0.gguf"}


def test_missing_engine_says_make_engines(tmp_path: Path, monkeypatch) -> None:
    from posttrain.serving.engines import engine_python

    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path))
    with pytest.raises(UserError, match=r"llama\.cpp engine is not installed.*`make engines`"):
        engine_python("llama.cpp")
    (tmp_path / "vllm-venv" / "bin").mkdir(parents=True)
    (tmp_path / "vllm-venv" / "bin" / "python").touch()
    (tmp_path / "vllm-venv" / ".installed-0.32.0").touch()
    assert engine_python("vllm") == tmp_path / "vllm-venv" / "bin" / "python"


def test_only_generation_tasks_go_to_the_chat_api() -> None:
    from posttrain.evaluation.engine import split_tasks
    from posttrain.stagekit.specs import EvalSpec

    spec = EvalSpec(tasks=["pt_arith", "pt_arith_mc"], limit=4)
    kept, skipped = split_tasks(spec, {"pt_arith": "generate_until", "pt_arith_mc": "multiple_choice"})
    assert kept == ["pt_arith"]
    assert list(skipped) == ["pt_arith_mc"]
    assert skipped["pt_arith_mc"].startswith("multiple_choice task: a chat-completions API returns text")


def _evidence(task: str, values: list[float]) -> EvalEvidence:
    mean = sum(values) / len(values)
    stats = TaskStats(metric="exact_match", score=mean, stderr=None, ci95=None, n=len(values), chance=0.0,
                      normalized=mean, binary=True, per_doc=True)
    return EvalEvidence(stats={task: stats}, per_doc={task: {f"{task}:{i}": v for i, v in enumerate(values)}})


def test_loss_within_noise() -> None:
    # 4 discordant documents, all lost: exact McNemar p = 2 * (1/2)^4 = 0.125.
    reference = _evidence("t", [1.0] * 10)
    artifact = _evidence("t", [1.0] * 6 + [0.0] * 4)
    entry = compare_tasks("q4_k_m", artifact, reference)["t"]
    assert entry["delta"] == pytest.approx(-0.4)
    assert entry["p_value"] == 0.125
    assert entry["significant"] is False
    half = 1.959963984540054 * math.sqrt(2.4 / 9) / math.sqrt(10)
    assert entry["delta_ci95"] == pytest.approx([-0.4 - half, -0.4 + half])
    assert entry["verdict"] == "q4_k_m: −0.40, within noise"
    assert (entry["score"], entry["reference_score"], entry["n"]) == (0.6, 1.0, 10)


def test_significant_loss() -> None:
    # 10 discordant documents, all lost: p = 2 / 2^10 = 0.001953125.
    reference = _evidence("t", [1.0] * 20)
    artifact = _evidence("t", [0.0] * 10 + [1.0] * 10)
    entry = compare_tasks("q4_k_m", artifact, reference)["t"]
    assert entry["p_value"] == 2 / 1024
    assert entry["verdict"] == "q4_k_m: loses 0.50, significant (p=0.002)"


def test_verdict_words() -> None:
    assert verdict("q8_0", 0.0, 1.0, False) == "q8_0: +0.00, within noise"
    assert verdict("q8_0", 0.08, 0.01, True) == "q8_0: gains 0.08, significant (p=0.01)"
    assert verdict("q8_0", -0.3, 1e-5, True) == "q8_0: loses 0.30, significant (p<0.001)"
    assert verdict("vllm", -0.1, None, False) == "vllm: −0.10, no paired test (no per-document results)"
    assert delta_interval({"a": 1.0}, {"a": 0.0}) is None


def test_without_a_reference_there_is_no_delta() -> None:
    entry = compare_tasks("f16", _evidence("t", [1.0, 0.0]), None)["t"]
    assert (entry["delta"], entry["p_value"], entry["verdict"]) == (None, None, "f16: no score to compare")
