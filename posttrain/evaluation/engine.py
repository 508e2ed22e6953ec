"""Score a model served by an engine (llama.cpp's server, vLLM's) on lm-eval tasks, through lm-eval's own API model.

The engine applies the chat template (lm-eval sends the messages to
`/v1/chat/completions`), decodes greedily (temperature 0) with the task's own
stop strings and token budget, and the results are summarized exactly as a
stage's evaluation is (harness.evaluate_lm): the same eval.json fields and
samples/<task>.jsonl, so the paired tests read both alike.

A chat API returns text, not log-likelihoods of given continuations, so
multiple-choice and log-likelihood tasks cannot be scored through it; they are
returned as skipped, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.evaluation.harness import evaluate_lm
from posttrain.evaluation.quiet import quiet
from posttrain.evaluation.tasks import plan_tasks
from posttrain.stagekit.specs import EvalSpec, EvalTask

GENERATE = "generate_until"
"""The one lm-eval output type a chat-completions API can score."""


@dataclass
class ReplyLog:
    """What the engine said about each reply: why it stopped and how many tokens went in and out, and how long."""

    finish_reasons: list[str | None] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def count(self, reason: str) -> int:
        return sum(1 for r in self.finish_reasons if r == reason)


def chat_model(base_url: str, model_name: str, log: ReplyLog, *, seed: int, timeout: int = 600,
               request_fields: dict[str, Any] | None = None) -> Any:
    """lm-eval's `local-chat-completions` model for `base_url` (`http://127.0.0.1:PORT`), recording each reply;
    `request_fields` are added to every request (an engine's own sampling defaults turned off)."""
    from lm_eval.models.openai_completions import LocalChatCompletion

    extra = dict(request_fields or {})

    class RecordingChatCompletion(LocalChatCompletion):
        def _create_payload(self, *args: Any, **kwargs: Any) -> dict:
            return {**super()._create_payload(*args, **kwargs), **extra}

        # One request per document (the chat API takes one conversation at a time), timed, its finish_reason and
        # token usage kept: the end-of-turn parity check and the speed figures read them.
        def model_call(self, messages: Any, **kwargs: Any) -> dict | None:
            start = time.perf_counter()
            out = super().model_call(messages, **kwargs)
            elapsed = time.perf_counter() - start
            for reply in [out] if isinstance(out, dict) else []:
                usage = reply.get("usage") or {}
                for choice in reply.get("choices", []):
                    log.finish_reasons.append(choice.get("finish_reason"))
                log.prompt_tokens.append(int(usage.get("prompt_tokens") or 0))
                log.completion_tokens.append(int(usage.get("completion_tokens") or 0))
                log.seconds.append(elapsed)
            return out

    with quiet():
        return RecordingChatCompletion(
            base_url=f"{base_url}/v1/chat/completions", model=model_name, tokenizer_backend=None,
            tokenized_requests=False, num_concurrent=1, max_retries=1, seed=seed, timeout=timeout,
        )


def split_tasks(spec: EvalSpec, output_types: dict[str, str]) -> tuple[list[str | EvalTask], dict[str, str]]:
    """(entries a chat API can score, {column: why not} for the others). `output_types` are the columns' lm-eval
    output types as the reference evaluation recorded them (eval.json `results.output_type`)."""
    kept: list[str | EvalTask] = []
    skipped: dict[str, str] = {}
    for entry in spec.tasks:
        columns = [t.column for t in plan_tasks([entry], spec.include, num_fewshot=spec.num_fewshot).tasks]
        wrong = {c: output_types[c] for c in columns if output_types.get(c, GENERATE) != GENERATE}
        if wrong:
            for column, kind in wrong.items():
                skipped[column] = (f"{kind} task: a chat-completions API returns text, not the log-likelihoods "
                                   "of given answers, so it cannot be scored in the engine")
        else:
            kept.append(entry)
    return kept, skipped


def evaluate_served(
    base_url: str,
    model_name: str,
    spec: EvalSpec,
    tasks: list[str | EvalTask],
    *,
    seed: int,
    samples_dir: Path,
    chat_template: str | None = None,
    request_fields: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], ReplyLog]:
    """Score `tasks` (generate_until ones) on the served model with `spec`'s limit and generation settings
    (`request_fields`: added to every request, see `chat_model`)."""
    log = ReplyLog()
    lm = chat_model(base_url, model_name, log, seed=seed, request_fields=request_fields)
    plan = plan_tasks(tasks, spec.include, num_fewshot=spec.num_fewshot)
    result = evaluate_lm(lm, plan, limit=spec.limit, num_fewshot=spec.num_fewshot, gen_kwargs=spec.gen_kwargs,
                         seed=seed, apply_chat_template=True, samples_dir=samples_dir, chat_template=chat_template)
    assert result is not None
    return result, log
