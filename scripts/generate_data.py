"""Generate posttrain's bundled data, deterministically (same seed, same bytes).

    python scripts/generate_data.py [--out-root .] [--seed 1234]

Writes the quickstart training data (data/quickstart/), the format-conversion
examples (data/examples/) and the held-out lm-eval data (eval/tasks/*/).
Train and eval never share a prompt: the eval sets are drawn first, and a train
row is rejected if its question equals an eval question or shares a 13-word
span with one. Pure Python, a few seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

_SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(_SCRIPTS))  # run as a script: make the sibling `datagen` package importable

from datagen import chat, instructions, planting  # noqa: E402
from datagen.math_problems import ANSWER_INSTRUCTION, Problem, distractors, make_problem  # noqa: E402
from datagen.similarity import NearDupGuard, ngrams  # noqa: E402
from datagen.topics import EVAL_KEYWORDS, EVAL_TOPICS, TOPICS  # noqa: E402

REPO_ROOT = _SCRIPTS.parent
MC_INSTRUCTION = 'Reply with only "Answer: <number>".'

# Sizes of what is written (rows).
N_EVAL = 200
N_CHAT = {"math": 650, "instruct": 450, "chat": 400}
N_MULTI_TURN = {"math": 40, "chat": 30}
N_PREFS = {"math": 440, "instruct": 300, "chat": 60}
N_PROMPTS = {"math": 300, "instruct": 200}
N_EXAMPLES = 50


def _load_task_utils(task_dir: str) -> ModuleType:
    """The eval tasks' own checkers, so the generator verifies targets with the metric's code."""
    path = REPO_ROOT / "eval" / "tasks" / task_dir / "utils.py"
    spec = importlib.util.spec_from_file_location(f"_pt_{task_dir}_utils", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IFEVAL = _load_task_utils("pt_ifeval")
ARITH = _load_task_utils("pt_arith")


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


class TrainPool:
    """Draws train items that are unique and disjoint from the eval prompts."""

    def __init__(self, eval_texts: Iterable[str]) -> None:
        self.eval_texts = set(eval_texts)
        self.eval_grams: set[tuple[str, ...]] = set()
        for t in self.eval_texts:
            self.eval_grams |= ngrams(t)
        self.used: set[str] = set()
        self.guard = NearDupGuard(0.6)

    def accept(self, key: str, bucket: str | None = None, full_text: str | None = None,
               prompt: str | None = None) -> bool:
        if key in self.used or key in self.eval_texts or ngrams(prompt or key) & self.eval_grams:
            return False
        if bucket is not None and not self.guard.admit(bucket, full_text or key):
            return False
        self.used.add(key)
        return True

    def problem(self, rng: random.Random, guarded: bool = False) -> Problem:
        while True:
            p = make_problem(rng)
            if self.accept(p.question, p.template if guarded else None, f"{p.question} {p.solution()}", p.prompt):
                return p

    def instruction(self, rng: random.Random, guarded: bool = False) -> tuple[instructions.Instruction, Any]:
        while True:
            topic = rng.choice(TOPICS)
            inst = instructions.make_train_instruction(topic, rng, IFEVAL.check_constraints)
            if inst and self.accept(inst.prompt, topic.subject if guarded else None, f"{inst.prompt} {inst.target}"):
                return inst, topic

    def chat(self, rng: random.Random, multi_turn: bool = False) -> tuple[list[dict[str, str]], Any]:
        while True:
            topic = rng.choice(TOPICS)
            messages = chat.make_chat(topic, rng, multi_turn)
            text = " ".join(m["content"] for m in messages)
            if self.accept(text, topic.subject, text):
                return messages, topic


# --- eval sets -------------------------------------------------------------------------------------


def build_eval(seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(f"{seed}:eval")
    seen: set[str] = set()

    def unique_problems(n: int) -> list[Problem]:
        out = []
        while len(out) < n:
            p = make_problem(rng)
            if p.question not in seen:
                seen.add(p.question)
                out.append(p)
        return out

    arith = [{"id": f"arith-{i:04d}", "template": p.template, "question": p.question, "prompt": p.prompt,
              "answer": str(p.answer)} for i, p in enumerate(unique_problems(N_EVAL))]
    arith_mc = []
    for i, p in enumerate(unique_problems(N_EVAL)):
        options = [p.answer, *distractors(p, rng)]
        rng.shuffle(options)
        arith_mc.append({"id": f"arith-mc-{i:04d}", "template": p.template, "question": p.question,
                         "prompt": f"{p.question} {MC_INSTRUCTION}", "choices": [f"Answer: {o}" for o in options],
                         "label": options.index(p.answer), "answer": str(p.answer)})
    ifeval, prompts = [], set()
    while len(ifeval) < N_EVAL:
        inst = instructions.make_eval_instruction(rng.choice(EVAL_TOPICS), rng, EVAL_KEYWORDS)
        if inst.prompt not in prompts:
            prompts.add(inst.prompt)
            ifeval.append({"id": f"ifeval-{len(ifeval):04d}", "prompt": inst.prompt,
                           "constraints": inst.constraints})
    return {"pt_arith/arith_test.jsonl": arith, "pt_arith/arith_mc_test.jsonl": arith_mc,
            "pt_ifeval/ifeval_test.jsonl": ifeval}


def eval_prompt_texts(eval_sets: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    for rows in eval_sets.values():
        for r in rows:
            out.append(r["prompt"])
            if "question" in r:
                out.append(r["question"])
    return out


# --- train sets ------------------------------------------------------------------------------------


def _follow_up(p: Problem, rng: random.Random) -> tuple[str, str]:
    k = rng.randint(2, 9)
    if rng.random() < 0.5:
        return (f"Now add {k} to that result. {ANSWER_INSTRUCTION}", f"{p.answer} + {k} = {p.answer + k}.\nAnswer: {p.answer + k}")
    return (f"Now multiply that result by {k}. {ANSWER_INSTRUCTION}",
            f"{p.answer} × {k} = {p.answer * k}.\nAnswer: {p.answer * k}")


def build_chat(pool: TrainPool, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:chat")
    rows: list[dict[str, Any]] = []
    for i in range(N_CHAT["math"]):
        p = pool.problem(rng, guarded=True)
        messages = [_user(p.prompt), _assistant(p.solution())]
        if i < N_MULTI_TURN["math"]:
            q, a = _follow_up(p, rng)
            messages += [_user(q), _assistant(a)]
        rows.append({"messages": messages})
    for _ in range(N_CHAT["instruct"]):
        inst, _topic = pool.instruction(rng, guarded=True)
        rows.append({"messages": [_user(inst.prompt), _assistant(inst.target)]})
    for i in range(N_CHAT["chat"]):
        messages, _topic = pool.chat(rng, multi_turn=i < N_MULTI_TURN["chat"])
        rows.append({"messages": messages})
    rng.shuffle(rows)
    return rows


def _wrong_solution(p: Problem, rng: random.Random) -> str:
    wrong = distractors(p, rng, k=1)[0]
    style = rng.choice(("slip", "no_line", "bare"))
    if style == "slip":
        last = p.steps[-1].replace(f"= {p.answer}.", f"= {wrong}.")
        return "\n".join([*p.steps[:-1], last, f"Answer: {wrong}"])
    if style == "no_line":  # right number, but the required final line is missing
        return " ".join(p.steps) + f" So the result is {p.answer}."
    return f"Answer: {wrong}"


def build_prefs(pool: TrainPool, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:prefs")
    rows: list[dict[str, Any]] = []
    for _ in range(N_PREFS["math"]):
        p = pool.problem(rng)
        rejected = _wrong_solution(p, rng)
        assert ARITH.extract_answer_strict(rejected) != p.answer
        rows.append({"prompt": [_user(p.prompt)], "chosen": p.solution(), "rejected": rejected})
    made = 0
    while made < N_PREFS["instruct"]:
        inst, topic = pool.instruction(rng)
        rejected = instructions.violate(inst.target, inst.constraints, rng, topic)
        if all(IFEVAL.check_constraints(rejected, inst.constraints).values()):
            continue  # this violation happened to satisfy everything; draw again
        rows.append({"prompt": [_user(inst.prompt)], "chosen": inst.target, "rejected": rejected})
        made += 1
    for _ in range(N_PREFS["chat"]):
        messages, topic = pool.chat(rng)
        rows.append({"prompt": [messages[0]], "chosen": messages[1]["content"],
                     "rejected": chat.unhelpful_reply(topic, rng)})
    rng.shuffle(rows)
    return rows


def build_prompts(pool: TrainPool, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:prompts")
    rows: list[dict[str, Any]] = []
    for _ in range(N_PROMPTS["math"]):
        p = pool.problem(rng)
        rows.append({"prompt": [_user(p.prompt)], "answer": str(p.answer)})
    for _ in range(N_PROMPTS["instruct"]):
        inst, _topic = pool.instruction(rng)
        rows.append({"prompt": [_user(inst.prompt)], "constraints": inst.constraints})
    rng.shuffle(rows)
    return rows


def build_examples(pool: TrainPool, seed: int) -> tuple[list[dict], list[dict]]:
    """The same kind of rows in alpaca and ShareGPT shapes, for the format-conversion demo."""
    rng = random.Random(f"{seed}:examples")
    alpaca, sharegpt = [], []
    for i in range(N_EXAMPLES):
        if i % 2 == 0:
            p = pool.problem(rng)
            alpaca.append({"instruction": f"Solve the word problem. {ANSWER_INSTRUCTION}",
                           "input": p.question, "output": p.solution()})
        else:
            inst, _ = pool.instruction(rng)
            alpaca.append({"instruction": inst.prompt, "input": "", "output": inst.target})
    for i in range(N_EXAMPLES):
        messages, _ = pool.chat(rng, multi_turn=i % 5 == 0)
        turns = [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in messages]
        if i % 4 == 0:
            turns.insert(0, {"from": "system", "value": "You are a concise, helpful assistant."})
        sharegpt.append({"conversations": turns})
    return alpaca, sharegpt


def build_raw(chat_rows: list[dict], eval_sets: dict[str, list[dict]], seed: int) -> tuple[list[str], dict]:
    rng = random.Random(f"{seed}:raw")
    # Spare rows feed malformed lines only (dropped before any dedup), so no guard is needed.
    spare = [{"messages": chat.make_chat(rng.choice(TOPICS), rng)} for _ in range(40)]
    contaminated: list[tuple[str, dict]] = []
    for doc in eval_sets["pt_arith/arith_test.jsonl"][:12]:
        steps = f"The answer is {doc['answer']}.\nAnswer: {doc['answer']}"
        contaminated.append(("pt_arith", {"messages": [_user(doc["prompt"]), _assistant(steps)]}))
    for doc in eval_sets["pt_arith/arith_mc_test.jsonl"][:6]:
        contaminated.append(("pt_arith_mc", {"messages": [_user(doc["prompt"]), _assistant(f"Answer: {doc['answer']}")]}))
    for doc in eval_sets["pt_ifeval/ifeval_test.jsonl"][:6]:
        contaminated.append(("pt_ifeval", {"messages": [_user(doc["prompt"]), _assistant("Here is my reply.")]}))
    return planting.plant(chat_rows, spare, contaminated, rng)


# --- checks and output -----------------------------------------------------------------------------


def _user_texts(rows: Iterable[dict]) -> Iterable[str]:
    for r in rows:
        for m in r.get("messages", r.get("prompt", [])):
            if m["role"] == "user":
                yield m["content"]


def check_disjoint(train_files: dict[str, list[dict]], eval_sets: dict[str, list[dict]]) -> None:
    eval_texts = set(eval_prompt_texts(eval_sets))
    grams: set[tuple[str, ...]] = set()
    for t in eval_texts:
        grams |= ngrams(t)
    for name, rows in train_files.items():
        for text in _user_texts(rows):
            question = text.removesuffix(" " + ANSWER_INSTRUCTION)
            if text in eval_texts or question in eval_texts or ngrams(text) & grams:
                raise AssertionError(f"{name}: train prompt overlaps the eval sets: {text[:80]!r}")


def _write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")


def generate(out_root: Path, seed: int = 1234, log: Callable[[str], None] = print) -> dict[str, int]:
    """Write every bundled file under `out_root`; returns {relative path: rows}."""
    eval_sets = build_eval(seed)
    pool = TrainPool(eval_prompt_texts(eval_sets))
    chat_rows = build_chat(pool, seed)
    prefs = build_prefs(pool, seed)
    prompts = build_prompts(pool, seed)
    alpaca, sharegpt = build_examples(pool, seed)
    check_disjoint({"chat": chat_rows, "prefs": prefs, "prompts": prompts}, eval_sets)
    raw_lines, manifest = build_raw(chat_rows, eval_sets, seed)

    files: dict[str, list[Any]] = {
        "data/quickstart/chat.jsonl": chat_rows,
        "data/quickstart/prefs.jsonl": prefs,
        "data/quickstart/prompts.jsonl": prompts,
        "data/quickstart/raw_chat.jsonl": raw_lines,
        "data/examples/alpaca.jsonl": alpaca,
        "data/examples/sharegpt.jsonl": sharegpt,
        **{f"eval/tasks/{k}": v for k, v in eval_sets.items()},
    }
    for rel, rows in files.items():
        _write_jsonl(out_root / rel, rows)
        log(f"  {rel}: {len(rows)} rows")
    manifest_path = out_root / "data/quickstart/raw_chat.planted.json"
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8", newline="\n")
    log(f"  {manifest_path.relative_to(out_root)}: {sum(c['count'] for c in manifest['classes'].values())} planted")
    return {rel: len(rows) for rel, rows in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-root", type=Path, default=REPO_ROOT, help="folder that receives data/ and eval/tasks/")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    generate(args.out_root, args.seed)
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
