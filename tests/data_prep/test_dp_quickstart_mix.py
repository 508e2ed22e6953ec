"""Curating the bundled raw quickstart mix catches every planted class and removes no clean row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data_prep import DatasetSpec, prepare_dataset, read_rows
from posttrain.paths import data_dir

RAW = data_dir() / "quickstart" / "raw_chat.jsonl"
PLANTED = data_dir() / "quickstart" / "raw_chat.planted.json"
EXPECTED = {
    "broken_json": {("load", "invalid_json")},
    "missing_messages": {("format", "unrecognized_format"), ("format", "missing_field")},
    "empty_assistant": {("format", "empty_turn")},
    "wrong_roles": {("format", "bad_role")},
    "exact_duplicate": {("dedup.exact", "exact_duplicate")},
    "near_duplicate": {("dedup.exact", "exact_duplicate"), ("dedup.minhash", "near_duplicate")},
    "contamination": {("decontaminate", "eval_overlap")},
}


@pytest.mark.skipif(not PLANTED.is_file(), reason="bundled quickstart data not generated")
def test_quickstart_raw_mix(tmp_path: Path):
    from posttrain.evaluation.suite import task_documents

    planted = json.loads(PLANTED.read_text())["classes"]
    spec = DatasetSpec.model_validate(
        {
            "sources": [{"path": str(RAW)}],
            "curate": [
                {"dedup": "exact"},
                {"dedup": {"minhash": 0.85}},
                {"quality": "default"},
                {"pii": "scrub"},
                {"decontaminate": "eval"},
            ],
        }
    )
    eval_texts = task_documents(["pt_arith", "pt_arith_mc", "pt_ifeval"])
    out = prepare_dataset("chat", spec, base_dir=tmp_path, out_dir=tmp_path / "out", eval_texts=eval_texts)

    rejects = {r["line"]: r for r in read_rows(tmp_path / "out" / "rejects.jsonl")}
    for cls, allowed in EXPECTED.items():
        for line in planted[cls]["lines"]:
            assert line in rejects, f"{cls} at line {line} was kept"
            assert (rejects[line]["operator"], rejects[line]["reason"]) in allowed, (cls, rejects[line])
    for line, src in zip(
        planted["exact_duplicate"]["lines"], planted["exact_duplicate"]["source_lines"], strict=True
    ):
        assert rejects[line]["detail"].endswith(f":{src}")
    planted_lines = {ln for info in planted.values() for ln in info["lines"]}
    assert set(rejects) <= planted_lines, "a clean row was removed"

    pii = next(s for s in out.report["steps"] if s["step"] == "pii")
    assert pii["details"]["rows_with_pii"] == planted["email"]["count"] + planted["phone"]["count"]
    text = out.train_path.read_text()
    assert not re.search(r"[\w.]+@example\.com", text) and "<EMAIL>" in text and "<PHONE>" in text
    # PII rows stay (scrubbed); everything else planted is gone.
    clean = json.loads(PLANTED.read_text())["clean_rows"]
    assert out.report["balance"]["ok"] and out.rows == clean + pii["details"]["rows_with_pii"]
