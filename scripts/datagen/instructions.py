"""Instruction-following prompts with verifiable constraints, and targets that satisfy them."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datagen.topics import Topic

# Constraint combinations that a short answer can satisfy at once.
COMBOS: tuple[tuple[str, ...], ...] = (
    ("max_words",), ("min_words",), ("case",), ("keywords",), ("json",), ("bullets",),
    ("max_words", "keywords"), ("bullets", "case"), ("bullets", "keywords"), ("min_words", "keywords"),
    ("case", "keywords"), ("json", "keywords"), ("max_words", "case"), ("min_words", "case"),
)

_VERBS = {
    "concept": ("Explain {s}.", "Describe {s}.", "Tell me about {s}.", "Give a short overview of {s}."),
    "advice": ("Give advice on {s}.", "Share some tips on {s}.", "Explain {s}.", "Tell me {s}."),
}


@dataclass
class Instruction:
    prompt: str
    constraints: dict[str, Any]
    target: str | None = None  # None for eval prompts (no reference answer needed)


def draw_constraints(rng: random.Random, keyword_pool: tuple[str, ...]) -> dict[str, Any]:
    combo = rng.choice(COMBOS)
    c: dict[str, Any] = {}
    for key in combo:
        if key == "max_words":
            c[key] = rng.randint(18, 45)
        elif key == "min_words":
            c[key] = rng.randint(20, 45)
        elif key == "case":
            c[key] = "upper" if "json" in combo else rng.choice(("lower", "upper"))
        elif key == "keywords":
            c[key] = rng.sample(keyword_pool, rng.choice((1, 1, 2)))
        elif key == "json":
            c[key] = True
        elif key == "bullets":
            c[key] = rng.randint(2, 5)
    if "json" in c and "case" in c:  # JSON in upper case is odd; keep the combo simple
        del c["case"]
    return c


def describe(constraints: dict[str, Any], rng: random.Random) -> str:
    """The natural-language version of the constraints, one sentence each."""
    parts: list[str] = []
    for key, v in constraints.items():
        if key == "max_words":
            parts.append(rng.choice((f"Answer in at most {v} words.", f"Use no more than {v} words.",
                                     f"Keep it to {v} words or fewer.")))
        elif key == "min_words":
            parts.append(rng.choice((f"Write at least {v} words.", f"Use no fewer than {v} words.")))
        elif key == "case" and v == "lower":
            parts.append(rng.choice(("Write your whole reply in lowercase letters.",
                                     "Use only lowercase letters.")))
        elif key == "case":
            parts.append(rng.choice(("Write your whole reply in capital letters.",
                                     "Use only uppercase letters.")))
        elif key == "keywords":
            quoted = " and ".join(f'"{k}"' for k in v)
            noun = "word" if len(v) == 1 else "words"
            parts.append(rng.choice((f"Include the {noun} {quoted}.", f"Make sure to use the {noun} {quoted}.")))
        elif key == "json":
            # Under 13 words: a fixed sentence that long would count as train/eval overlap.
            parts.append(rng.choice(('Reply in JSON with the keys "topic" and "points".',
                                     'Answer as a JSON object with keys "topic" and "points".')))
        elif key == "bullets":
            parts.append(rng.choice((f'Use exactly {v} bullet points, each starting with "- ".',
                                     f"Reply with exactly {v} bullet points.")))
    rng.shuffle(parts)  # varied order: fewer fixed word spans shared between train and eval prompts
    return " ".join(parts)


def _pick_facts(topic: Topic, constraints: dict[str, Any], rng: random.Random) -> list[str] | None:
    facts = list(topic.facts)
    rng.shuffle(facts)
    must = list(constraints.get("keywords", []))
    # Facts holding a required keyword go first so length limits keep them.
    facts.sort(key=lambda f: not any(k in f.lower() for k in must))
    if "bullets" in constraints:
        n = constraints["bullets"]
        chosen = facts[:n] if len(facts) >= n else None
    elif "max_words" in constraints:
        chosen, words = [], 0
        for f in facts:
            if words + len(f.split()) <= constraints["max_words"]:
                chosen.append(f)
                words += len(f.split())
    elif "min_words" in constraints:
        chosen, words = [], 0
        for f in facts:
            if words >= constraints["min_words"]:
                break
            chosen.append(f)
            words += len(f.split())
    else:
        chosen = facts[: rng.randint(2, 3)]
    # Back to the written order: the facts of a topic read best in sequence.
    return sorted(chosen, key=topic.facts.index) if chosen else None


def _render(topic: Topic, facts: list[str], constraints: dict[str, Any]) -> str:
    if constraints.get("json"):
        text = json.dumps({"topic": topic.subject, "points": facts})
    elif "bullets" in constraints:
        text = "\n".join(f"- {f}" for f in facts)
    else:
        text = " ".join(facts)
    case = constraints.get("case")
    if case == "lower":
        text = text.lower()
    elif case == "upper":
        text = text.upper()
    return text


def make_train_instruction(
    topic: Topic, rng: random.Random, check: Callable[[str, dict[str, Any]], dict[str, bool]]
) -> Instruction | None:
    """A prompt and a target that passes `check`; None when this draw cannot be satisfied."""
    constraints = draw_constraints(rng, topic.keywords)
    facts = _pick_facts(topic, constraints, rng)
    if facts is None:
        return None
    target = _render(topic, facts, constraints)
    if not all(check(target, constraints).values()):
        return None
    verb = rng.choice(_VERBS[topic.kind]).format(s=topic.subject)
    return Instruction(f"{verb} {describe(constraints, rng)}", constraints, target)


def make_eval_instruction(subject: str, rng: random.Random, keyword_pool: tuple[str, ...]) -> Instruction:
    constraints = draw_constraints(rng, keyword_pool)
    verb = rng.choice(_VERBS["concept"]).format(s=subject)
    return Instruction(f"{verb} {describe(constraints, rng)}", constraints)


def violate(target: str, constraints: dict[str, Any], rng: random.Random, topic: Topic) -> str:
    """A plausible reply that breaks at least one constraint (the rejected side of a pair)."""
    key = rng.choice(sorted(constraints))
    if key == "max_words":
        return " ".join([target, *topic.facts])
    if key == "min_words":
        return topic.facts[0].split(".")[0] + "."
    if key == "case":
        return target.upper() if constraints["case"] == "lower" else target.lower()
    if key == "keywords":
        text = target
        for k in constraints["keywords"]:
            text = text.replace(k, "it").replace(k.upper(), "IT").replace(k.capitalize(), "It")
        return text
    if key == "json":
        return "Here are the points: " + " ".join(topic.facts[:2])
    # bullets: one too many, or a paragraph without bullets
    return " ".join(line.lstrip("- ") for line in target.splitlines())
