"""Preference pairs and unpaired (KTO) rows.

A pair's chosen/rejected may be plain answers (with a `prompt` column), whole
conversations (UltraFeedback, capybara: the user turn included), or HH-RLHF
transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ..."). Conversations are compared turn
by turn: the longest common prefix is the prompt (multi-turn history kept) and
the one assistant turn after it on each side is the answer.
"""

from __future__ import annotations

from typing import Any

from data_prep.formats.transcripts import parse_transcript, transcript_style
from data_prep.formats.turns import (
    Messages,
    RowError,
    assistant_text,
    field,
    messages_from,
    prompt_messages,
    text,
    validate_turns,
)


def is_hh_transcript(value: Any) -> bool:
    """A text written as HH-RLHF `Human:`/`Assistant:` turns."""
    return isinstance(value, str) and transcript_style(value) == "human_assistant"


def preference_row(record: dict[str, Any]) -> dict[str, Any]:
    """{"prompt": [messages ending with user], "chosen": str, "rejected": str}."""
    chosen, rejected = field(record, "chosen"), field(record, "rejected")
    explicit = prompt_messages(record["prompt"]) if record.get("prompt") is not None else None
    if is_hh_transcript(chosen) and is_hh_transcript(rejected):
        chosen = parse_transcript(chosen, "human_assistant")
        rejected = parse_transcript(rejected, "human_assistant")
    shared, chosen_text, rejected_text = _diverging_answers(chosen, rejected)
    prompt = _prompt(shared, explicit)
    chosen_text, rejected_text = text(chosen_text, "chosen"), text(rejected_text, "rejected")
    if chosen_text.strip() == rejected_text.strip():
        raise RowError("identical_pair", "chosen and rejected are the same text")
    return {"prompt": prompt, "chosen": chosen_text, "rejected": rejected_text}


def unpaired_rows_from_pair(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A preference pair as two unpaired rows: chosen is desirable, rejected is not."""
    pair = preference_row(record)
    return [
        {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
        {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False},
    ]


def unpaired_row(record: dict[str, Any]) -> dict[str, Any]:
    """trl-lib/kto-mix layout: prompt, completion (text or assistant messages), label."""
    return {
        "prompt": prompt_messages(field(record, "prompt")),
        "completion": assistant_text(field(record, "completion"), "completion"),
        "label": _label(field(record, "label")),
    }


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _label(value: Any) -> bool:
    # CSV cells arrive as text; anything but a clear yes/no is refused rather than guessed.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RowError("bad_label", f"label is {value!r}; expected true or false")


def _side(value: Any, what: str) -> Messages | None:
    """A side given as a conversation (messages), or None for a plain answer text."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return messages_from(value, sharegpt=False, what=what)
    return None


def _diverging_answers(chosen: Any, rejected: Any) -> tuple[Messages, Any, Any]:
    """(shared turns, chosen answer, rejected answer); answers of plain-text sides pass through."""
    c_msgs, r_msgs = _side(chosen, "chosen"), _side(rejected, "rejected")
    if c_msgs is None and r_msgs is None:
        return [], chosen, rejected
    if c_msgs is None or r_msgs is None:
        # One side a conversation, the other a bare answer: the conversation's history is shared.
        conv, what = (c_msgs, "chosen") if c_msgs is not None else (r_msgs, "rejected")
        assert conv is not None
        if conv[-1]["role"] != "assistant":
            raise RowError("turn_order", f"{what} must end with an assistant message")
        answer = conv[-1]["content"]
        return (conv[:-1], answer, rejected) if what == "chosen" else (conv[:-1], chosen, answer)
    n = 0
    while n < min(len(c_msgs), len(r_msgs)) and c_msgs[n] == r_msgs[n]:
        n += 1
    c_rest, r_rest = c_msgs[n:], r_msgs[n:]
    if not c_rest and not r_rest:
        raise RowError("identical_pair", "chosen and rejected are the same conversation")
    if not any(m["role"] == "user" for m in c_msgs[:n]) and (len(c_rest) > 1 or len(r_rest) > 1):
        raise RowError("no_shared_prompt", "chosen and rejected conversations share no prompt turns")
    for rest, what in ((c_rest, "chosen"), (r_rest, "rejected")):
        if len(rest) != 1 or rest[0]["role"] != "assistant":
            raise RowError(
                "bad_preference",
                f"chosen and rejected differ at turn {n + 1}, not only in their last assistant turn "
                f"({what} has {len(rest)} turn(s) after the shared ones)",
            )
    return c_msgs[:n], c_rest[0]["content"], r_rest[0]["content"]


def _prompt(shared: Messages, explicit: Messages | None) -> Messages:
    """The shared history when there is one (it is the fuller prompt), else the prompt column."""
    if not shared:
        if explicit is None:
            raise RowError(
                "no_shared_prompt", "no prompt column, and chosen/rejected carry no shared prompt turns"
            )
        return explicit
    shared = validate_turns(shared, ends_with="user")
    # Datasets disagree on which user turn a `prompt` column repeats (the first, the last);
    # one that is none of the shared user turns means chosen/rejected answer something else.
    users = {m["content"].strip() for m in shared if m["role"] == "user"}
    if explicit is not None and explicit[-1]["content"].strip() not in users:
        raise RowError("prompt_mismatch", "the prompt column is none of the user turns chosen/rejected share")
    return shared
