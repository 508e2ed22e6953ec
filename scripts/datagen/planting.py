"""The raw mix for the curation demo: clean chat rows plus planted, counted problems.

Every planted line is listed in a manifest (1-based line numbers) so the curation
tests can check each class is caught. Duplicates always come after their source
line, so a keep-first dedup removes exactly the planted copy.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any

from datagen.similarity import NearDupGuard

COUNTS = {
    "exact_duplicate": 40,
    "near_duplicate": 40,
    "broken_json": 8,
    "wrong_roles": 8,
    "empty_assistant": 8,
    "missing_messages": 6,
    "contamination": 24,
    "email": 12,
    "phone": 12,
}
_MALFORMED = ("broken_json", "wrong_roles", "empty_assistant", "missing_messages")
_PII = ("email", "phone")

_FIRST = ("jane", "omar", "li", "pablo", "greta", "sunil", "ada", "marek", "fatima", "kofi", "yuki", "rosa")
_LAST = ("doe", "haddad", "wei", "ruiz", "berg", "patel", "king", "nowak", "zahra", "mensah", "sato", "costa")
_DOMAINS = ("example.com", "mailbox.org", "example.net", "post.example")
_RECIPIENTS = ("my landlord", "my team", "the school", "a plumber", "my neighbour", "the club treasurer")
_THINGS = ("the broken heater", "next week's meeting", "the parcel", "the garden party", "our shared bike",
           "the rent receipt", "the volunteer rota", "the spare keys")


@dataclass
class Planted:
    kind: str
    line: str  # the exact JSONL line to write
    source: int | None = None  # index of the base row it copies (duplicates only)
    detail: dict[str, Any] = field(default_factory=dict)


def _dump(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False)


def _word_count(row: dict) -> int:
    return sum(len(m["content"].split()) for m in row["messages"])


def _near_edit(row: dict, rng: random.Random) -> tuple[dict, str]:
    """A copy with one small edit in the last assistant turn."""
    new = copy.deepcopy(row)
    msg = new["messages"][-1]
    text = msg["content"]
    edit = rng.choice(("word", "punctuation", "whitespace"))
    if edit == "word":
        words = text.split(" ")
        i = rng.randrange(len(words))
        extra = rng.choice(("really", "also", "then", "just"))
        words[i] = (extra.upper() if text.isupper() else extra) + " " + words[i]
        text = " ".join(words)
    elif edit == "punctuation":
        text = text[:-1] + "!" if text.endswith(".") else text + "."
    else:
        i = text.find(" ")
        text = text[:i] + "  " + text[i:] + " "
    msg["content"] = text
    return new, edit


def _pii_row(kind: str, rng: random.Random) -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    name = f"{first.capitalize()} {last.capitalize()}"
    thing, who = rng.choice(_THINGS), rng.choice(_RECIPIENTS)
    if kind == "email":
        contact = f"{first}.{last}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"
        user = rng.choice((
            f"Can you help me write a short message to {who} about {thing}? My email is {contact}.",
            f"Draft a two-line note to {who} about {thing} and tell them to reply to {contact}.",
        ))
    else:
        contact = rng.choice((f"+1 555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                              f"(555) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                              f"+44 20 7946 {rng.randint(1000, 9999)}"))
        user = rng.choice((
            f"Write a note for {who} saying they can call me at {contact} about {thing}.",
            f"Please draft a text to {who} about {thing}; my number is {contact}.",
        ))
    reply = rng.choice((
        f"Here is a draft:\nHello, I am writing about {thing}. You can reach me at {contact}. Best, {name}",
        f"Sure. Hi! Just a quick note about {thing}: please get in touch at {contact} when you can. {name}",
    ))
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def _malformed_line(kind: str, row: dict, rng: random.Random) -> str:
    if kind == "broken_json":
        text = _dump(row)
        return text[: rng.randint(len(text) // 3, len(text) - 5)]
    if kind == "wrong_roles":
        bad = copy.deepcopy(row)
        bad["messages"][0]["role"] = rng.choice(("narrator", "customer", "moderator"))
        bad["messages"][1]["role"] = rng.choice(("robot", "narrator", "helper"))
        return _dump(bad)
    if kind == "empty_assistant":
        bad = copy.deepcopy(row)
        bad["messages"][-1]["content"] = rng.choice(("", " ", "\n"))
        return _dump(bad)
    return _dump(rng.choice(({"text": row["messages"][0]["content"]},
                             {"messages": row["messages"][0]["content"]},
                             {"conversation": row["messages"]})))


def plant(
    base: list[dict], spare: list[dict], contaminated: list[tuple[str, dict]], rng: random.Random
) -> tuple[list[str], dict[str, Any]]:
    """Lines of the raw file and its manifest.

    `spare` rows (not in `base`) supply malformed lines; `contaminated` holds
    (eval task name, row whose user turn is an eval prompt).
    """
    planted: list[Planted] = []
    for i in rng.sample(range(len(base)), COUNTS["exact_duplicate"]):
        planted.append(Planted("exact_duplicate", _dump(base[i]), source=i))
    # Word edits need long rows to stay clearly "near" under word-shingle similarity.
    long_rows = [i for i, r in enumerate(base) if _word_count(r) >= 60]
    for i in rng.sample(long_rows, COUNTS["near_duplicate"]):
        row, edit = _near_edit(base[i], rng)
        planted.append(Planted("near_duplicate", _dump(row), source=i, detail={"edit": edit}))
    spares = iter(spare)
    for kind in _MALFORMED:
        for _ in range(COUNTS[kind]):
            planted.append(Planted(kind, _malformed_line(kind, next(spares), rng)))
    for task, row in contaminated[: COUNTS["contamination"]]:
        planted.append(Planted("contamination", _dump(row), detail={"task": task}))
    guard = NearDupGuard(0.5)
    for kind in _PII:
        made = 0
        while made < COUNTS[kind]:
            row = _pii_row(kind, rng)
            if guard.admit("pii", _dump(row)):
                planted.append(Planted(kind, _dump(row)))
                made += 1

    # Interleave: base rows keep their order; a copy always lands after its source.
    keyed: list[tuple[float, int, str, Planted | None]] = [(float(i), 0, _dump(r), None) for i, r in enumerate(base)]
    for j, p in enumerate(planted):
        low = p.source + 0.5 if p.source is not None else -0.5
        keyed.append((rng.uniform(low, len(base)), j + 1, p.line, p))
    keyed.sort(key=lambda k: (k[0], k[1]))

    base_line = {}  # base index -> 1-based line
    lines: list[str] = []
    for _, _, line, p in keyed:
        lines.append(line)
        if p is None:
            base_line[len(base_line)] = len(lines)
    manifest = _manifest(keyed, base_line, len(base))
    return lines, manifest


def _manifest(keyed: list, base_line: dict[int, int], n_base: int) -> dict[str, Any]:
    classes: dict[str, dict[str, Any]] = {}
    for lineno, (_, _, _, p) in enumerate(keyed, 1):
        if p is None:
            continue
        entry = classes.setdefault(p.kind, {"count": 0, "lines": []})
        entry["count"] += 1
        entry["lines"].append(lineno)
        if p.source is not None:
            entry.setdefault("source_lines", []).append(base_line[p.source])
        for k, v in p.detail.items():
            entry.setdefault(f"{k}s", []).append(v)
    groups = {"malformed": _MALFORMED, "pii": _PII}
    summary = {g: sum(classes[k]["count"] for k in kinds) for g, kinds in groups.items()}
    return {
        "total_lines": len(keyed),
        "clean_rows": n_base,
        "classes": classes,
        "groups": {g: {"kinds": list(k), "count": summary[g]} for g, k in groups.items()},
        "notes": (
            "Line numbers are 1-based. Duplicates come after their source line (source_lines). "
            "Near-duplicate edits touch the last assistant turn only: 'word' inserts one word, "
            "'punctuation' changes the final mark, 'whitespace' doubles a space and adds a trailing one "
            "(a whitespace-normalizing exact dedup also catches those). Contamination rows copy an eval "
            "prompt verbatim as the user turn. The clean rows hold no duplicates, no PII and no eval prompts."
        ),
    }
