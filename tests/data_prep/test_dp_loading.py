"""Sources: every file type, and a hostile JSONL that must not stop the run."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from data_prep import DatasetSpec, prepare_dataset, read_rows
from data_prep.errors import DataPrepError
from data_prep.sources import iter_records
from data_prep.spec import SourceSpec


def test_hostile_jsonl_goes_on_and_every_bad_row_is_traced(tmp_path, write_jsonl, chat):
    good = [chat(f"question {i}?", f"answer number {i}.") for i in range(20)]
    lines: list = [*good[:5]]
    lines.append('{"messages": [{"role": "user", "content": "hi"')  # 6: broken JSON
    lines.append(chat("fine?", "fine."))  # 7
    lines.append(
        {"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]}
    )  # 8
    lines.append(chat("empty answer?", "   "))  # 9: empty turn
    lines.append(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}')  # 10: invalid UTF-8
    lines.append(json.dumps(chat("x" * (10 << 20), "big")))  # 11: a 10 MB line
    lines.append("[1, 2, 3]")  # 12: not an object
    lines.append(
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}
    )  # 13
    lines.append({"text": "no known format"})  # 14
    lines += good[5:]  # 15..29
    path = write_jsonl("hostile.jsonl", lines)
    spec = DatasetSpec.model_validate({"sources": [{"path": path.name}], "max_reject_fraction": 0.5})

    out = prepare_dataset("hostile", spec, base_dir=tmp_path, out_dir=tmp_path / "out")

    rejects = {r["line"]: r for r in read_rows(tmp_path / "out" / "rejects.jsonl")}
    assert {ln: r["reason"] for ln, r in rejects.items()} == {
        6: "invalid_json",
        8: "bad_role",
        9: "empty_turn",
        10: "invalid_utf8",
        11: "line_too_long",
        12: "not_an_object",
        13: "turn_order",
        14: "unrecognized_format",
    }
    for r in rejects.values():
        assert r["source"] == "hostile.jsonl" and r["operator"] in ("load", "format") and r["detail"]
        assert len(r["row"]) < 1000  # a preview, never the 10 MB row
    assert out.rows == 21
    b = out.report["balance"]
    assert b["ok"] and b["read"] == 29 == b["out"] + b["malformed"] + b["removed"]
    assert out.report["steps"][0]["reasons"]["invalid_json"] == 1


def test_over_long_line_is_skipped_in_bounded_reads(tmp_path, write_jsonl, chat):
    path = write_jsonl("long.jsonl", [chat("a?", "b."), json.dumps(chat("y" * 5000, "z")), chat("c?", "d.")])
    recs = list(iter_records(SourceSpec(path=str(path)), tmp_path, max_line_bytes=1000))
    assert [r.error[0] if r.error else "ok" for r in recs] == ["ok", "line_too_long", "ok"]
    assert [r.line for r in recs] == [1, 2, 3]


def test_rejection_threshold_fails_with_file_and_lines(tmp_path, write_jsonl, chat):
    path = write_jsonl("bad.jsonl", [chat("q?", "a."), "{oops", "{oops", "{oops"])
    spec = DatasetSpec.model_validate({"sources": [{"path": path.name}], "max_reject_fraction": 0.5})
    with pytest.raises(DataPrepError) as e:
        prepare_dataset("bad", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    assert "3 of 4 rows" in str(e.value) and "max_reject_fraction=0.5" in str(e.value)
    assert any("bad.jsonl:2" in p for p in e.value.problems)
    assert len(read_rows(tmp_path / "out" / "rejects.jsonl")) == 3
    assert not (tmp_path / "out" / "report.json").exists()


def test_missing_file_and_unknown_type_are_data_errors(tmp_path):
    spec = DatasetSpec.model_validate({"sources": [{"path": "nope.jsonl"}]})
    with pytest.raises(DataPrepError, match=r"not found.*nope\.jsonl"):
        prepare_dataset("x", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    (tmp_path / "data.xml").write_text("<x/>")
    spec = DatasetSpec.model_validate({"sources": [{"path": "data.xml"}]})
    with pytest.raises(DataPrepError, match="unknown data file type"):
        prepare_dataset("x", spec, base_dir=tmp_path, out_dir=tmp_path / "out")


def _rows(src: SourceSpec, base: Path) -> list[dict]:
    return [r.value for r in iter_records(src, base, 1 << 20) if r.value is not None]


def test_json_array_csv_parquet_gzip_and_disk(tmp_path, chat):
    import datasets
    import pandas as pd

    records = [{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps(records))
    pd.DataFrame(records).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(records).to_parquet(tmp_path / "a.parquet")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    datasets.Dataset.from_list([chat("q?", "a.")]).save_to_disk(str(tmp_path / "saved"))

    for name in ("a.json", "a.csv", "a.parquet", "a.jsonl.gz"):
        assert _rows(SourceSpec(path=name), tmp_path) == records, name
    assert _rows(SourceSpec(disk="saved"), tmp_path) == [chat("q?", "a.")]


def test_csv_bad_rows_are_rejects(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"prompt,completion\nhi,there\nonly-one-field\nbad \xff,x\nok,fine\n")
    recs = list(iter_records(SourceSpec(path="b.csv"), tmp_path, 1 << 20))
    assert [(r.line, r.error[0] if r.error else "ok") for r in recs] == [
        (2, "ok"),
        (3, "csv_field_count"),
        (4, "invalid_utf8"),
        (5, "ok"),
    ]


def test_hub_unreachable_is_a_data_error(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = DatasetSpec.model_validate({"sources": [{"hub": "someone/thing"}]})
    with pytest.raises(DataPrepError, match="someone/thing") as e:
        prepare_dataset("h", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    assert any("disk:" in p for p in e.value.problems)


def test_column_mapping_and_mixed_formats(tmp_path, write_jsonl):
    path = write_jsonl(
        "mixed.jsonl",
        [
            {"question": "What is 2+2?", "response": "4."},
            {"instruction": "Name a colour.", "output": "Blue."},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
        ],
    )
    spec = DatasetSpec.model_validate(
        {"sources": [{"path": path.name, "columns": {"question": "prompt", "response": "completion"}}]}
    )
    out = prepare_dataset("m", spec, base_dir=tmp_path, out_dir=tmp_path / "out", seed=1)
    rows = read_rows(out.train_path)
    assert Counter(r["messages"][0]["content"] for r in rows) == Counter(
        ["What is 2+2?", "Name a colour.", "Hi"]
    )


def test_csv_field_over_the_limit_is_a_reject_and_reading_goes_on(tmp_path):
    import csv

    limit = csv.field_size_limit()
    (tmp_path / "c.csv").write_text("prompt,completion\nhi,there\n" + "x" * 5000 + ",y\nok,fine\n")
    recs = list(iter_records(SourceSpec(path="c.csv"), tmp_path, 1000))
    assert [(r.line, r.error[0] if r.error else "ok") for r in recs] == [
        (2, "ok"),
        (3, "invalid_csv"),
        (4, "ok"),
    ]
    assert csv.field_size_limit() == limit
