"""Load models and tokenizers safely: safetensors only, remote code off unless asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from posttrain.errors import UserError
from posttrain.fingerprint import fingerprint
from posttrain.models.chat_template import SHIPPED, ChatTemplate
from posttrain.models.lineage import Lineage
from posttrain.models.precision import Purpose, attention_implementation, weights_dtype
from posttrain.models.resolve import ResolvedModel, cache_root
from posttrain.models.templated import templated_base


def torch_dtype(name: str, purpose: Purpose = "full") -> torch.dtype:
    """The recipe's dtype name; `auto` depends on the purpose and the device (posttrain.models.precision)."""
    return weights_dtype(name, purpose)


def load_tokenizer(path: str, *, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    """The model's tokenizer with its chat template, and a pad token distinct from EOS.

    When pad == eos, collators that mask padding by token id also mask the real
    EOS of every answer and the model never learns to stop.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as exc:
        raise UserError(f"cannot load the tokenizer of {path!r}: {_first_line(exc)}") from exc
    if tokenizer.chat_template is None:
        raise UserError(
            f"the tokenizer of {path!r} has no chat template; posttrain trains and evaluates chat models. "
            f"Fix: give the base model one with model.chat_template: {' | '.join(SHIPPED)} | FILE.jinja "
            "(its special tokens are added and trained), or use an instruct model"
        )
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        spare = next(
            (t for t in ("<|endoftext|>", "<pad>", "<|pad|>") if vocab.get(t, tokenizer.eos_token_id) != tokenizer.eos_token_id),
            None,
        )
        tokenizer.pad_token = spare or tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
    path: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    device: str | None = None,
    quantize: str | None = None,
    purpose: Purpose = "full",
) -> Any:
    """A causal LM from a local folder or hub id, weights from safetensors only.

    `quantize="4bit"` loads the linear layers in NF4 (bitsandbytes) for QLoRA training.
    """
    from transformers import AutoModelForCausalLM

    extra = {"quantization_config": nf4_config(dtype)} if quantize == "4bit" else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch_dtype(dtype, purpose),
            attn_implementation=attention_implementation(),
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
            **extra,
        )
    except OSError as exc:
        raise UserError(f"cannot load model {path!r}: {_first_line(exc)}") from exc
    if device:
        model.to(device)
    return model


def nf4_config(dtype: str = "auto") -> Any:
    """QLoRA's 4-bit NormalFloat with one fp32 scale per 64 weights; matmuls in the recipe's dtype.

    No double quantization: the scales stay exact, so quantizing the dequantized
    weights again gives back the same 4-bit weights (see `dequantized_base`).
    """
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(dtype),
        bnb_4bit_use_double_quant=False,
    )


def start_of_lineages(
    base: ResolvedModel, *, quantize: str | None = None, revision: str | None = None, trust_remote_code: bool = False,
    chat_template: ChatTemplate | None = None,
) -> Lineage:
    """Where every lineage of a recipe's model starts; with `model.chat_template`, the base given that template
    (`models/templated.py`); with `quantize: 4bit`, the dequantized NF4 base (each made once).

    The session of a run and a run directory read back later (`RunDir.base_lineage`) both start here, so an
    export or evaluation of a QLoRA stage merges into the weights it was trained against.
    """
    path, identity = base.path, [base.identity, revision]
    if chat_template is not None:
        cache = cache_root() / "models" / f"template-{fingerprint(*identity, chat_template.text)}"
        path = str(templated_base(path, chat_template, cache, trust_remote_code=trust_remote_code, revision=revision))
        identity.append(chat_template.text)
        revision = None  # the folder is local now
    if quantize == "4bit":
        cache = cache_root() / "models" / f"nf4-{fingerprint(*identity)}"
        return Lineage(str(dequantized_base(path, cache, trust_remote_code=trust_remote_code, revision=revision)))
    return Lineage(path, revision=revision)


def dequantized_base(
    path: str, out_dir: Path, *, trust_remote_code: bool = False, revision: str | None = None
) -> Path:
    """Save the model at `path` as it is after NF4 quantization, dequantized to fp32, in `out_dir`.

    QLoRA trains adapters against the 4-bit weights, so the exact base of those
    adapters is the dequantized model, not the original one: lineages, evaluation
    and export start from it, and merges go into its fp32 weights, never into 4-bit
    ones. Written once (the folder is the cache); quantizing it again gives back
    exactly the same 4-bit weights.
    """
    if (out_dir / "config.json").exists():
        return out_dir
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    full = load_model(path, dtype="float32", trust_remote_code=trust_remote_code, revision=revision)
    quantized = load_model(
        path, dtype="float32", trust_remote_code=trust_remote_code, revision=revision, quantize="4bit"
    )
    targets = dict(full.named_modules())
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = dequantize_4bit(module.weight.data, module.weight.quant_state)
                targets[name].weight.copy_(weight.to(torch.float32))
    partial = out_dir.with_name(out_dir.name + ".partial")
    full.save_pretrained(partial, safe_serialization=True)
    load_tokenizer(path, trust_remote_code=trust_remote_code, revision=revision).save_pretrained(partial)
    partial.rename(out_dir)  # a killed conversion never leaves a half-written cache entry
    return out_dir


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
