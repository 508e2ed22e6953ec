"""Turn a raw record into one of the three canonical row shapes, or say why not.

Canonical shapes:
  chat        {"messages": [{"role", "content"}, ...]}  optional system first,
              then user/assistant alternating, ending with assistant
  preference  {"prompt": [messages ending with user], "chosen": str, "rejected": str}
  prompt      {"prompt": [messages ending with user], <answer columns kept as-is>}

`normalize` raises `RowError(reason, detail)`; the caller logs it as a reject.
"""

from __future__ import annotations

from typing import Any

from data_prep.spec import COMPATIBLE_FORMATS

ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
}


class RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def detect_format(record: dict[str, Any]) -> str:
    conv = record.get("messages", record.get("conversations"))
    if isinstance(conv, list):
        first = next((m for m in conv if isinstance(m, dict)), {})
        return "sharegpt" if "from" in first or "value" in first else "messages"
    if "chosen" in record and "rejected" in record:
        return "preference"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    if "prompt" in record:
        return "prompt"
    raise RowError("unrecognized_format", f"no known format fits the columns {sorted(record)[:12]}")


def normalize(record: dict[str, Any], fmt: str, kind: str) -> dict[str, Any]:
    if fmt == "auto":
        fmt = detect_format(record)
    if fmt not in COMPATIBLE_FORMATS[kind]:
        raise RowError("wrong_format", f"a {fmt} row cannot make a {kind} row")
    if kind == "chat":
        return {"messages": _to_messages(record, fmt)}
    if kind == "preference":
        return _preference(record)
    return _prompt_row(record, fmt)


# ---------------------------------------------------------------- helpers


def _text(value: Any, what: str) -> str:
    # OpenAI-style content parts: keep the text parts, refuse anything else.
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)
    if value is None:
        raise RowError("empty_turn", f"{what} is missing or null")
    if not isinstance(value, str):
        raise RowError("bad_content", f"{what} is a {type(value).__name__}, expected text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError("invalid_unicode", f"{what} holds a lone surrogate (bad \\u escape)") from None
    if not value.strip():
        raise RowError("empty_turn", f"{what} is empty")
    return value


def _field(record: dict[str, Any], key: str) -> Any:
    if key not in record:
        raise RowError("missing_field", f"missing column {key!r}")
    return record[key]


def _messages_from(items: Any, *, sharegpt: bool, what: str) -> list[dict[str, str]]:
    if not isinstance(items, list) or not items:
        raise RowError("bad_messages", f"{what} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(items, start=1):
        if not isinstance(m, dict):
            raise RowError("bad_messages", f"{what}[{i}] is not an object")
        raw_role = m.get("from") if sharegpt else m.get("role")
        role = _SHAREGPT_ROLES.get(str(raw_role).lower()) if sharegpt else raw_role
        if role not in ROLES:
            raise RowError("bad_role", f"turn {i} has role {raw_role!r}; expected one of {', '.join(ROLES)}")
        raw_content = m.get("value") if sharegpt else m.get("content")
        if role == "system" and (
            raw_content is None or (isinstance(raw_content, str) and not raw_content.strip())
        ):
            continue  # an empty system prompt carries nothing; dropping it loses nothing
        out.append({"role": role, "content": _text(raw_content, f"turn {i} ({role})")})
    return out


def validate_turns(messages: list[dict[str, str]], *, ends_with: str) -> list[dict[str, str]]:
    """Optional system first, then user/assistant alternating from user, last role `ends_with`."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body:
        raise RowError("turn_order", "no user/assistant turns")
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            pos = i + 1 + (len(messages) - len(body))
            raise RowError("turn_order", f"turn {pos} is {m['role']}, expected {expected}")
    if body[-1]["role"] != ends_with:
        raise RowError("turn_order", f"last turn is {body[-1]['role']}, expected {ends_with}")
    return messages


def _prompt_messages(value: Any, what: str = "prompt") -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, what)}]
    msgs = _messages_from(value, sharegpt=False, what=what)
    return validate_turns(msgs, ends_with="user")


def _to_messages(record: dict[str, Any], fmt: str) -> list[dict[str, str]]:
    if fmt in ("messages", "sharegpt"):
        key = "messages" if "messages" in record else "conversations"
        msgs = _messages_from(_field(record, key), sharegpt=fmt == "sharegpt", what=key)
    elif fmt == "alpaca":
        msgs = _alpaca_prompt(record)
        msgs.append({"role": "assistant", "content": _text(_field(record, "output"), "output")})
    else:  # prompt_completion
        msgs = _prompt_messages(_field(record, "prompt"))
        completion = _field(record, "completion")
        if isinstance(completion, list):
            # Conversational completions: one or more assistant messages.
            parts = _messages_from(completion, sharegpt=False, what="completion")
            if any(m["role"] != "assistant" for m in parts):
                raise RowError("bad_role", "completion messages must all be from the assistant")
            completion = "\n".join(m["content"] for m in parts)
        msgs.append({"role": "assistant", "content": _text(completion, "completion")})
    return validate_turns(msgs, ends_with="assistant")


def _alpaca_prompt(record: dict[str, Any]) -> list[dict[str, str]]:
    instruction = _text(_field(record, "instruction"), "instruction")
    extra = record.get("input")
    user = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    msgs = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": _text(system, "system")})
    msgs.append({"role": "user", "content": user})
    return msgs


def _split_conversation(value: Any, what: str) -> tuple[list[dict[str, str]], str]:
    """A chosen/rejected given as a whole conversation: (prompt messages, final answer)."""
    msgs = _messages_from(value, sharegpt=False, what=what)
    if not msgs or msgs[-1]["role"] != "assistant":
        raise RowError("turn_order", f"{what} must end with an assistant message")
    return msgs[:-1], msgs[-1]["content"]


def _preference(record: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = _field(record, "chosen"), _field(record, "rejected")
    prompt: list[dict[str, str]] | None = None
    if "prompt" in record:
        prompt = _prompt_messages(record["prompt"])
    if isinstance(chosen, list):
        c_prefix, chosen = _split_conversation(chosen, "chosen")
        r_prefix, rejected = (
            _split_conversation(rejected, "rejected") if isinstance(rejected, list) else ([], rejected)
        )
        if prompt is None:
            # Whole-conversation pairs (HH-style): the shared prefix is the prompt.
            if c_prefix != r_prefix:
                raise RowError(
                    "bad_preference", "chosen and rejected conversations differ before the last turn"
                )
            prompt = validate_turns(c_prefix, ends_with="user")
    if prompt is None:
        raise RowError("missing_field", "missing column 'prompt'")
    chosen, rejected = _text(chosen, "chosen"), _text(rejected, "rejected")
    if chosen.strip() == rejected.strip():
        raise RowError("identical_pair", "chosen and rejected are the same text")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _prompt_row(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "alpaca":
        return {"prompt": _alpaca_prompt(record), "answer": _text(_field(record, "output"), "output")}
    out = {"prompt": _prompt_messages(_field(record, "prompt"))}
    out.update({k: v for k, v in record.items() if k != "prompt"})
    return out
