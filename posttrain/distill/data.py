"""Training examples for distillation: chat rows as they are, prompts answered by the teacher.

Every example is `{"messages": [...]}` whose last turn is the assistant answer
the losses are computed on (TRL's ChatML collator splits prompt and answer
there).
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def prompt_of(row: dict[str, Any]) -> Messages:
    """The conversation up to the answer: a prompt row's `prompt`, or a chat row less its last answer."""
    if "prompt" in row:
        return list(row["prompt"])
    messages = row["messages"]
    return messages[:-1] if messages and messages[-1]["role"] == "assistant" else list(messages)


def with_answer(prompt: Messages, answer: str) -> dict[str, Messages]:
    """
    >>> with_answer([{"role": "user", "content": "hi"}], "hello")["messages"][-1]
    {'role': 'assistant', 'content': 'hello'}
    """
    return {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def teacher_answers(
    teacher: Any, tokenizer: Any, prompts: list[Messages], *, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers of `teacher` to each prompt (sequence-level KD targets), in order."""
    from posttrain.training.objectives import greedy_replies

    return greedy_replies(teacher, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
