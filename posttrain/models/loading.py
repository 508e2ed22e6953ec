"""Load models and tokenizers safely: safetensors only, remote code off unless asked."""

from __future__ import annotations

from typing import Any

import torch

from posttrain.errors import UserError
from posttrain.models.precision import Purpose, attention_implementation, weights_dtype


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
            f"the tokenizer of {path!r} has no chat template; posttrain trains and evaluates chat models "
            "(use an instruct model, or a tokenizer that defines chat_template)"
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
    purpose: Purpose = "full",
) -> Any:
    """A causal LM from a local folder or hub id, weights from safetensors only."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch_dtype(dtype, purpose),
            attn_implementation=attention_implementation(),
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
        )
    except OSError as exc:
        raise UserError(f"cannot load model {path!r}: {_first_line(exc)}") from exc
    if device:
        model.to(device)
    return model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
