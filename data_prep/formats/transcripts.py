"""Whole conversations written out as one text: ChatML, Llama-3 headers, Human:/Assistant: turns.

A transcript is parsed only when its markers are unambiguous: one marker family,
every character inside a marked turn, every turn closed, known roles. Anything
else is a `RowError` saying what is wrong, so the row is rejected, never guessed.
"""

from __future__ import annotations

import re

from data_prep.formats.turns import ROLES, Messages, RowError

TRANSCRIPT_STYLES = ("chatml", "llama3", "human_assistant")

_CHATML_OPEN = "<|im_start|>"
_CHATML_CLOSE = "<|im_end|>"
_LLAMA_OPEN = "<|start_header_id|>"
_LLAMA_HEADER_END = "<|end_header_id|>"
_LLAMA_CLOSE = "<|eot_id|>"
_LLAMA_BOS = "<|begin_of_text|>"
# HH-RLHF style: a speaker label at the very start or after a blank line.
_SPEAKER = re.compile(r"(?:\A|\n\n)(Human|Assistant):[ \t]?")
_SPEAKER_ROLE = {"Human": "user", "Assistant": "assistant"}


def transcript_style(text: str) -> str | None:
    """Which marker family `text` is written in; None when it has none; RowError when mixed."""
    families = [s for s, marker in (("chatml", _CHATML_OPEN), ("llama3", _LLAMA_OPEN)) if marker in text]
    if len(families) > 1:
        raise RowError("ambiguous_transcript", "text holds both ChatML and Llama-3 markers")
    if families:
        return families[0]
    speakers = {m.group(1) for m in _SPEAKER.finditer(text)}
    return "human_assistant" if speakers == {"Human", "Assistant"} else None


def parse_transcript(text: str, style: str) -> Messages:
    """The messages of a transcript in `style` (one of TRANSCRIPT_STYLES), in order."""
    if style == "chatml":
        return _tagged(text, _CHATML_OPEN, "\n", _CHATML_CLOSE, style)
    if style == "llama3":
        body = text.lstrip()
        body = body[len(_LLAMA_BOS) :] if body.startswith(_LLAMA_BOS) else body
        return _tagged(body, _LLAMA_OPEN, _LLAMA_HEADER_END, _LLAMA_CLOSE, style)
    return _speakers(text)


def _tagged(text: str, open_tag: str, role_end: str, close_tag: str, style: str) -> Messages:
    """`open role role_end content close` blocks, nothing but whitespace between them."""
    messages: Messages = []
    pos = 0
    while True:
        start = text.find(open_tag, pos)
        stray = text[pos : len(text) if start < 0 else start]
        if stray.strip():
            raise RowError("bad_transcript", f"{style} text has {stray.strip()[:40]!r} outside any turn")
        if start < 0:
            break
        head = start + len(open_tag)
        role_stop = text.find(role_end, head)
        end = text.find(close_tag, head)
        if role_stop < 0 or end < 0 or role_stop > end:
            raise RowError(
                "bad_transcript", f"{style} turn {len(messages) + 1} is not closed with {close_tag}"
            )
        role = text[head:role_stop].strip()
        content = text[role_stop + len(role_end) : end]
        if open_tag in content:
            raise RowError(
                "bad_transcript", f"{style} turn {len(messages) + 1} is not closed with {close_tag}"
            )
        if role not in ROLES:
            raise RowError("bad_role", f"{style} turn {len(messages) + 1} has role {role!r}")
        messages.append({"role": role, "content": content.strip()})
        pos = end + len(close_tag)
    return _non_empty(messages, style)


def _speakers(text: str) -> Messages:
    marks = list(_SPEAKER.finditer(text))
    if not marks or text[: marks[0].start()].strip():
        raise RowError("bad_transcript", "Human:/Assistant: text must start with a speaker label")
    messages = [
        {"role": _SPEAKER_ROLE[m.group(1)], "content": text[m.end() : nxt].strip()}
        for m, nxt in zip(marks, [n.start() for n in marks[1:]] + [len(text)], strict=True)
    ]
    return _non_empty(messages, "human_assistant")


def _non_empty(messages: Messages, style: str) -> Messages:
    if not messages:
        raise RowError("bad_transcript", f"{style} text holds no turns")
    for i, m in enumerate(messages, start=1):
        if not m["content"] and m["role"] != "system":
            raise RowError("empty_turn", f"{style} turn {i} ({m['role']}) is empty")
    return [m for m in messages if m["content"]]
