"""A base model (no chat template, no ChatML tokens) with `model.chat_template: chatml` trains, and its exports stop
at `<|im_end|>`: llama.cpp (llama-cpp-python's server on the GGUF) and vLLM (its server on the vllm export) end
each reply with finish_reason "stop", and the Ollama Modelfile's template renders what the tokenizer renders.

The base is a tiny random Llama with the embedded model's byte-level BPE (a vocabulary llama.cpp's converter
recognizes) whose ChatML tokens are renamed away and whose template is dropped: a base checkpoint as users
bring one. One SFT stage (LoRA) overfits four short conversations, so the trained model answers them and stops.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

pytestmark = pytest.mark.engines

CHATS = [("Say hi.", "hi"), ("Name a colour.", "blue"), ("What is 2 + 2?", "4"), ("Count to three.", "1 2 3")]
RECIPE = """\
name: base
seed: 3
model: {{base: {model}, chat_template: chatml}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 8, dropout: 0.0}},
     train: {{max_steps: 80, batch_size: 4, lr: 3.0e-3, scheduler: constant, logging_steps: 10, max_length: 64}}}}
export: {{formats: [peft, merged, vllm, gguf, ollama], gguf: {{quants: [f16]}}}}
"""
MAX_TOKENS = 24


def _strip_chat_format(folder: Path) -> None:
    """Drop the tokenizer's chat template and rename its ChatML tokens, as a base checkpoint would have it."""
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.exists():
            path.write_text(path.read_text().replace("<|im_start|>", "<|reserved_0|>")
                            .replace("<|im_end|>", "<|reserved_1|>"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    config.pop("additional_special_tokens", None)
    config.update(bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, embedded_base: Path, family_builder, gguf_tools) -> Path:
    from posttrain.pipeline.runner import run_recipe
    from posttrain.recipe.loader import load_recipe

    root = tmp_path_factory.mktemp("chatml-base")
    base = family_builder("llama", root / "base", embedded_base)
    _strip_chat_format(base)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CHATS]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "recipe.yaml").write_text(RECIPE.format(model=base))
    run_recipe(load_recipe(root / "recipe.yaml"), runs_dir=root / "runs", console=Console(quiet=True))
    return root / "runs" / "base"


def _tokenizer(run: Path):
    from posttrain.models.loading import load_tokenizer

    return load_tokenizer(str(run / "sft" / "export" / "merged"))


def _ask(server, model: str) -> list[dict]:
    replies = []
    for question, _ in CHATS:
        body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": MAX_TOKENS,
                "temperature": 0.0}
        replies.append(server.post_json("/v1/chat/completions", body))
    return replies


def _assert_stops(replies: list[dict], engine: str) -> None:
    for (question, answer), reply in zip(CHATS, replies, strict=True):
        choice = reply["choices"][0]
        said = f"{engine} on {question!r}: {choice['message']['content']!r} ({reply['usage']})"
        assert choice["finish_reason"] == "stop", said
        assert reply["usage"]["completion_tokens"] < MAX_TOKENS, said
        # The answer learned, or its start: llama.cpp's f16 matmuls may leave the barely-trained path a token early.
        assert choice["message"]["content"].strip() and answer.startswith(choice["message"]["content"].strip()), said


def test_the_template_tokens_are_added_trained_and_the_end_of_turn_is_eos(trained_run: Path) -> None:
    from safetensors.torch import load_file
    from transformers import GenerationConfig

    tokenizer = _tokenizer(trained_run)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and end == 49153  # appended after the 49152 tokens of the base
    merged = trained_run / "sft" / "export" / "merged"
    assert GenerationConfig.from_pretrained(merged).eos_token_id == end
    config = json.loads((trained_run / "sft" / "adapter" / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] == {"embed_tokens": [49152, 49153], "lm_head": [49152, 49153]}
    rows = load_file(str(trained_run / "sft" / "adapter" / "adapter_model.safetensors"))
    assert any("embed_tokens.token_adapter" in k for k in rows) and any("lm_head.token_adapter" in k for k in rows)


def test_llama_cpp_stops_at_im_end_and_ollama_renders_the_tokenizers_text(trained_run: Path, engine_python) -> None:
    import gguf

    from posttrain.export.go_template import render
    from posttrain.export.ollama import SAMPLE_CONVERSATIONS, read_modelfile
    from posttrain.serving.engines import engine_env, llama_cpp_command
    from posttrain.serving.process import served

    export = trained_run / "sft" / "export"
    files = json.loads((export / "gguf" / "files.json").read_text())
    model = export / "gguf" / files["models"]["f16"]
    tokenizer = _tokenizer(trained_run)
    fields = gguf.GGUFReader(model).fields
    assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "trains the embedding rows" in files["adapter_skipped"]

    modelfile = read_modelfile(export / "ollama" / "Modelfile")
    assert any(key == "stop" and "<|im_end|>" in value for key, value in modelfile.parameters), modelfile.parameters
    conversations = [*SAMPLE_CONVERSATIONS,
                     *([{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in CHATS)]
    for conversation in conversations:
        expected = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert render(modelfile.template, conversation) == expected

    command = llama_cpp_command(engine_python("llama-cpp"), model, n_ctx=256)
    with served(command, log=trained_run / "llama-cpp.log", env=engine_env(), ready_timeout=180) as server:
        _assert_stops(_ask(server, "base"), "llama.cpp")


def test_vllm_serves_the_merged_model_and_stops_at_im_end(trained_run: Path, engine_python) -> None:
    from posttrain.serving.engines import engine_env, vllm_command
    from posttrain.serving.process import served

    manifest = json.loads((trained_run / "sft" / "export" / "vllm" / "manifest.json").read_text())
    # vLLM's LoRA cannot load trained embedding rows: the export is the merged model, served without LoRA.
    assert manifest["adapter_dir"] is None and manifest["base_path"].endswith("vllm/model")
    command = vllm_command(engine_python("vllm"), manifest, max_model_len=256)
    with served(command, log=trained_run / "vllm.log", env=engine_env(), ready_timeout=600) as server:
        _assert_stops(_ask(server, manifest["request_model"]), "vLLM")
