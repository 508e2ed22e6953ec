"""Training examples for distillation: chat rows as they are, prompts answered by the teacher.

Every example is `{"messages": [...]}` whose last turn is the assistant answer
the losses are computed on (TRL's ChatML collator splits prompt and answer
there).
"""

from __future__ import annotations

from typing import Any

import torch

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


@torch.inference_mode()
def teacher_answers(
    teacher: Any, tokenizer: Any, prompts: list[Messages], *, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers of `teacher` to each prompt (sequence-level KD targets), in order."""
    was_training, padding_side = teacher.training, tokenizer.padding_side
    teacher.eval()
    tokenizer.padding_side = "left"  # generation appends on the right: prompts must end where answers start
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                for p in prompts[start : start + batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(teacher.device)
            output = teacher.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        teacher.train(was_training)
        tokenizer.padding_side = padding_side
    return answers
