"""Ollama Modelfiles: FROM the chosen quant, they parse, name files that exist, and their template — made from
the GGUF's own chat template — renders the tokenizer's chat template's text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.export.go_template import TemplateError, render
from posttrain.export.ollama import SAMPLE_CONVERSATIONS, go_template, read_modelfile
from posttrain.export.run_export import export_run

CONVERSATIONS = [
    *SAMPLE_CONVERSATIONS,
    [{"role": "user", "content": "Line one\n\nline {two} with \"quotes\""}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
    [{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "3"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "5"}],
]


@pytest.fixture(scope="module")
def ollama_dir(gguf_tools, gguf_run: Path) -> Path:
    # --quant q8_0 (as `posttrain export` passes it) instead of the default q4_k_m, q8_0: q8_0 is then the chosen one
    return Path(export_run(gguf_run, None, ["ollama"], quants=["q8_0"])["ollama"])


@pytest.mark.engines
def test_modelfiles_parse_and_name_files_that_exist(ollama_dir: Path) -> None:
    merged = read_modelfile(ollama_dir / "Modelfile")
    assert (ollama_dir / merged.from_).resolve().name == "model-q8_0.gguf"
    assert (ollama_dir / merged.from_).exists() and not merged.adapters
    files = json.loads((ollama_dir.parent / "gguf" / "files.json").read_text())
    assert files["quants"] == ["q8_0"] and sorted(files["models"]) == ["f16", "q8_0"]
    with_adapter = read_modelfile(ollama_dir / "Modelfile.adapter")
    assert (ollama_dir / with_adapter.from_).resolve().name == "base-f16.gguf"
    assert [(ollama_dir / a).resolve().name for a in with_adapter.adapters] == ["adapter-f16.gguf"]
    assert all((ollama_dir / a).exists() for a in with_adapter.adapters)
    assert ("stop", "<|im_end|>") in merged.parameters
    # Ollama's default repeat penalty (1.1) would decode other replies than the ones llama.cpp was scored on.
    assert ("repeat_penalty", "1") in merged.parameters and ("repeat_penalty", "1") in with_adapter.parameters
    assert merged.template == with_adapter.template and "{{ .Content }}" in merged.template


@pytest.mark.engines
def test_template_from_the_gguf_renders_like_the_tokenizer(ollama_dir: Path, gguf_base_dir: Path) -> None:
    from transformers import AutoTokenizer

    from posttrain.export.llama_cpp import describe

    tokenizer = AutoTokenizer.from_pretrained(gguf_base_dir)
    model = ollama_dir / read_modelfile(ollama_dir / "Modelfile").from_
    assert describe(model).chat_template == tokenizer.chat_template  # what the converter wrote into the file
    template = read_modelfile(ollama_dir / "Modelfile").template
    assert "You are a helpful AI assistant named SmolLM" in template
    for conversation in CONVERSATIONS:
        assert render(template, conversation) == tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True)


@pytest.mark.engines
def test_same_quants_again_reuse_the_files(ollama_dir: Path, gguf_run: Path) -> None:
    model = ollama_dir.parent / "gguf" / "model-q8_0.gguf"
    stamp = model.stat().st_mtime_ns
    export_run(gguf_run, None, ["ollama"], quants=["q8_0"])
    assert model.stat().st_mtime_ns == stamp


def test_a_chat_template_that_renders_differently_from_the_tokenizer_is_refused(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    other = tokenizer.chat_template.replace("'\\n' + message['content']", "': ' + message['content']")
    assert other != tokenizer.chat_template
    with pytest.raises(UserError, match="renders differently from the tokenizer's chat template"):
        go_template(tokenizer, other)
    template, stops = go_template(tokenizer, tokenizer.chat_template)
    assert stops == ["<|im_end|>"] and render(template, CONVERSATIONS[0]) == tokenizer.apply_chat_template(
        CONVERSATIONS[0], tokenize=False, add_generation_prompt=True)


@pytest.mark.integration
def test_embedded_template_with_its_default_system_prompt_renders_like_the_tokenizer() -> None:
    from posttrain.models.loading import load_tokenizer
    from posttrain.models.resolve import resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct").path)
    template, stops = go_template(tokenizer)
    assert "You are a helpful AI assistant named SmolLM" in template and stops == ["<|im_end|>"]
    for conversation in CONVERSATIONS:
        assert render(template, conversation) == tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True)


def test_renderer_refuses_go_template_it_does_not_implement() -> None:
    with pytest.raises(TemplateError, match="unsupported template action"):
        render("{{ range $i, $m := .Messages }}{{ end }}", [])
    assert render("{{- if eq .Role \"\" -}}  x  {{- end }}", []) == "x"
