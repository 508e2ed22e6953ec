"""A curation operator declared in this file only: registered, written in a recipe's curate list, run end to end.

Nothing in data_prep/ or posttrain/ names it: the schema, the cache fingerprint,
the rejects, the report and `posttrain data` all read it from the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError
from typer.testing import CliRunner

from data_prep import dataset_model, prepare_dataset, read_rows, render_report
from data_prep.errors import DataPrepError
from data_prep.operators import OPERATORS, OpContext, Operator, OpResult, register, unregister
from data_prep.operators.base import StrictSpec
from data_prep.rows import Row, answer_texts
from data_prep.spec import DatasetSpec

CALLS: list[int] = []  # rows each run of the toy operator saw: shows when curation really ran


class ShoutSpec(StrictSpec):
    words: list[str] = Field(min_length=1, description="Drop rows whose answer writes one of these words in capitals.")
    min_length: int = Field(default=2, ge=1, description="Ignore words shorter than this.")


def drop_shouting(rows: list[Row], spec: ShoutSpec, ctx: OpContext) -> OpResult:
    CALLS.append(len(rows))
    shouted = {w.upper() for w in spec.words if len(w) >= spec.min_length}
    result = OpResult(kept=[])
    for row in rows:
        found = sorted(shouted & set(" ".join(answer_texts(row.data, ctx.kind)).split()))
        if found:
            result.removed.append((row, "shouting", f"answer shouts {found[0]}"))
        else:
            result.kept.append(row)
    result.details = {"words": sorted(shouted)}
    return result


TOY = Operator(
    name="uppercase_filter",
    spec=ShoutSpec,
    apply=drop_shouting,
    description="Drop rows whose answer shouts one of the given words.",
    short_forms=lambda value: {"words": value} if isinstance(value, list) else value,
)


@pytest.fixture
def toy() -> Iterator[Operator]:
    CALLS.clear()
    register(TOY)
    yield TOY
    unregister(TOY.name)


def _rows(chat: Any) -> list[dict[str, Any]]:
    rows = [chat(f"Question {i}?", f"Answer number {i} is fine.") for i in range(10)]
    rows[2] = chat("Stop?", "STOP right there.")
    rows[7] = chat("Halt?", "You must HALT and STOP now.")
    rows[8] = chat("Quiet?", "stop, said quietly, is fine.")
    return rows


def test_the_toy_operator_curates_rejects_caches_and_reports(tmp_path: Path, write_jsonl, chat, toy) -> None:
    write_jsonl("chat.jsonl", _rows(chat))
    spec = dataset_model().model_validate(
        {"sources": [{"path": "chat.jsonl"}], "curate": [{"dedup": "exact"}, {"uppercase_filter": ["stop", "halt"]}]}
    )
    assert spec.model_dump(mode="json")["curate"][1] == {"uppercase_filter": {"words": ["stop", "halt"], "min_length": 2}}
    out = tmp_path / "out"

    prepared = prepare_dataset("toy", spec, base_dir=tmp_path, out_dir=out, seed=3)
    assert CALLS == [10]
    texts = [r["messages"][-1]["content"] for r in read_rows(prepared.train_path)]
    assert prepared.rows == 8 and not any("STOP" in t or "HALT" in t for t in texts)
    assert "stop, said quietly, is fine." in texts  # lower case is not shouting

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["operator"], r["reason"], r["line"]) for r in rejects] == [
        ("uppercase_filter", "shouting", 3),
        ("uppercase_filter", "shouting", 8),
    ]
    assert rejects[1]["detail"] == "answer shouts HALT"

    report = json.loads((out / "report.json").read_text())
    step = next(s for s in report["steps"] if s["step"] == "uppercase_filter")
    assert step["spec"] == {"uppercase_filter": {"words": ["stop", "halt"], "min_length": 2}}
    assert (step["rows_in"], step["removed"], step["rows_out"]) == (10, 2, 8)
    assert step["reasons"] == {"shouting": 2} and step["details"] == {"words": ["HALT", "STOP"]}
    assert [s["step"] for s in report["steps"]] == ["load", "dedup.exact", "uppercase_filter", "mix"]
    assert report["balance"]["ok"] and report["balance"]["removed"] == 2
    assert "| uppercase_filter | 10 | 2 | 8 | shouting: 2 |" in (out / "report.md").read_text()
    assert "### uppercase_filter" in (out / "report.md").read_text()
    assert [s.step for s in prepared.steps] == ["load", "dedup.exact", "uppercase_filter", "mix"]
    render_report(prepared)  # the terminal table reads the same step records

    again = prepare_dataset("toy", spec, base_dir=tmp_path, out_dir=out, seed=3)
    assert CALLS == [10], "the second call must reuse the curated files"
    assert again.fingerprint == prepared.fingerprint and again.rows == 8

    # The toy step's settings enter the fingerprint like a built-in's.
    changed = dataset_model().model_validate(
        {"sources": [{"path": "chat.jsonl"}], "curate": [{"dedup": "exact"}, {"uppercase_filter": ["halt"]}]}
    )
    rerun = prepare_dataset("toy", changed, base_dir=tmp_path, out_dir=out, seed=3)
    assert CALLS == [10, 10] and rerun.fingerprint != prepared.fingerprint and rerun.rows == 9


def test_posttrain_data_runs_the_toy_operator_from_a_recipe(tmp_path: Path, write_jsonl, chat, toy) -> None:
    from posttrain.cli import app

    write_jsonl("chat.jsonl", _rows(chat))
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(
        "name: toy\nmodel: {base: smollm2-135m-instruct}\n"
        "datasets:\n  chat:\n    sources: [{path: chat.jsonl}]\n"
        "    curate: [{uppercase_filter: {words: [stop, halt]}}]\n"
        "stages: [{name: sft, type: sft, data: chat, train: {max_steps: 1}}]\n"
    )
    runs = tmp_path / "runs"
    first = CliRunner().invoke(app, ["data", str(recipe), "--runs-dir", str(runs)])
    assert first.exit_code == 0, first.output
    assert "uppercase_filter" in first.output and "shouting 2" in first.output
    data_dir = runs / "toy" / "data" / "chat"
    assert len(read_rows(data_dir / "train.jsonl")) == 8
    assert '"operator": "uppercase_filter"' in (data_dir / "rejects.jsonl").read_text()

    second = CliRunner().invoke(app, ["data", str(recipe), "--runs-dir", str(runs)])
    assert second.exit_code == 0, second.output
    assert "cached" in second.output and CALLS == [10]


def test_the_schema_knows_the_toy_operator_only_while_registered(toy) -> None:
    raw = {"sources": [{"path": "a.jsonl"}], "curate": [{"uppercase_filter": {"words": []}}]}
    with pytest.raises(ValidationError) as e:
        dataset_model().model_validate(raw)
    # Errors point into the toy's own model, as they do for built-in operators.
    assert [err["loc"] for err in e.value.errors()] == [("curate", 0, "uppercase_filter", "uppercase_filter", "words")]
    with pytest.raises(ValidationError, match=r"one of: .*uppercase_filter"):
        dataset_model().model_validate({"sources": [{"path": "a.jsonl"}], "curate": [{"upper": ["x"]}]})
    assert "uppercase_filter" in OPERATORS
    with pytest.raises(ValueError, match="already registered"):
        register(Operator(name="uppercase_filter", spec=ShoutSpec, apply=drop_shouting, description="again"))

    # The static model is the built-in operators' one; after unregistering, the toy is unknown again.
    with pytest.raises(ValidationError, match="single-key mapping naming an operator"):
        DatasetSpec.model_validate({"sources": [{"path": "a.jsonl"}], "curate": [{"uppercase_filter": ["x"]}]})
    unregister(TOY.name)
    assert dataset_model() is DatasetSpec
    with pytest.raises(ValidationError, match="single-key mapping naming an operator"):
        dataset_model().model_validate({"sources": [{"path": "a.jsonl"}], "curate": [{"uppercase_filter": ["x"]}]})


def test_an_operator_that_loses_rows_is_an_error_not_a_wrong_report(tmp_path: Path, write_jsonl, chat) -> None:
    def forget_first(rows: list[Row], spec: ShoutSpec, ctx: OpContext) -> OpResult:
        return OpResult(kept=rows[1:])  # drops a row without saying why

    leaky = Operator(name="leaky", spec=ShoutSpec, apply=forget_first, description="Loses a row.")
    register(leaky)
    try:
        write_jsonl("chat.jsonl", _rows(chat))
        spec = dataset_model().model_validate({"sources": [{"path": "chat.jsonl"}], "curate": [{"leaky": {"words": ["x"]}}]})
        with pytest.raises(DataPrepError, match="'leaky' returned 9 kept \\+ 0 removed rows for 10 rows in"):
            prepare_dataset("leak", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
        assert not (tmp_path / "out" / "report.json").exists()
    finally:
        unregister("leaky")


@pytest.mark.parametrize("name", ["model_dump", "op", "two words"])
def test_an_operator_name_must_be_a_plain_field_name(name: str) -> None:
    with pytest.raises(ValueError, match="Python identifier"):
        Operator(name=name, spec=ShoutSpec, apply=drop_shouting, description="x")
