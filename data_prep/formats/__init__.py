"""Turn a raw record into canonical rows, or say why not.

Canonical shapes (one per dataset `kind`):
  chat        {"messages": [{"role", "content"}, ...]}  optional system first,
              then user/assistant alternating, ending with assistant
  preference  {"prompt": [messages ending with user], "chosen": str, "rejected": str}
  prompt      {"prompt": [messages ending with user], <answer columns kept as-is>}
  unpaired    {"prompt": [messages ending with user], "completion": str, "label": bool}

Format detection (`format: auto`) tries the readings in `DETECTION_ORDER`, most
specific first, and takes the first whose columns the record has AND that can make
the dataset's kind: so an UltraFeedback row (prompt, chosen, rejected, messages) is
a preference pair in a preference dataset and a `messages` conversation in a chat one.
Errors are `RowError(reason, detail)`; the caller logs them as rejects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data_prep.formats.columns import conversation, prompt_row
from data_prep.formats.pairs import is_hh_transcript, preference_row, unpaired_row, unpaired_rows_from_pair
from data_prep.formats.transcripts import TRANSCRIPT_STYLES, transcript_style
from data_prep.formats.turns import RowError, validate_turns
from data_prep.spec import COMPATIBLE_FORMATS

__all__ = ["DETECTION_ORDER", "RowError", "detect_format", "normalize", "read_record"]


def _conversation_key(record: dict[str, Any]) -> str | None:
    conv = record.get("messages", record.get("conversations"))
    if not isinstance(conv, list):
        return None
    first = next((m for m in conv if isinstance(m, dict)), {})
    return "sharegpt" if "from" in first or "value" in first else "messages"


def _has(*keys: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: all(k in r for k in keys)


# (format, does the record have its columns?) -- most specific reading first.
DETECTION_ORDER: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("kto", _has("prompt", "completion", "label")),
    ("hh_rlhf", lambda r: "prompt" not in r and is_hh_transcript(r.get("chosen")) and "rejected" in r),
    ("preference", _has("chosen", "rejected")),
    ("sharegpt", lambda r: _conversation_key(r) == "sharegpt"),
    ("messages", lambda r: _conversation_key(r) == "messages"),
    ("dolly", _has("instruction", "context", "response")),
    ("alpaca", _has("instruction", "output")),
    ("metamathqa", _has("query", "response")),
    ("gsm8k", _has("question", "answer")),
    ("prompt_completion", _has("prompt", "completion")),
    ("prompt", _has("prompt")),
)
# Readings never traded for a less specific one: a KTO row's completion may be labelled
# undesirable, so reading it as prompt/completion chat would train on a bad answer.
_EXCLUSIVE = {"kto"}


def detect_format(record: dict[str, Any], kind: str | None = None) -> str:
    """The record's most specific reading that makes `kind` (any kind when None)."""
    matches = [fmt for fmt, fits in DETECTION_ORDER if fits(record)]
    if isinstance(record.get("text"), str) and not matches:
        style = transcript_style(record["text"])
        if style is None:
            raise RowError(
                "unrecognized_format",
                "column 'text' holds no ChatML, Llama-3 or Human:/Assistant: turn markers",
            )
        matches = [style]
    if not matches:
        raise RowError("unrecognized_format", f"no known format fits the columns {sorted(record)[:12]}")
    if kind is None:
        return matches[0]
    fitting = [fmt for fmt in matches if fmt in COMPATIBLE_FORMATS[kind]]
    if matches[0] in _EXCLUSIVE:
        fitting = fitting[:1] if fitting[:1] == matches[:1] else []
    if not fitting:
        raise RowError("wrong_format", f"a {matches[0]} row cannot make a {kind} row")
    return fitting[0]


def read_record(record: dict[str, Any], fmt: str, kind: str) -> tuple[str, list[dict[str, Any]]]:
    """(the format read, the canonical rows): one row, or two for a pair read as `unpaired`."""
    if fmt == "auto":
        fmt = detect_format(record, kind)
    if fmt not in COMPATIBLE_FORMATS[kind]:
        raise RowError("wrong_format", f"a {fmt} row cannot make a {kind} row")
    if fmt in TRANSCRIPT_STYLES and transcript_style(str(record.get("text", ""))) != fmt:
        raise RowError("bad_transcript", f"column 'text' is not written with {fmt} turn markers")
    if kind == "chat":
        return fmt, [{"messages": validate_turns(conversation(record, fmt), ends_with="assistant")}]
    if kind == "preference":
        return fmt, [preference_row(record)]
    if kind == "unpaired":
        return fmt, [unpaired_row(record)] if fmt == "kto" else unpaired_rows_from_pair(record)
    return fmt, [prompt_row(record, fmt)]


def normalize(record: dict[str, Any], fmt: str, kind: str) -> dict[str, Any]:
    """The one canonical row a record makes (use `read_record` where a pair may split in two)."""
    _, rows = read_record(record, fmt, kind)
    if len(rows) != 1:
        raise ValueError(f"a {kind} record made {len(rows)} rows; use read_record")
    return rows[0]
