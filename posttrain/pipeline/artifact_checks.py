"""What an exported artifact does inside its engine, beyond its scores: speed on this machine, and parity with
the model it came from (the engine renders the tokenizer's chat template, replies end at the end of turn, f16
greedy tokens equal transformers'). Each check returns `{"ok": True | False | None, "detail": ...}`; None is
"not checked", with the reason. Used by pipeline/artifact_eval.py while (or after) the artifact is served.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from posttrain.evaluation.engine import ReplyLog
from posttrain.evaluation.samples import read_rows
from posttrain.run_layout import RunDir
from posttrain.serving.engines import engine_env
from posttrain.serving.process import Server

PARITY_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is 17 + 25?"}],
    [{"role": "system", "content": "You answer with a number only."}, {"role": "user", "content": "9 * 8 = ?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "Name a prime number."}],
]
"""The conversations the parity checks render and decode: plain, with a system turn, and multi-turn."""
GREEDY_TOKENS = 16
SPEED_REQUESTS = 3



def _chat(server: Server, model: str, messages: list[dict[str, str]], max_tokens: int) -> tuple[dict, float]:
    start = time.perf_counter()
    reply = server.post_json("/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": max_tokens,
                                                      "temperature": 0, "seed": 0})
    return reply, time.perf_counter() - start


def engine_speed(server: Server, model: str, replies: ReplyLog) -> dict[str, Any]:
    """Prompt tokens/s from timed one-token replies to distinct long prompts; generation tokens/s from the eval's
    replies, each one's time less its prompt's share."""
    prompt_tokens, prompt_seconds = 0, 0.0
    for i in range(SPEED_REQUESTS):
        text = f"Request {i}. " + " ".join(f"{i * 97 + j} plus {j} is {i * 97 + 2 * j}." for j in range(40))
        reply, seconds = _chat(server, model, [{"role": "user", "content": text}], 1)
        prompt_tokens += int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        prompt_seconds += seconds
    prompt_tps = prompt_tokens / prompt_seconds if prompt_seconds > 0 else None
    gen_tokens, gen_seconds = 0, 0.0
    for p, c, s in zip(replies.prompt_tokens, replies.completion_tokens, replies.seconds, strict=False):
        gen_tokens += c
        gen_seconds += max(s - (p / prompt_tps if prompt_tps else 0.0), 1e-6)
    if not gen_tokens:  # no generation task was scored: time one reply of its own
        reply, seconds = _chat(server, model, PARITY_CONVERSATIONS[0], 32)
        gen_tokens = int((reply.get("usage") or {}).get("completion_tokens") or 0)
        gen_seconds = seconds
    docs = len(replies.seconds)
    return {
        "prompt_tokens_per_s": round(prompt_tps, 1) if prompt_tps else None,
        "generation_tokens_per_s": round(gen_tokens / gen_seconds, 1) if gen_seconds > 0 and gen_tokens else None,
        "seconds_per_100_docs": round(100 * sum(replies.seconds) / docs, 1) if docs else None,
    }


def end_of_turn_parity(replies: ReplyLog, reference_samples: Path, tokenizer: Any) -> dict[str, Any]:
    """How many replies stopped (finish_reason `stop`) and how many ran to the token limit (`length`), next to how
    many of the merged model's replies in transformers reached that many tokens on the same documents: a model
    that rambles in transformers too is no engine run-on. ok: none ran on, or at most max(2, 10% of the documents)
    more than in transformers."""
    n = len(replies.finish_reasons)
    if not n:
        return {"ok": None, "detail": "no generation task was scored"}
    stopped, cut = replies.count("stop"), replies.count("length")
    detail = (f"{stopped} of {n} replies stopped (end-of-turn token or a task stop string), {cut} ran to the "
              "token limit")
    limits = [c for c, r in zip(replies.completion_tokens, replies.finish_reasons, strict=False) if r == "length"]
    reference_cut = None
    if limits and reference_samples.is_dir():
        limit = min(limits)
        texts = [row.get("raw_response") or "" for file in sorted(reference_samples.glob("*.jsonl"))
                 for row in read_rows(file) if row.get("raw_response") is not None]
        reference_cut = sum(1 for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= limit)
        detail += f"; the merged model in transformers reached {limit} tokens in {reference_cut} of {len(texts)}"
    # An engine that misses the end-of-turn token runs on in nearly every reply; a few more replies at the limit
    # than transformers (greedy ties broken differently by a quantized model) are no such sign.
    ok = cut == 0 or (reference_cut is not None and cut - reference_cut <= max(2, round(0.1 * n)))
    return {"ok": ok, "detail": detail, "stop": stopped, "length": cut, "n": n, "reference_length": reference_cut}


def _template_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def llama_cpp_probe(python: Path, file: Path, tokenizer: Any, *, greedy: bool) -> dict[str, Any]:
    """What llama-cpp-python renders for the parity conversations and, for f16, its greedy tokens."""
    request = {"model": str(file), "conversations": PARITY_CONVERSATIONS, "max_tokens": GREEDY_TOKENS,
               "greedy": [_template_ids(tokenizer, c) for c in PARITY_CONVERSATIONS] if greedy else []}
    script = Path(__file__).resolve().parents[1] / "serving" / "llama_cpp_probe.py"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        done = subprocess.run([str(python), str(script), str(path)], capture_output=True, text=True,
                              env=engine_env(), timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"llama-cpp-python could not load {file}:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    answer["greedy_prompts"] = request["greedy"]
    return answer


def gguf_template_parity(probe: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    mismatches = []
    for i, messages in enumerate(PARITY_CONVERSATIONS):
        want, got = _template_text(tokenizer, messages), probe["prompts"][i]
        if want != got:
            mismatches.append(f"conversation {i + 1}: the engine renders {got!r}, the tokenizer {want!r}")
    tokens_equal = all(_template_ids(tokenizer, m) == probe["prompt_tokens"][i]
                       for i, m in enumerate(PARITY_CONVERSATIONS))
    detail = (f"llama-cpp-python's {probe['chat_format']} formatter (the GGUF's own template) renders "
              f"{len(PARITY_CONVERSATIONS) - len(mismatches)} of {len(PARITY_CONVERSATIONS)} conversations as "
              f"tokenizer.apply_chat_template does; prompt token ids {'equal' if tokens_equal else 'differ'}")
    return {"ok": not mismatches, "detail": detail + ("; " + "; ".join(mismatches) if mismatches else ""),
            "chat_format": probe["chat_format"], "tokens_equal": tokens_equal}


def vllm_template_parity(server: Server, model: str, tokenizer: Any) -> dict[str, Any]:
    equal = 0
    problems = []
    for i, messages in enumerate(PARITY_CONVERSATIONS):
        got = server.post_json("/tokenize", {"model": model, "messages": messages, "add_generation_prompt": True})
        want = _template_ids(tokenizer, messages)
        if [int(t) for t in got.get("tokens", [])] == want:
            equal += 1
        else:
            problems.append(f"conversation {i + 1}: vLLM {got.get('tokens')}, tokenizer {want}")
    detail = (f"vLLM's /tokenize renders {equal} of {len(PARITY_CONVERSATIONS)} conversations to the token ids of "
              "tokenizer.apply_chat_template")
    return {"ok": not problems, "detail": detail + ("; " + "; ".join(problems) if problems else "")}


def greedy_parity(run: RunDir, stage: str, probe: dict[str, Any]) -> dict[str, Any]:
    """f16 greedy tokens of llama.cpp against transformers' greedy on the merged lineage (fp32)."""
    import torch

    from posttrain.models.lineage import materialize

    model = materialize(run.lineage(stage), dtype="float32", purpose="inference")
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    same = 0
    problems = []
    for i, prompt in enumerate(probe["greedy_prompts"]):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 max_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=next(iter(eos_ids), 0))
        want = _until_eos(out[0, len(prompt):].tolist(), eos_ids)
        got = _until_eos(probe["greedy"][i], eos_ids | {probe.get("eos", -1)})
        if want == got:
            same += 1
        else:
            problems.append(f"prompt {i + 1}: llama.cpp {got}, transformers {want}")
    del model
    detail = f"{same} of {len(probe['greedy_prompts'])} prompts: the same {GREEDY_TOKENS} greedy token ids"
    return {"ok": not problems, "detail": detail + ("; " + "; ".join(problems) if problems else "")}


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[: i + 1]
    return tokens


# -- the leaderboard ---------------------------------------------------------------------------------------------
