"""The loss-mask check: before an SFT stage trains, real batches must supervise what the stage means to teach.

The field's most reported silent failure is a mask that trains nothing, or never the end of the turn: a
template whose generation prompt is not a prefix of the conversation (the completion mask lands on the
wrong tokens), answers truncated away by `max_length`, a collator that masks padding by token id while
pad == eos (the end-of-turn token is never learned, so the model never stops). TRL only warns. Here the
first rows of the training set go through the trainer's own collator, exactly as training will see
them, and each must have supervised tokens that cover its answer and include the end-of-turn token; a
violation is an error naming the row, the template and the fix.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from posttrain.errors import UserError

SAMPLE_ROWS = 16
IGNORE = -100
_PROBE = "posttrain-mask-probe"


@dataclass(frozen=True)
class Supervision:
    """One example as training sees it: its token ids and, per token, whether the loss learns it."""

    input_ids: list[int]
    learned: list[bool]

    @property
    def supervised(self) -> list[int]:
        """The token ids the loss learns, in order."""
        return [t for t, on in zip(self.input_ids, self.learned, strict=True) if on]

    def segments(self, tokenizer: Any) -> list[dict[str, Any]]:
        """The example as text, in runs of learned / not learned tokens: what the report highlights.

        Decoded run by run, so a multi-byte character split across a boundary may show as U+FFFD there.
        """
        runs: list[dict[str, Any]] = []
        for flag, group in itertools.groupby(zip(self.input_ids, self.learned, strict=True), key=lambda x: x[1]):
            ids = [t for t, _ in group]
            runs.append({"text": tokenizer.decode(ids), "learned": flag, "tokens": len(ids)})
        return runs


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The token the chat template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`, ...): the first
    special token after the answer in a rendered conversation; else eos."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # no usable template: eos is all there is
        return tokenizer.eos_token_id
    tail = text[text.rfind(_PROBE) + len(_PROBE):]
    special = set(tokenizer.all_special_ids)
    for token in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if token in special:
            return token
    return tokenizer.eos_token_id


def batches_as_trained(trainer: Any, rows: int = SAMPLE_ROWS) -> list[Supervision]:
    """The first `rows` examples through the trainer's collator (deterministic: no sampler, no random state)."""
    dataset = trainer.train_dataset
    examples = [dataset[i] for i in range(min(rows, len(dataset)))]
    if not examples:
        return []
    batch = trainer.data_collator(examples)
    input_ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    out: list[Supervision] = []
    if "position_ids" in batch and len(input_ids) == 1:  # padding-free: one row, positions restart per example
        starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0] + [len(input_ids[0])]
        for a, b in itertools.pairwise(starts):
            out.append(Supervision(input_ids[0][a:b], [lab != IGNORE for lab in labels[0][a:b]]))
        return out
    mask = batch.get("attention_mask")
    for r, (ids, labs) in enumerate(zip(input_ids, labels, strict=True)):
        keep = mask[r].tolist() if mask is not None else [1] * len(ids)
        real = [(t, lab) for t, lab, m in zip(ids, labs, keep, strict=True) if m]
        out.append(Supervision([t for t, _ in real], [lab != IGNORE for _, lab in real]))
    return out


