"""The metric code the shipped lm-eval tasks run: answer extraction and the constraint checker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from posttrain.paths import eval_tasks_dir


def _load(task_dir: str) -> ModuleType:
    path = Path(eval_tasks_dir()) / task_dir / "utils.py"
    spec = importlib.util.spec_from_file_location(f"_test_{task_dir}_utils", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arith = _load("pt_arith")
ifeval = _load("pt_ifeval")


@pytest.mark.parametrize(
    ("response", "strict", "flex"),
    [
        ("12 + 7 = 19.\n19 - 5 = 14.\nAnswer: 14", 14, 14),
        ("Answer: 14.", 14, 14),
        ("answer:  1,200", 1200, 1200),
        ("Answer: 3\nWait, let me redo it.\nAnswer: 5", 5, 5),
        ("12 + 7 = 19, minus 5 gives 14.", None, 14),  # right number, missing line -> strict miss
        ("The Answer: 14 is what I got", None, 14),  # not a line of its own
        ("I think it is about 14 apples. Answer: fourteen", None, 14),
        ("no numbers here", None, None),
        ("Answer: 2.5", None, None),
    ],
)
def test_answer_extraction(response: str, strict: int | None, flex: int | None) -> None:
    assert arith.extract_answer_strict(response) == strict
    assert arith.extract_answer_flex(response) == flex


def test_arith_process_results() -> None:
    doc = {"answer": "14"}
    assert arith.process_results(doc, ["19 - 5 = 14.\nAnswer: 14"]) == {"exact_match": 1.0, "exact_match_flex": 1.0}
    assert arith.process_results(doc, ["19 - 5 = 14."]) == {"exact_match": 0.0, "exact_match_flex": 1.0}
    assert arith.process_results(doc, ["Answer: 15"]) == {"exact_match": 0.0, "exact_match_flex": 0.0}


@pytest.mark.parametrize(
    ("text", "constraints", "expected"),
    [
        ("one two three", {"max_words": 3}, {"max_words": True}),
        ("one two three four", {"max_words": 3}, {"max_words": False}),
        ("one two three", {"min_words": 4}, {"min_words": False}),
        ("all quiet here.", {"case": "lower"}, {"case": True}),
        ("All quiet here.", {"case": "lower"}, {"case": False}),
        ("LOUD AND CLEAR!", {"case": "upper"}, {"case": True}),
        ("1234", {"case": "upper"}, {"case": False}),  # no letters is not "upper case"
        ("Rain falls from clouds.", {"keywords": ["rain", "clouds"]}, {"keywords": True}),
        ("Rainbows are pretty.", {"keywords": ["rain"]}, {"keywords": False}),  # whole words only
        ('{"topic": "bees", "points": ["a"]}', {"json": True}, {"json": True}),
        ('```json\n{"a": 1}\n```', {"json": True}, {"json": True}),
        ("Sure! {\"a\": 1}", {"json": True}, {"json": False}),
        ("14", {"json": True}, {"json": False}),  # a bare number is not a JSON reply
        ("- a\n- b\n* c", {"bullets": 3}, {"bullets": True}),
        ("Intro:\n- a\n- b", {"bullets": 3}, {"bullets": False}),
        ("- a\n- b", {"bullets": 2, "case": "lower", "min_words": None}, {"bullets": True, "case": True}),
    ],
)
def test_constraint_checker(text: str, constraints: dict, expected: dict) -> None:
    assert ifeval.check_constraints(text, constraints) == expected


def test_unknown_constraint_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown constraint"):
        ifeval.check_constraints("x", {"max_sentences": 2})


def test_ifeval_process_results_counts_fractions() -> None:
    doc = {"constraints": {"max_words": 5, "case": "lower", "keywords": ["bee"], "json": None}}
    assert ifeval.process_results(doc, ["a bee buzzes"]) == {"constraint_acc": 1.0, "prompt_acc": 1.0}
    result = ifeval.process_results(doc, ["A Bee buzzes around the hive all day"])
    assert result == {"constraint_acc": pytest.approx(1 / 3), "prompt_acc": 0.0}
