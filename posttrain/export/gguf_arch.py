"""What llama.cpp calls each weight of a Llama-style or Qwen2 model, and the hyperparameters it reads.

llama.cpp names tensors per block (`blk.N.attn_q.weight`, ...) and reads the
shape of the network from `<arch>.*` keys. Its Llama graph applies rotary
embeddings to interleaved pairs of each head's dimensions while Hugging Face
rotates the two halves, so Llama's q/k projections are re-ordered row-wise
(`rope_permute`); Qwen2 uses the halves layout (NEOX rope) in both and needs
no re-ordering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from posttrain.errors import UserError

# Hugging Face module path inside a decoder block -> llama.cpp tensor name.
_BLOCK_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_BLOCK = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class GgufArch:
    """One architecture llama.cpp loads: its name and whether q/k need the rope re-ordering."""

    name: str
    permute_qk: bool


SUPPORTED = {
    "LlamaForCausalLM": GgufArch("llama", permute_qk=True),
    "Qwen2ForCausalLM": GgufArch("qwen2", permute_qk=False),
}

_BY_MODEL_TYPE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def arch_for(config: dict[str, Any]) -> GgufArch:
    """The llama.cpp architecture of a Hugging Face `config.json`, or a UserError saying why not."""
    name = (config.get("architectures") or [_BY_MODEL_TYPE.get(config.get("model_type", ""), config.get("model_type"))])[0]
    arch = SUPPORTED.get(name)
    if arch is None:
        raise UserError(
            f"GGUF export supports {', '.join(sorted(SUPPORTED))}; this model is {name} "
            "(export it as peft/merged and convert it with llama.cpp's own converter)"
        )
    rope = rope_settings(config)
    if rope.get("rope_type", "default") != "default":
        raise UserError(
            f"GGUF export handles plain rotary embeddings only; this model uses rope_type {rope['rope_type']!r}"
        )
    return arch


def rope_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Rope parameters from either transformers layout (`rope_parameters` or top-level `rope_theta`)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    params.setdefault("rope_type", params.pop("type", "default") if "type" in params else "default")
    return params


def head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def gguf_name(hf_name: str) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`; None for buffers llama.cpp does not keep."""
    module, _, kind = hf_name.rpartition(".")
    if kind not in ("weight", "bias"):
        return None
    if module in _TOP_TENSORS:
        return f"{_TOP_TENSORS[module]}.{kind}"
    match = _BLOCK.match(module)
    if match and match.group(2) in _BLOCK_TENSORS:
        return f"blk.{match.group(1)}.{_BLOCK_TENSORS[match.group(2)]}.{kind}"
    return None


def rope_permute(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """Re-order the output rows of a q or k projection from halves to interleaved rotary pairs.

    Within each head, row i of the first half and row i of the second half are
    one rotary pair in Hugging Face; llama.cpp's Llama graph expects them next
    to each other (rows 2i and 2i+1).
    """
    out = rows.shape[0]
    return rows.reshape(n_heads, 2, out // n_heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def permute_heads(arch: GgufArch, config: dict[str, Any], hf_name: str) -> int | None:
    """Over how many heads the rows of `hf_name` are re-ordered (`rope_permute`), or None when they stay."""
    if not arch.permute_qk:
        return None
    if ".self_attn.q_proj." in hf_name:
        return int(config["num_attention_heads"])
    if ".self_attn.k_proj." in hf_name:
        return int(config.get("num_key_value_heads") or config["num_attention_heads"])
    return None


def add_hparams(writer: Any, arch: GgufArch, config: dict[str, Any]) -> None:
    """The `<arch>.*` keys llama.cpp reads to build the graph."""
    writer.add_context_length(int(config.get("max_position_embeddings", 4096)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or config["num_attention_heads"]))
    writer.add_rope_dimension_count(head_dim(config))
    writer.add_key_length(head_dim(config))
    writer.add_value_length(head_dim(config))
    writer.add_rope_freq_base(float(rope_settings(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
