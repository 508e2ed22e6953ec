"""A base model given a chat template: its tokenizer carries the template and the special tokens it needs.

Written once per (base, template) as a folder every lineage of the recipe starts from, like the dequantized
NF4 base: training, evaluation, merges and every export then read the template, the added tokens and the
end-of-turn eos from the model's own files, and a run directory read back later gets the same folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.models.chat_template import ChatTemplate

TRAINED_TOKENS = "posttrain_trained_tokens"
"""config.json key: the ids of the tokens the template added. Their embedding rows start as the mean of the
others (no meaning yet), so LoRA stages train them (`training/lora.lora_config`). Kept in config.json so that
every model of the lineage (merged, full fine-tuned) still says which rows they are."""


def templated_base(
    path: str, template: ChatTemplate, out_dir: Path, *, trust_remote_code: bool = False, revision: str | None = None
) -> Path:
    """`out_dir` holding the model at `path` with `template`: added tokens, resized embeddings, eos = end of turn."""
    if (out_dir / "config.json").exists():
        return out_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    added = add_template_tokens(tokenizer, template)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype="auto", trust_remote_code=trust_remote_code, revision=revision, use_safetensors=True
    )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        # Mean resizing: new rows start where the model's average token is, so the first steps see no outliers.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if added:
        setattr(model.config, TRAINED_TOKENS, tokenizer.convert_tokens_to_ids(added))
    if template.end_of_turn:
        # The end of an assistant turn is where generation stops: transformers' generate, vLLM and llama.cpp's
        # converter read the eos of these files.
        eot = tokenizer.convert_tokens_to_ids(template.end_of_turn)
        model.config.eos_token_id = eot
        model.generation_config.eos_token_id = eot
    partial = out_dir.with_name(out_dir.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    for name in ("tokenizer.model",):  # a SentencePiece model some converters read beside tokenizer.json
        if (Path(path) / name).exists() and not (partial / name).exists():
            (partial / name).write_bytes((Path(path) / name).read_bytes())
    partial.rename(out_dir)  # a killed conversion never leaves a half-written cache entry
    return out_dir


def add_template_tokens(tokenizer: Any, template: ChatTemplate) -> list[str]:
    """Set `template` on `tokenizer`, add the special tokens it lacks and make the end of turn its eos;
    returns the tokens added."""
    from tokenizers import AddedToken

    tokenizer.chat_template = template.text
    vocab = tokenizer.get_vocab()
    added = [t for t in template.special_tokens if t not in vocab]
    if added:
        # special: never split, and skipped when decoding a reply; not normalized: matched as written.
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in added], special_tokens=True)
    if template.end_of_turn:
        tokenizer.eos_token = template.end_of_turn
    return added


def trained_tokens(model: Any) -> list[int]:
    """Ids of the tokens a chat template added to `model`'s vocabulary (empty for every other model)."""
    return list(getattr(model.config, TRAINED_TOKENS, None) or [])
