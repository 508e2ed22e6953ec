"""llama.cpp loads posttrain's GGUF exports: greedy tokens equal transformers', adapter equals merged.

llama.cpp (llama-cpp-python 0.3, its own virtualenv) runs in a subprocess on
the GGUF files (written by llama.cpp's own converter and quantizer) of the
`dpo` stage of a two-stage run of the embedded model: the merged model in f16,
q8_0 and q4_k_m, and the base in f16 with the cumulative LoRA adapter. The
transformers reference uses the same weights rounded to f16.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.engines, pytest.mark.integration]

PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three colours.",
    "What is 12 + 7?",
]
MAX_TOKENS = 16
RUNNER = Path(__file__).with_name("llama_cpp_greedy.py")


@pytest.fixture(scope="module")
def gguf_dir(embedded_run: Path) -> Path:
    from posttrain.export.run_export import export_run

    return Path(export_run(embedded_run, "dpo", ["gguf"])["gguf"])


@pytest.fixture(scope="module")
def chats(embedded_base: Path) -> tuple[list[str], list[list[int]]]:
    from posttrain.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(embedded_base))
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]
    return texts, [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def _llama_cpp(python: Path, tmp_path: Path, model: Path, prompts: list[list[int]], texts: list[str],
               lora: Path | None = None) -> dict:
    request = tmp_path / f"request-{model.stem}-{bool(lora)}.json"
    request.write_text(json.dumps({"model": str(model), "lora": str(lora) if lora else None, "prompts": prompts,
                                   "texts": texts, "max_tokens": MAX_TOKENS}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), str(RUNNER), str(request)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def merged_run(gguf_dir, chats, engine_python, tmp_path_factory) -> dict:
    """llama.cpp on the merged f16 GGUF: greedy tokens and its tokenization of the chat prompts."""
    texts, prompts = chats
    return _llama_cpp(engine_python("llama-cpp"), tmp_path_factory.mktemp("llama"), gguf_dir / "model-f16.gguf",
                      prompts, texts)


def _transformers_greedy(lineage, prompts: list[list[int]], eos: int) -> list[list[int]]:
    from posttrain.models.lineage import materialize

    model = materialize(lineage, dtype="float32").eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())  # the f16 GGUF's weights
        answers = []
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False,
                                 eos_token_id=eos, pad_token_id=eos)
            answers.append(out[0, len(ids):].tolist())
    return answers


def test_merged_gguf_greedy_equals_transformers(merged_run, chats, embedded_run, embedded_base) -> None:
    from posttrain.models.lineage import Lineage

    _, prompts = chats
    got = merged_run
    assert got["tokenized"] == prompts, "llama.cpp tokenizes the chat prompt differently from the HF tokenizer"
    lineage = Lineage(str(embedded_base), [str(embedded_run / s / "adapter") for s in ("sft", "dpo")])
    expected = _transformers_greedy(lineage, prompts, eos=2)
    matches = sum(g == e for g, e in zip(got["tokens"], expected, strict=True))
    print(f"llama.cpp merged f16 GGUF: {matches}/{len(prompts)} greedy continuations equal to transformers")
    assert matches == len(prompts), list(zip(got["tokens"], expected, strict=True))


def test_base_plus_adapter_gguf_equals_merged_gguf(gguf_dir, chats, merged_run, engine_python, tmp_path) -> None:
    python = engine_python("llama-cpp")
    _, prompts = chats
    merged = merged_run
    with_adapter = _llama_cpp(python, tmp_path, gguf_dir / "base-f16.gguf", prompts, [],
                              lora=gguf_dir / "adapter-f16.gguf")
    base_only = _llama_cpp(python, tmp_path, gguf_dir / "base-f16.gguf", prompts, [])
    matches = sum(a == m for a, m in zip(with_adapter["tokens"], merged["tokens"], strict=True))
    print(f"llama.cpp base+adapter GGUF: {matches}/{len(prompts)} equal to the merged GGUF")
    assert base_only["tokens"] != merged["tokens"], "the adapter changes nothing, so this test could not fail"
    assert matches == len(prompts), list(zip(with_adapter["tokens"], merged["tokens"], strict=True))


def test_quantized_files_load_and_decode_in_llama_cpp(gguf_dir, chats, merged_run, engine_python, tmp_path) -> None:
    """q8_0 and q4_k_m (the recipe's default quants) load in llama.cpp and answer; q8_0 stays close to f16."""
    from posttrain.export.llama_cpp import describe

    prompts = chats[1][:2]  # two prompts say whether a file loads and answers; all four cost a minute more
    python = engine_python("llama-cpp")
    agree = {}
    for quant, kind in (("q8_0", "Q8_0"), ("q4_k_m", "Q4_K")):
        model = gguf_dir / f"model-{quant}.gguf"
        assert describe(model).tensor_types[kind] > 0
        got = _llama_cpp(python, tmp_path, model, prompts, [])
        assert all(len(t) > 0 for t in got["tokens"])
        agree[quant] = sum(g[0] == m[0] for g, m in zip(got["tokens"], merged_run["tokens"][:len(prompts)], strict=True))
    print(f"first greedy token equal to the f16 file's, of {len(prompts)} prompts: {agree}")
    assert agree["q8_0"] >= len(prompts) - 1, agree
