from __future__ import annotations

import json

import pytest

from rewards.instructions import follows_constraints


def score(reply, **constraints):
    return follows_constraints([reply], constraints=[constraints])[0]


def test_reward_word_counts():
    assert score("one two three", max_words=3) == 1.0
    assert score("one two three four", max_words=3) == 0.0
    assert score("one two", min_words=3) == 0.0
    assert score("one two three", min_words=3, max_words=3) == 1.0


def test_reward_case():
    assert score("all lower, 123!", case="lower") == 1.0
    assert score("Not lower", case="lower") == 0.0
    assert score("SHOUT 42", case="upper") == 1.0
    assert score("SHOUt", case="upper") == 0.0
    with pytest.raises(ValueError, match="case"):
        score("x", case="title")


def test_reward_keywords():
    assert score("Paris is the Capital.", keywords=["paris", "capital"]) == 1.0
    assert score("Paris is lovely.", keywords=["paris", "capital"]) == 0.0
    assert score("Paris", keywords="paris") == 1.0


def test_reward_json():
    assert score('{"a": [1, 2]}', json=True) == 1.0
    assert score('```json\n{"a": 1}\n```', json=True) == 1.0
    assert score("Sure! {\"a\": 1}", json=True) == 0.0
    assert score("plain text", json=False) == 1.0


def test_reward_bullets():
    reply = "Intro\n- one\n* two\n  • three\n**bold** line\n---"
    assert score(reply, bullets=3) == 1.0
    assert score(reply, bullets=2) == 0.0


def test_reward_fraction_and_json_string_spec():
    reply = "- apples\n- pears"
    spec = {"case": "lower", "bullets": 2, "max_words": 3, "keywords": ["plums"]}
    assert follows_constraints([reply], constraints=[json.dumps(spec)]) == [0.5]
    assert follows_constraints([reply, reply], constraints=[spec, {}]) == [0.5, 1.0]


def test_reward_arrow_style_nulls_are_absent():
    # datasets fills missing struct fields with None
    spec = {"max_words": 5, "min_words": None, "case": None, "keywords": None, "json": None, "bullets": None}
    assert follows_constraints(["a b"], constraints=[spec]) == [1.0]


def test_reward_constraints_schema_is_strict():
    with pytest.raises(ValueError, match="unknown constraint keys"):
        follows_constraints(["x"], constraints=[{"max_word": 3}])
    with pytest.raises(ValueError, match="not valid JSON"):
        follows_constraints(["x"], constraints=["{oops"])
    with pytest.raises(ValueError, match="must be a dict"):
        follows_constraints(["x"], constraints=[[1]])
