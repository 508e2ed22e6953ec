"""GGUF export of six architecture families through llama.cpp's own converter and quantizer.

Each family is a tiny random model built in code (tests/export/conftest.py),
converted to f16 by `convert_hf_to_gguf.py` and requantized by
`llama_model_quantize`: the f16 file holds every weight of the model under the
name llama.cpp's tensor map gives it (nothing dropped, nothing made up), the
q8_0 and q4_k_m files hold Q8_0 and Q4_K tensors, and llama.cpp, loading each
f16 file, decodes the same greedy tokens as transformers on the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.engines

FAMILIES = ["llama", "qwen2", "qwen3", "gemma2", "phi3", "olmo2"]
PROMPTS = [[1, 5, 17, 42, 99, 120, 7], [1, 30, 31, 32, 33], [1, 200, 11, 3, 150, 60, 61, 62, 63]]
MAX_TOKENS = 12
RUNNER = Path(__file__).with_name("llama_cpp_greedy.py")


@pytest.fixture(scope="module")
def family_files(gguf_tools, family_builder, embedded_base: Path, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """family -> {"hf": folder, "f16" / "q8_0" / "q4_k_m": GGUF file}."""
    from posttrain.export import llama_cpp

    root = tmp_path_factory.mktemp("families")
    files = {}
    for seed, family in enumerate(FAMILIES):
        hf = family_builder(family, root / family, embedded_base, seed=seed)
        # A neutral name: llama.cpp special-cases vocabularies by general.name ("phi3" wants Phi-3's own).
        f16 = llama_cpp.convert_model(hf, root / f"{family}-f16.gguf", "f16", name="tiny")
        files[family] = {"hf": hf, "f16": f16}
        for quant in ("q8_0", "q4_k_m"):
            files[family][quant] = llama_cpp.quantize(f16, root / f"{family}-{quant}.gguf", quant)
    return files


def _gguf_arch(name: str):
    import gguf

    return {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[name]


@pytest.mark.parametrize("family", FAMILIES)
def test_f16_gguf_holds_every_weight_of_the_model(family_files, family: str) -> None:
    import gguf
    from safetensors import safe_open

    from posttrain.export.llama_cpp import describe, tensor_names

    files = family_files[family]
    facts = describe(files["f16"])
    assert facts.architecture == family  # the families are named as llama.cpp names its architectures
    config = json.loads((files["hf"] / "config.json").read_text())
    with safe_open(str(files["hf"] / "model.safetensors"), "pt") as weights:
        hf_names = list(weights.keys())
    names = gguf.get_tensor_name_map(_gguf_arch(facts.architecture), config["num_hidden_layers"])
    expected = {names.get_name(n, try_suffixes=(".weight", ".bias")) for n in hf_names}
    assert None not in expected, [n for n in hf_names if names.get_name(n, try_suffixes=(".weight", ".bias")) is None]
    got = tensor_names(files["f16"])
    assert len(got) == len(hf_names) == facts.tensor_count, (family, len(got), len(hf_names))
    assert set(got) == expected, (expected ^ set(got))
    assert facts.file_type == "MOSTLY_F16" and set(facts.tensor_types) == {"F16", "F32"}


@pytest.mark.parametrize("family", FAMILIES)
def test_q8_0_and_q4_k_m_files_hold_those_types(family_files, family: str) -> None:
    from posttrain.export.llama_cpp import describe

    f16 = describe(family_files[family]["f16"])
    q8 = describe(family_files[family]["q8_0"])
    q4 = describe(family_files[family]["q4_k_m"])
    matrices = f16.tensor_types["F16"]  # the 2-D weights; 1-D norms and biases stay F32 in every file type
    assert q8.file_type == "MOSTLY_Q8_0" and q8.tensor_types == {"Q8_0": matrices, "F32": f16.tensor_types["F32"]}
    assert q4.file_type == "MOSTLY_Q4_K_M"
    assert q4.tensor_count == q8.tensor_count == f16.tensor_count
    # q4_k_m keeps some attention-value and FFN-down matrices (and the output head) in Q6_K, the rest Q4_K.
    assert set(q4.tensor_types) <= {"Q4_K", "Q6_K", "F32"}, q4.tensor_types
    assert q4.tensor_types["Q4_K"] >= matrices / 2, q4.tensor_types


def _transformers_greedy(folder: Path) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    answers = []
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())  # the f16 GGUF's weights
        for ids in PROMPTS:
            out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, min_new_tokens=MAX_TOKENS,
                                 do_sample=False, pad_token_id=0)
            answers.append(out[0, len(ids):].tolist())
    return answers


@pytest.mark.integration
def test_llama_cpp_greedy_on_each_f16_file_equals_transformers(family_files, engine_python, tmp_path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"requests": [
        {"model": str(family_files[f]["f16"]), "prompts": PROMPTS, "max_tokens": MAX_TOKENS, "ignore_eos": True,
         "threads": 1}  # tiny models: a second thread only waits, and spins against other work on the machine
        for f in FAMILIES
    ]}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(engine_python("llama-cpp")), str(RUNNER), str(request)], capture_output=True,
                          text=True, timeout=600, env=env)  # one process loads every family's file
    assert done.returncode == 0, done.stderr[-4000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])["answers"]
    differ = {}
    for family, got in zip(FAMILIES, answers, strict=True):
        expected = _transformers_greedy(family_files[family]["hf"])
        if got["tokens"] != expected:
            differ[family] = list(zip(got["tokens"], expected, strict=True))
    print(f"llama.cpp f16 greedy equals transformers for {len(FAMILIES) - len(differ)}/{len(FAMILIES)} families")
    assert not differ, differ
