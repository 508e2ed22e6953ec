"""The tokenizer as GGUF metadata (`tokenizer.ggml.*`): a byte-level BPE vocabulary with its merges.

llama.cpp rebuilds a GPT-2-style tokenizer from the token list, the merges and
a pre-tokenizer name (`tokenizer.ggml.pre`) that selects its split regex; the
name is chosen here from the Hugging Face tokenizer's own pre-tokenizer.
"""

from __future__ import annotations

import json
from typing import Any

import gguf

from posttrain.errors import UserError

# Distinctive pieces of each split regex that llama.cpp knows under a name.
_LLAMA3_DIGITS = r"\p{N}{1,3}"
_QWEN2_DIGITS = r"|\p{N}|"


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """The fast tokenizer's full definition (vocab, merges, pre-tokenizer, added tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("GGUF export needs a fast (tokenizers) tokenizer with a tokenizer.json")
    return json.loads(backend.to_str())


def pre_tokenizer_name(definition: dict[str, Any]) -> str:
    """llama.cpp's name for the split rules of this tokenizer (`smollm`, `qwen2`, `llama-bpe`, `gpt-2`)."""
    pre = definition.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds and kinds[0] == "Split":
        pattern = (steps[0].get("pattern") or {}).get("Regex", "")
        if _LLAMA3_DIGITS in pattern:
            return "llama-bpe"
        if _QWEN2_DIGITS in pattern:
            return "qwen2"
    raise UserError(
        f"GGUF export does not know how llama.cpp splits text for this tokenizer (pre-tokenizer {kinds}); "
        "supported: SmolLM/GPT-2 byte-level, Llama 3 and Qwen2 regex splits"
    )


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer: Any, vocab_size: int) -> None:
    """Write tokens, token types, merges, special ids, BOS/EOS behaviour and the chat template."""
    definition = tokenizer_json(tokenizer)
    model = definition.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"GGUF export handles byte-level BPE tokenizers; this one is {model.get('type')}")
    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    added = {t["id"]: t for t in definition.get("added_tokens", [])}
    for token_id, token in added.items():
        by_id[token_id] = token["content"]
    if max(by_id) >= vocab_size:
        raise UserError(f"tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}")

    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id not in by_id:  # embedding rows the tokenizer never produces
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif token_id in added:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.CONTROL if added[token_id].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.NORMAL)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(definition))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if token_id is not None:
            setter(int(token_id))
    plain = tokenizer.encode("a", add_special_tokens=False)
    marked = tokenizer.encode("a", add_special_tokens=True)
    writer.add_add_bos_token(len(marked) > len(plain) and marked[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(marked) > len(plain) and marked[-1] == tokenizer.eos_token_id)
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
