"""Verifiable-constraint checker for the pt_ifeval task (loaded by lm-eval from this file).

The constraint schema is shared across posttrain (data generator, rewards):
`{"max_words": int, "min_words": int, "case": "lower"|"upper", "keywords": [str],
"json": true, "bullets": int}`, any subset. Keys whose value is None are ignored
(a datasets column of dicts fills absent keys with None).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_BULLET = re.compile(r"^\s*[-*•]\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n?```$", re.DOTALL)


def word_count(text: str) -> int:
    return len(text.split())


def _is_json(text: str) -> bool:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:  # a fenced block is how chat models usually emit JSON; accept it
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _has_keyword(text: str, keyword: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(keyword.lower())}(?!\w)", text.lower()) is not None


def _case_ok(text: str, case: str) -> bool:
    if not any(ch.isalpha() for ch in text):
        return False
    return text == text.lower() if case == "lower" else text == text.upper()


def check_constraints(text: str, constraints: dict[str, Any]) -> dict[str, bool]:
    """One verdict per constraint present in `constraints`."""
    text = text.strip()
    checks = {
        "max_words": lambda v: word_count(text) <= int(v),
        "min_words": lambda v: word_count(text) >= int(v),
        "case": lambda v: _case_ok(text, str(v)),
        "keywords": lambda v: all(_has_keyword(text, k) for k in v),
        "json": lambda v: _is_json(text) == bool(v),
        "bullets": lambda v: len(_BULLET.findall(text)) == int(v),
    }
    verdicts: dict[str, bool] = {}
    for key, value in constraints.items():
        if value is None:
            continue
        if key not in checks:
            raise ValueError(f"unknown constraint {key!r}; known: {sorted(checks)}")
        verdicts[key] = bool(checks[key](value))
    return verdicts


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    verdicts = check_constraints(results[0], doc["constraints"])
    passed = sum(verdicts.values())
    return {
        "constraint_acc": passed / len(verdicts) if verdicts else 0.0,
        "prompt_acc": float(bool(verdicts) and passed == len(verdicts)),
    }


def load_docs(data_file: str, **_: Any):
    """The task's JSONL as a one-split DatasetDict (`custom_dataset` hook; lm-eval passes metadata)."""
    # Resolved against this file, not the CWD, so lm_eval works from any working directory.
    import datasets

    path = Path(__file__).resolve().with_name(data_file)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
