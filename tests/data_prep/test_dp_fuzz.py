"""Mutated data files through curation: every bad row a reject with a reason, every unreadable file one error.

The fuzzer is scripts/fuzz_data.py (`python scripts/fuzz_data.py --files 1000` for the full count); here a
smaller seeded run, plus the faults it found, pinned one by one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from data_prep import prepare_dataset
from data_prep.errors import DataPrepError
from data_prep.spec import DatasetSpec

ROOT = Path(__file__).resolve().parents[2]


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_data", ROOT / "scripts" / "fuzz_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _prepare(path: Path, kind: str = "prompt"):
    spec = DatasetSpec.model_validate({"kind": kind, "sources": [{"path": path.name}], "max_reject_fraction": 0.9})
    return prepare_dataset("d", spec, base_dir=path.parent, out_dir=path.parent / "out", seed=0)


def _rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path.parent / "out" / "rejects.jsonl").read_text().splitlines()]


def test_seeded_fuzz_run_has_no_traceback_and_both_endings(tmp_path: Path) -> None:
    summary = _fuzz_module().run_fuzz(150, seed=7, work=tmp_path)
    assert summary.failures == []
    assert summary.files == 150
    assert summary.prepared > 20 and summary.clear_errors > 20  # both endings exercised, not one
    assert summary.rows_rejected > 20 and len(summary.reasons) >= 6


def test_lone_surrogate_escape_is_a_reject_and_rejects_stay_writable(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok one"}\n{"prompt": "bad \\ud83d"}\n{"prompt": "ok two"}\n', encoding="utf-8")
    prepared = _prepare(path)
    assert prepared.rows == 2
    (bad,) = _rejects(path)
    assert (bad["line"], bad["reason"]) == (2, "invalid_unicode")
    train = (prepared.train_path).read_bytes().decode("utf-8")  # the curated file is valid UTF-8
    assert "bad" not in train


def test_csv_cell_nested_past_the_recursion_limit_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    deep = "[" * 5000 + "]" * 5000
    path.write_text(f'messages\n"{deep}"\n' + '"[{""role"": ""user"", ""content"": ""hi""}, '
                    '{""role"": ""assistant"", ""content"": ""hello""}]"\n', encoding="utf-8")
    prepared = _prepare(path, kind="chat")
    assert prepared.rows == 1
    assert [r["line"] for r in _rejects(path)] == [2]


def test_damaged_parquet_page_is_one_error_naming_the_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": f"question {i} " * 20} for i in range(200)]), path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the column's data page: the footer still parses
    data[middle:middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(DataPrepError) as caught:
        _prepare(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message and "not a readable Parquet file" in message


def test_json_array_nested_too_deep_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataPrepError, match=r"a\.json is not valid JSON: nesting too deep"):
        _prepare(path)