def check_loss_mask(trainer: Any, tokenizer: Any, *, stage: str, dataset: str, rows: list[dict[str, Any]],
                    max_length: int) -> dict[str, Any] | None:
    """Raise UserError when rows train nothing, the template renders a different prompt than inference sees, or a
    sampled example misses its answer or never learns to stop.

    Returns the first example as the loss sees it (`loss_mask.json` beside stage.json; the report highlights its
    learned tokens), or None when the dataset is empty.
    """
    problems = _dropped_rows(trainer, tokenizer, dataset=dataset, rows=rows, max_length=max_length)
    problems += _template_prefix(tokenizer, dataset=dataset, rows=rows[:SAMPLE_ROWS])
    examples = batches_as_trained(trainer) if not problems else []
    end = end_of_turn_id(tokenizer)
    end_text = tokenizer.convert_ids_to_tokens(end) if end is not None else None
    for i, example in enumerate(examples):
        where = f"row {i + 1} of dataset {dataset!r}"
        answer = _answer(rows[i]) if i < len(rows) else None
        truncated = len(example.input_ids) >= max_length
        if not example.supervised:
            cause = (f"the prompt fills train.max_length ({max_length}) and the answer is cut away"
                     if truncated else "the completion mask is empty")
            problems.append(f"{where}: no token is supervised ({cause}); fix: raise train.max_length, shorten the "
                            "prompt, or check that the chat template renders the prompt as a prefix of the conversation")
            continue
        if answer and not truncated and _norm(answer) not in _norm(tokenizer.decode(example.supervised,
                                                                                      skip_special_tokens=True)):
            problems.append(f"{where}: the supervised tokens do not cover the assistant's answer "
                            f"({_preview(answer)}); the template's assistant markers do not match how the prompt is "
                            "rendered; fix: use a chat template whose generation prompt is a prefix of the rendered "
                            "conversation (model.chat_template), or loss_on: all")
        if end is not None and end not in example.supervised and not truncated:
            cause = (f"pad == end-of-turn ({end_text!r}) and padding is masked by token id"
                     if end == tokenizer.pad_token_id and end in example.input_ids else
                     f"{end_text!r} is outside the supervised span")
            problems.append(f"{where}: the end-of-turn token {end_text!r} is never trained ({cause}), so the model "
                            "will not learn to stop; fix: give the tokenizer a pad token distinct from "
                            f"{end_text!r}, or a collator that masks padding by position")
    if problems:
        template = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise UserError(
            f"stage {stage}: the loss mask of its training batches is wrong ({len(problems)} problem(s); chat "
            f"template of {template})", problems=problems[:5],
        )
    if not examples:
        return None
    first = examples[0]
    return {"dataset": dataset, "row": 1, "template": getattr(tokenizer, "name_or_path", "") or None,
            "tokens": len(first.input_ids), "learned_tokens": sum(first.learned),
            "end_of_turn": end_text, "segments": first.segments(tokenizer)}


def _dropped_rows(trainer: Any, tokenizer: Any, *, dataset: str, rows: list[dict[str, Any]],
                  max_length: int) -> list[str]:
    """TRL drops rows whose answer is fully masked (a prompt that fills max_length): name them."""
    kept = len(trainer.train_dataset)
    if kept >= len(rows):
        return []
    problems = []
    for i, row in enumerate(rows):
        messages = row.get("messages") or []
        text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(prompt) >= max_length:
            problems.append(f"row {i + 1} of dataset {dataset!r}: the prompt alone is {len(prompt)} tokens and "
                            f"train.max_length is {max_length}, so no answer token is supervised and the row is "
                            "dropped; fix: raise train.max_length or filter long rows in curation "
                            "({filter: {max_tokens: N}})")
    return problems or [f"dataset {dataset!r}: {len(rows) - kept} of {len(rows)} rows have no supervised token "
                        "after tokenization and were dropped; fix: raise train.max_length"]


def _template_prefix(tokenizer: Any, *, dataset: str, rows: list[dict[str, Any]]) -> list[str]:
    """The prompt the model sees at inference (generation prompt) must start the conversation it is trained on."""
    problems = []
    for i, row in enumerate(rows):
        messages = row.get("messages") or []
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt):
            at = next((k for k, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), len(full))
            problems.append(f"row {i + 1} of dataset {dataset!r}: the chat template's generation prompt is not how "
                            f"it renders the assistant turn (they part at {prompt[at:at + 20]!r} vs "
                            f"{full[at:at + 20]!r}): the model would train on a context it never sees at inference; "
                            "fix: a chat template whose assistant markers match (model.chat_template)")
            break  # one template: every row says the same
    return problems


def _answer(row: dict[str, Any]) -> str | None:
    messages = row.get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        return str(messages[-1].get("content") or "")
    return None


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _preview(text: str) -> str:
    text = _norm(text)
    return repr(text if len(text) <= 40 else text[:37] + "...")
