"""Checks that the recipe's engine exports can be written, made before any training.

A `gguf` export (and `ollama`, which is made from it) runs llama.cpp's own
converter after the last stage; a base architecture the converter has no class
for, or tools that are not installed, would otherwise fail only then. They run
on the raw YAML tree, like the other cross-part checks (`references.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Problem = tuple[tuple[str | int, ...], str]

_QUANTIZER_FREE = {"f16", "bf16"}
"""File types the converter writes itself; every other quant needs llama.cpp's quantizer (the engine venv)."""


def check_export(document: Any, *, base_dir: Path) -> list[Problem]:
    export = document.get("export")
    if not isinstance(export, dict) or not _writes_gguf(export.get("formats")):
        return []
    from posttrain.errors import UserError
    from posttrain.export import llama_cpp

    where = ("export", "formats")
    gguf_formats = [f for f in export["formats"] if f in ("gguf", "ollama")]
    try:
        llama_cpp.tools_dir()
        quants = ((export.get("gguf") or {}).get("quants") if isinstance(export.get("gguf"), dict) else None) or []
        if not isinstance(quants, list) or any(not isinstance(q, str) or q not in _QUANTIZER_FREE for q in quants) or not quants:
            llama_cpp.engine_python()
    except UserError as exc:
        return [(where, f"{'/'.join(gguf_formats)} export needs llama.cpp's tools: {exc}")]
    config = base_config(document.get("model"), base_dir)
    architectures = (config or {}).get("architectures") or []
    architecture = str(architectures[0]) if architectures else None
    if config and architecture and (problem := _runs_differently(architecture, config)):
        return [(where, f"{problem}, so the {'/'.join(gguf_formats)} export would not be the model trained. Fix: "
                        "remove gguf/ollama from export.formats (merged and vllm keep the model's own settings)")]
    if architecture is not None and architecture not in llama_cpp.supported_architectures():
        return [(where, f"llama.cpp's converter (llama-cpp-python {llama_cpp.LLAMA_CPP_VERSION}) cannot convert "
                        f"{architecture} (the base model's architecture) to GGUF, so the {'/'.join(gguf_formats)} "
                        "export would fail after training. Fix: remove gguf/ollama from export.formats (merged and "
                        "vllm serve any architecture transformers loads), or train a base llama.cpp supports")]
    return []


def _writes_gguf(formats: Any) -> bool:
    from posttrain.export.formats import EXPORT_FORMATS, expand_formats

    if not isinstance(formats, list):
        return False
    known = [f for f in formats if isinstance(f, str) and f in EXPORT_FORMATS]  # unknown ones: the schema says so
    return "gguf" in expand_formats(known)


def _runs_differently(architecture: str, config: dict[str, Any]) -> str | None:
    """A setting llama.cpp's converter accepts but its runtime ignores, so the GGUF computes something else."""
    if architecture == "Gemma2ForCausalLM":
        heads = config.get("num_attention_heads") or 1
        head_dim = config.get("head_dim") or (config.get("hidden_size", 0) // heads)
        scalar = config.get("query_pre_attn_scalar", head_dim)
        # llama.cpp scales queries by 1/sqrt(head_dim), except Gemma-2 27B (46 layers): 1/sqrt(hidden/heads).
        expected = config.get("hidden_size", 0) / heads if config.get("num_hidden_layers") == 46 else head_dim
        if scalar != expected:
            return (f"Gemma-2 with query_pre_attn_scalar {scalar}: llama.cpp {llama_cpp_version()} scales queries by "
                    f"1/sqrt({expected:g}) whatever the config says")
    return None


def llama_cpp_version() -> str:
    from posttrain.export.llama_cpp import LLAMA_CPP_VERSION

    return LLAMA_CPP_VERSION


def base_config(model: Any, base_dir: Path) -> dict[str, Any] | None:
    """The base's config.json where it can be read without a download; None where it cannot be known now (a
    hub model not in the local cache) or is a GGUF (llama.cpp's own format, so it converts back)."""
    from posttrain.errors import UserError
    from posttrain.models.resolve import resolve_model

    ref = model.get("base") if isinstance(model, dict) else None
    if not isinstance(ref, str):
        return None
    try:
        resolved = resolve_model(ref, base_dir=base_dir, convert=False)
    except (UserError, OSError):  # OSError: a reference no file system takes (a name too long)
        return None  # the model check says what is wrong with the reference
    config: Path | None = None
    if resolved.source == "local":
        config = Path(resolved.path) / "config.json"
    elif resolved.source == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved.path, "config.json", revision=model.get("revision"))
        config = Path(cached) if isinstance(cached, str) else None
    try:
        if config is None or not config.is_file():
            return None
        loaded = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None
