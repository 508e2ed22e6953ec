from __future__ import annotations

import pytest
from pydantic import ValidationError

from data_prep.spec import (
    DatasetSpec,
    DecontaminateStep,
    DedupStep,
    ExactDedup,
    MinHashDedup,
    PiiStep,
    QualityStep,
)


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
    assert isinstance(s.curate[0], DedupStep) and isinstance(s.curate[0].dedup, ExactDedup)
    assert s.curate[1].dedup == MinHashDedup(threshold=0.85)
    assert s.curate[2].dedup.num_perm == 64
    assert isinstance(s.curate[3], QualityStep) and s.curate[3].quality.max_repetition == 0.3
    assert isinstance(s.curate[4], PiiStep) and s.curate[4].pii.action == "drop"
    assert isinstance(s.curate[5], DecontaminateStep) and s.curate[5].decontaminate.against == "eval"
    assert s.curate[6].decontaminate.against == ["held_out.jsonl"]
    assert s.uses_eval and not s.uses_tokenizer


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
        ({"dedupe": "exact"}, "one of: dedup, filter"),
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
