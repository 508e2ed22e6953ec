from __future__ import annotations

import pytest
from pydantic import ValidationError

from data_prep.operators import OPERATORS, settings_of
from data_prep.operators.dedup import ExactDedup, MinHashDedup
from data_prep.spec import DatasetSpec


def spec(**kw):
    return DatasetSpec.model_validate({"sources": [{"path": "a.jsonl"}], **kw})


def test_short_forms_expand_to_full_models():
    s = spec(
        curate=[
            {"dedup": "exact"},
            {"dedup": {"minhash": 0.85}},
            {"dedup": {"minhash": {"threshold": 0.7, "num_perm": 64}}},
            {"quality": "default"},
            {"pii": "drop"},
            {"decontaminate": "eval"},
            {"decontaminate": ["held_out.jsonl"]},
        ]
    )
    assert [step.op for step in s.curate] == ["dedup"] * 3 + ["quality", "pii"] + ["decontaminate"] * 2
    assert isinstance(s.curate[0], OPERATORS["dedup"].step_model)
    assert isinstance(settings_of(s.curate[0]), ExactDedup)
    assert s.curate[1].dedup == MinHashDedup(threshold=0.85)
    assert s.curate[2].dedup.num_perm == 64
    assert s.curate[3].quality.max_repetition == 0.3
    assert s.curate[4].pii.action == "drop"
    assert s.curate[5].decontaminate.against == "eval"
    assert s.curate[6].decontaminate.against == ["held_out.jsonl"]
    assert s.uses_eval and not s.uses_tokenizer
    assert s.curate_input_files == ["held_out.jsonl"]


def test_full_form_round_trips():
    s = spec(
        curate=[{"dedup": {"minhash": 0.9}}, {"filter": {"max_tokens": 64}}, {"regex": {"drop": ["x+"]}}]
    )
    again = DatasetSpec.model_validate(s.model_dump(mode="json"))
    assert again == s
    assert again.uses_tokenizer


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ({"dedupe": "exact"}, "one of: decontaminate, dedup, filter, pii, quality, regex"),
        ("exact", "single-key mapping"),
        ({"dedup": "exact", "pii": "scrub"}, "single-key mapping"),
        ({"dedup": "fuzzy"}, "fuzzy"),
        ({"quality": {"max_rep": 0.1}}, "max_rep"),
        ({"regex": {"drop": ["("]}}, "invalid regex"),
        ({"pii": {"kinds": ["ssn"]}}, "ssn"),
    ],
)
def test_bad_steps_fail_with_a_clear_message(step, needle):
    with pytest.raises(ValidationError) as e:
        spec(curate=[step])
    text = str(e.value)
    assert needle in text


def test_sources_need_exactly_one_location_and_a_fitting_format():
    with pytest.raises(ValidationError, match="exactly one of path, hub, disk"):
        DatasetSpec.model_validate({"sources": [{"path": "a", "hub": "b/c"}]})
    with pytest.raises(ValidationError, match="exactly one"):
        DatasetSpec.model_validate({"sources": [{}]})
    with pytest.raises(ValidationError, match="kind 'preference' accepts"):
        DatasetSpec.model_validate({"kind": "preference", "sources": [{"path": "a", "format": "alpaca"}]})
    with pytest.raises(ValidationError, match="extra"):
        DatasetSpec.model_validate({"sources": [{"path": "a"}], "shufle": False})
    with pytest.raises(ValidationError):
        DatasetSpec.model_validate({"sources": []})


def test_every_operator_dumps_the_full_form_the_fingerprint_hashes():
    # The cache fingerprint hashes model_dump(); these are the dumps shipped recipes were cached under.
    s = spec(
        curate=[
            {"dedup": "exact"},
            {"dedup": {"minhash": 0.85}},
            {"quality": "default"},
            {"pii": "scrub"},
            {"decontaminate": "eval"},
            {"filter": {"max_tokens": 256}},
            {"regex": {"field": "prompt", "drop": ["x"]}},
        ]
    )
    assert s.model_dump(mode="json")["curate"] == [
        {"dedup": {"method": "exact", "on": "all"}},
        {"dedup": {"method": "minhash", "threshold": 0.85, "num_perm": 128, "shingle": 3, "on": "all"}},
        {"quality": {"min_answer_chars": 1, "max_repetition": 0.3, "max_symbol_ratio": 0.5, "drop_truncated": True}},
        {"pii": {"action": "scrub", "kinds": ["email", "phone", "ip", "key"]}},
        {"decontaminate": {"against": "eval", "ngram": 13, "min_ngram": 6, "min_overlap": 0.8, "field": "all"}},
        {"filter": {"min_tokens": 0, "max_tokens": 256}},
        {"regex": {"drop": ["x"], "keywords": [], "field": "prompt", "ignore_case": True}},
    ]


def test_bad_step_errors_point_at_the_operator_field():
    with pytest.raises(ValidationError) as e:
        spec(curate=[{"dedup": "exact"}, {"quality": {"max_rep": 0.1}}])
    assert [err["loc"] for err in e.value.errors()] == [("curate", 1, "quality", "quality", "max_rep")]
