"""Ollama Modelfiles: they parse, name files that exist, and their template renders the chat template's text."""

from __future__ import annotations

from pathlib import Path

import pytest

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
def ollama_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, run_factory) -> Path:
    run = run_factory(tmp_path_factory.mktemp("runs"), tiny_model_dir, [("sft", 4)])
    return Path(export_run(run, None, ["ollama"])["ollama"])


def test_modelfiles_parse_and_name_files_that_exist(ollama_dir: Path) -> None:
    merged = read_modelfile(ollama_dir / "Modelfile")
    assert (ollama_dir / merged.from_).resolve().name == "model-q8_0.gguf"
    assert (ollama_dir / merged.from_).exists() and not merged.adapters
    with_adapter = read_modelfile(ollama_dir / "Modelfile.adapter")
    assert (ollama_dir / with_adapter.from_).resolve().name == "base-f16.gguf"
    assert [(ollama_dir / a).resolve().name for a in with_adapter.adapters] == ["adapter-f16.gguf"]
    assert all((ollama_dir / a).exists() for a in with_adapter.adapters)
    assert ("stop", "<|im_end|>") in merged.parameters
    assert merged.template == with_adapter.template and "{{ .Content }}" in merged.template


def test_tiny_template_renders_like_the_tokenizer(ollama_dir: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = read_modelfile(ollama_dir / "Modelfile").template
    for conversation in CONVERSATIONS:
        assert render(template, conversation) == tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True)


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
