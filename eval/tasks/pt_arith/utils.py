"""Helpers for the pt_arith / pt_arith_mc tasks (loaded by lm-eval from this file).

Self-contained on purpose: lm-eval imports it by path, with no posttrain on
sys.path when run as `lm_eval --include_path eval/tasks ...`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# A whole line "Answer: N" (optional trailing period); the strict metric reads only this.
_ANSWER_LINE = re.compile(r"^\s*answer\s*:\s*(-?\d[\d,]*)\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _to_int(text: str) -> int | None:
    text = text.replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def extract_answer_strict(response: str) -> int | None:
    """The integer on the last line of the form `Answer: N`, or None when there is none."""
    matches = _ANSWER_LINE.findall(response)
    return _to_int(matches[-1]) if matches else None


def extract_answer_flex(response: str) -> int | None:
    """The last number anywhere in the response (lenient: ignores the required format)."""
    matches = _NUMBER.findall(response)
    return _to_int(matches[-1]) if matches else None


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    response = results[0]
    gold = int(doc["answer"])
    return {
        "exact_match": float(extract_answer_strict(response) == gold),
        "exact_match_flex": float(extract_answer_flex(response) == gold),
    }


def load_docs(data_file: str, **_: Any):
    """The task's JSONL as a one-split DatasetDict (`custom_dataset` hook; lm-eval passes metadata)."""
    # Resolved against this file, not the CWD, so lm_eval works from any working directory.
    import datasets

    path = Path(__file__).resolve().with_name(data_file)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
