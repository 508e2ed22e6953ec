"""Messages and their texts: the checks every format shares (roles, content, turn order)."""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
}

Messages = list[dict[str, str]]


class RowError(Exception):
    """Why a record makes no canonical row: `reason` is a short key for counting, `detail` for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def text(value: Any, what: str) -> str:
    """A non-empty, encodable string (OpenAI-style text parts joined), or a RowError naming `what`."""
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


def field(record: dict[str, Any], key: str) -> Any:
    """The record's column `key`, or a `missing_field` RowError."""
    if key not in record:
        raise RowError("missing_field", f"missing column {key!r}")
    return record[key]


def messages_from(items: Any, *, sharegpt: bool, what: str) -> Messages:
    """role/content (or ShareGPT from/value) dicts -> messages; empty system prompts dropped."""
    if not isinstance(items, list) or not items:
        raise RowError("bad_messages", f"{what} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(items, start=1):
        if not isinstance(m, dict):
            raise RowError("bad_messages", f"{what}[{i}] is not an object")
        raw_role = m.get("from") if sharegpt else m.get("role")
        role = SHAREGPT_ROLES.get(str(raw_role).lower()) if sharegpt else raw_role
        if role not in ROLES:
            raise RowError("bad_role", f"turn {i} has role {raw_role!r}; expected one of {', '.join(ROLES)}")
        raw_content = m.get("value") if sharegpt else m.get("content")
        if role == "system" and (
            raw_content is None or (isinstance(raw_content, str) and not raw_content.strip())
        ):
            continue  # an empty system prompt carries nothing; dropping it loses nothing
        out.append({"role": role, "content": text(raw_content, f"turn {i} ({role})")})
    return out


def validate_turns(messages: Messages, *, ends_with: str) -> Messages:
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


def prompt_messages(value: Any, what: str = "prompt") -> Messages:
    """A prompt column: a plain string (one user turn) or messages ending with the user."""
    if isinstance(value, str):
        return [{"role": "user", "content": text(value, what)}]
    return validate_turns(messages_from(value, sharegpt=False, what=what), ends_with="user")


def assistant_text(value: Any, what: str) -> str:
    """An answer column: a string, or assistant messages (conversational completions) joined."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        parts = messages_from(value, sharegpt=False, what=what)
        if any(m["role"] != "assistant" for m in parts):
            raise RowError("bad_role", f"{what} messages must all be from the assistant")
        value = "\n".join(m["content"] for m in parts)
    return text(value, what)
