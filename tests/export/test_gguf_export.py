"""`posttrain export RUN --format gguf`: llama.cpp's converter and quantizer write the recipe's quants.

The run is two LoRA stages on a tiny Llama with the embedded tokenizer. The
default quants (q4_k_m, then q8_0) come out as files whose headers say Q4_K /
Q8_0 (`--quant` replacing the recipe's list is tested with Ollama's export,
tests/export/test_ollama_export.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.errors import UserError

pytestmark = pytest.mark.engines

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "posttrain.cli", "export", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_cli_gguf_export_writes_q4_k_m_and_q8_0(gguf_tools, gguf_run: Path, tmp_path: Path) -> None:
    from posttrain.export.llama_cpp import describe, tensor_names

    out = tmp_path / "export"
    done = _cli(str(gguf_run), "--format", "gguf", "--out", str(out))
    assert done.returncode == 0, done.stderr
    folder = out / "gguf"
    files = json.loads((folder / "files.json").read_text())
    assert files["models"] == {"f16": "model-f16.gguf", "q4_k_m": "model-q4_k_m.gguf", "q8_0": "model-q8_0.gguf"}
    assert files["chosen"] == "q4_k_m" and files["base"] == "base-f16.gguf" and files["adapter"] == "adapter-f16.gguf"
    assert files["file_types"] == {"f16": "MOSTLY_F16", "q4_k_m": "MOSTLY_Q4_K_M", "q8_0": "MOSTLY_Q8_0"}
    q4, q8 = describe(folder / "model-q4_k_m.gguf"), describe(folder / "model-q8_0.gguf")
    assert q8.tensor_types == {"Q8_0": 16, "F32": 5} == files["tensor_types"]["q8_0"]
    assert q4.tensor_types["Q4_K"] == files["tensor_types"]["q4_k_m"]["Q4_K"] >= 8
    # the merged model: 2 layers x 9 tensors + embeddings, output head, final norm (untied)
    assert files["tensor_count"] == q4.tensor_count == 21 and q4.chat_template is not None
    adapter = tensor_names(folder / "adapter-f16.gguf")  # 2 layers x 7 projections x (A, B)
    assert len(adapter) == 2 * 7 * 2 and all(n.endswith((".lora_a", ".lora_b")) for n in adapter)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".hf-")], "the merged HF folder is left"
    index = json.loads((out / "export.json").read_text())
    assert index["serve"]["gguf"].endswith("model-q4_k_m.gguf")


def test_unknown_quant_exits_2_naming_the_choices(gguf_run: Path) -> None:
    done = _cli(str(gguf_run), "--format", "peft", "--quant", "q3_k")
    assert done.returncode == 2, done.stderr
    assert "unknown GGUF quantization(s) q3_k; choose from f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_tools_say_how_to_install_them(tmp_path: Path, monkeypatch) -> None:
    from posttrain.export import llama_cpp

    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path))
    with pytest.raises(UserError, match=r"run `make engines` \(or `scripts/setup_engines.sh tools`"):
        llama_cpp.convert_model(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(UserError, match=r"scripts/setup_engines.sh llama-cpp"):
        llama_cpp.quantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "q8_0")


def test_converter_failure_is_one_user_error_with_the_tools_last_lines(gguf_tools, tmp_path: Path) -> None:
    from posttrain.export import llama_cpp

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"]}))
    with pytest.raises(UserError) as caught:
        llama_cpp.convert_model(tmp_path, tmp_path / "x.gguf")
    message = caught.value.render()
    assert "convert_hf_to_gguf.py" in message and "NoSuchModelForCausalLM" in message, message
    assert len(caught.value.problems) <= 12


def test_supported_architectures_are_read_from_the_converter_source(gguf_tools) -> None:
    from posttrain.export.llama_cpp import supported_architectures

    names = supported_architectures()
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM",
            "Olmo2ForCausalLM", "MistralForCausalLM"} <= names
    assert "GPT2LMHeadModel" in names and "NoSuchModelForCausalLM" not in names


def _recipe(folder: Path, base: Path, formats: str) -> Path:
    (folder / "chat.jsonl").write_text("")
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"name: r\nmodel: {{base: {base}}}\ndatasets: {{chat: {{sources: [{{path: chat.jsonl}}]}}}}\n"
                      f"stages: [{{name: sft, type: sft, data: chat}}]\nexport: {{formats: [{formats}]}}\n")
    return recipe


def test_validate_refuses_gguf_for_an_architecture_the_converter_lacks(gguf_tools, tmp_path: Path) -> None:
    base = tmp_path / "odd-model"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"], "model_type": "odd"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for formats in ("peft, ollama", "gguf"):
        recipe = _recipe(tmp_path, base, formats)
        done = subprocess.run([sys.executable, "-m", "posttrain.cli", "validate", str(recipe)], capture_output=True,
                              text=True, env=env, timeout=300)
        said = " ".join(done.stderr.split())
        assert done.returncode == 2, done.stderr
        assert f"{recipe}:5:" in said and "export.formats" in said, said
        assert "cannot convert NoSuchModelForCausalLM" in said and "Fix: remove gguf/ollama" in said, said
        assert "Traceback" not in done.stderr


def test_validate_takes_gguf_for_a_supported_base_and_says_nothing_without_it(
    gguf_tools, tiny_model_dir: Path, tmp_path: Path, monkeypatch,
) -> None:
    from posttrain.errors import RecipeError
    from posttrain.recipe.loader import load_recipe

    assert load_recipe(_recipe(tmp_path, tiny_model_dir, "gguf, ollama")).recipe.export.formats == ["gguf", "ollama"]
    monkeypatch.setenv("POSTTRAIN_ENGINES", str(tmp_path / "no-engines"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe(tmp_path, tiny_model_dir, "gguf"))
    assert any("export.formats" in p and "make engines" in p for p in caught.value.problems), caught.value.problems
    assert load_recipe(_recipe(tmp_path, tiny_model_dir, "peft, merged")).recipe.export.formats == ["peft", "merged"]
    # the vllm export is checked against vLLM's own registry (recipe/family_checks.py): without the engine, it
    # is refused here too rather than after training
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe(tmp_path, tiny_model_dir, "peft, vllm"))
    (problem,) = caught.value.problems
    assert "export.formats" in problem and "vLLM's own model registry" in problem, problem


def test_validate_refuses_gguf_for_a_gemma2_whose_query_scaling_llama_cpp_ignores(gguf_tools, tmp_path: Path) -> None:
    from posttrain.errors import RecipeError
    from posttrain.recipe.loader import load_recipe

    base = tmp_path / "gemma2"
    base.mkdir()
    config = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 256,
              "num_attention_heads": 4, "head_dim": 64, "num_hidden_layers": 2, "query_pre_attn_scalar": 64}
    (base / "config.json").write_text(json.dumps(config))
    assert load_recipe(_recipe(tmp_path, base, "gguf")).recipe.export.formats == ["gguf"]  # the released models' way
    (base / "config.json").write_text(json.dumps({**config, "query_pre_attn_scalar": 256}))
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe(tmp_path, base, "gguf"))
    (problem,) = [p for p in caught.value.problems if "export.formats" in p]
    assert "query_pre_attn_scalar 256" in problem and "1/sqrt(64)" in problem and "Fix: remove gguf" in problem
