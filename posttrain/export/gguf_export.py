"""Write GGUF files llama.cpp (and Ollama) load: a full model in f16 or q8_0, and a LoRA adapter.

The model file carries the weights under llama.cpp's names, the hyperparameters
and the tokenizer with its chat template. The adapter file holds, for every
adapted projection, `<tensor>.lora_a` (rank x in) and `<tensor>.lora_b`
(out x rank) with the LoRA scale folded into B and `adapter.lora.alpha` equal
to the rank, so llama.cpp's alpha/rank scale is exactly 1 for any PEFT scaling
(plain or rsLoRA).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors.torch import load_file

from posttrain.errors import UserError
from posttrain.export.gguf_arch import add_hparams, arch_for, gguf_name, permute_heads, rope_permute
from posttrain.export.gguf_vocab import add_tokenizer

QUANTS = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
_PEFT_PREFIX = "base_model.model."


def write_model_gguf(
    path: Path, *, tensors: Iterable[tuple[str, torch.Tensor]], config: dict[str, Any], tokenizer: Any,
    quant: str, name: str,
) -> Path:
    """Write a whole model (Hugging Face names and layout in `tensors`) as one GGUF file."""
    if quant not in QUANTS:
        raise UserError(f"unknown GGUF quantization {quant!r}; choose from {sorted(QUANTS)}")
    arch = arch_for(config)
    writer = gguf.GGUFWriter(path, arch.name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    add_hparams(writer, arch, config)
    writer.add_file_type(QUANTS[quant])
    if quant != "f16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(writer, tokenizer, int(config["vocab_size"]))
    tied = bool(config.get("tie_word_embeddings"))
    for hf_name, tensor in tensors:
        target = gguf_name(hf_name)
        if target is None or (tied and target == "output.weight"):
            continue  # rotary buffers; a tied output head reuses token_embd in llama.cpp
        data = tensor.detach().to(torch.float32).cpu().numpy()
        heads = permute_heads(arch, config, hf_name)
        if heads is not None:
            data = rope_permute(data, heads)
        _add_weight(writer, target, data, quant)
    _finish(writer)
    return path


def _add_weight(writer: gguf.GGUFWriter, name: str, data: np.ndarray, quant: str) -> None:
    # llama.cpp keeps 1-D tensors (norms, biases) in f32 in every file type.
    if data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_adapter_gguf(path: Path, *, adapter_dir: Path, config: dict[str, Any], name: str) -> Path:
    """Write a PEFT LoRA adapter as a llama.cpp LoRA adapter for the base described by `config`."""
    arch = arch_for(config)
    lora = json.loads((adapter_dir / "adapter_config.json").read_text())
    if lora.get("rank_pattern") or lora.get("alpha_pattern"):
        raise UserError("GGUF adapters need one rank and alpha for every module (no rank_pattern/alpha_pattern)")
    if lora.get("use_dora") or lora.get("modules_to_save") or lora.get("bias", "none") != "none":
        raise UserError("GGUF adapters carry plain LoRA only (no DoRA, bias or modules_to_save); export gguf merged")
    rank = int(lora["r"])
    scale = lora["lora_alpha"] / (math.sqrt(rank) if lora.get("use_rslora") else rank)
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))

    writer = gguf.GGUFWriter(path, arch.name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))  # scale folded into B below
    for key in sorted(k for k in weights if k.endswith(".lora_A.weight")):
        module = key.removeprefix(_PEFT_PREFIX)[: -len(".lora_A.weight")]
        target = gguf_name(f"{module}.weight")
        if target is None or not target.startswith("blk."):
            raise UserError(f"GGUF adapters cover the attention and MLP projections; {module} is not one of them")
        a = weights[key].float().numpy()
        b = (weights[key.replace(".lora_A.", ".lora_B.")].float() * scale).numpy()
        heads = permute_heads(arch, config, f"{module}.weight")
        if heads is not None:
            b = rope_permute(b, heads)  # the projection's output rows are re-ordered; A acts on its input
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    _finish(writer)
    return path
