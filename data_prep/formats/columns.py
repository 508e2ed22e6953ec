"""Single-record formats: chat conversations and the column presets of famous datasets.

Each `<format>_messages` gives the conversation a record holds; `<format>_prompt`
gives (prompt messages, answer, columns the preset consumed) for RL prompt rows.
"""

from __future__ import annotations

import re
from typing import Any

from data_prep.formats.transcripts import parse_transcript
from data_prep.formats.turns import (
    Messages,
    assistant_text,
    field,
    messages_from,
    prompt_messages,
    text,
)

# GSM8K's calculator annotations ("<<48/2=24>>"): tool-use markup, not words a model should learn to say.
_CALCULATOR = re.compile(r"<<[^<>]*>>")


def conversation(record: dict[str, Any], fmt: str) -> Messages:
    """The whole conversation of a chat-kind record in format `fmt` (not yet turn-validated)."""
    if fmt in ("messages", "sharegpt"):
        key = "messages" if "messages" in record else "conversations"
        return messages_from(field(record, key), sharegpt=fmt == "sharegpt", what=key)
    if fmt in ("chatml", "llama3", "human_assistant"):
        return parse_transcript(text(field(record, "text"), "text"), fmt)
    if fmt == "prompt_completion":
        prompt = prompt_messages(field(record, "prompt"))
        return [*prompt, _assistant(assistant_text(field(record, "completion"), "completion"))]
    prompt, answer, _ = single_turn(record, fmt)
    if fmt == "gsm8k":
        answer = _CALCULATOR.sub("", answer)
    return [*prompt, _assistant(answer)]


def single_turn(record: dict[str, Any], fmt: str) -> tuple[Messages, str, set[str]]:
    """(prompt, answer, consumed columns) of an instruction-style preset."""
    if fmt == "alpaca":
        prompt = _instruction(record, "instruction", "input")
        return prompt, text(field(record, "output"), "output"), {"instruction", "input", "output", "system"}
    if fmt == "dolly":
        prompt = _instruction(record, "instruction", "context")
        return prompt, text(field(record, "response"), "response"), {"instruction", "context", "response"}
    if fmt == "metamathqa":
        prompt = [_user(text(field(record, "query"), "query"))]
        return prompt, text(field(record, "response"), "response"), {"query", "response"}
    if fmt == "gsm8k":
        prompt = [_user(text(field(record, "question"), "question"))]
        return prompt, text(field(record, "answer"), "answer"), {"question", "answer"}
    raise ValueError(f"{fmt!r} is not a single-turn preset")


def prompt_row(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """An RL prompt row: the prompt, `answer` (gold, as the dataset writes it), other columns as-is."""
    if fmt == "prompt":
        out = {"prompt": prompt_messages(field(record, "prompt"))}
        out.update({k: v for k, v in record.items() if k != "prompt"})
        return out
    prompt, answer, consumed = single_turn(record, fmt)
    # GSM8K keeps "... #### 72" whole: the math rewards read the final number from it.
    out = {"prompt": prompt, "answer": answer}
    out.update({k: v for k, v in record.items() if k not in consumed and k != "prompt"})
    return out


def _instruction(record: dict[str, Any], instruction_key: str, extra_key: str) -> Messages:
    instruction = text(field(record, instruction_key), instruction_key)
    extra = record.get(extra_key)
    user = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    msgs: Messages = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": text(system, "system")})
    msgs.append(_user(user))
    return msgs


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}
