"""prepare_dataset end to end: outputs, report, mixing and split, cache, atomicity."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from data_prep import DatasetSpec, dataset_fingerprint, prepare_dataset, read_rows, render_report
from data_prep.errors import DataPrepError


def make(tmp_path: Path, write_jsonl, chat, n: int = 20, name: str = "a.jsonl") -> Path:
    return write_jsonl(name, [chat(f"{name} question {i}?", f"Answer {i} is here.") for i in range(n)])


def spec_for(*sources: dict, **kw) -> DatasetSpec:
    return DatasetSpec.model_validate({"sources": list(sources), **kw})


def test_outputs_report_and_terminal_summary(tmp_path, write_jsonl, chat):
    make(tmp_path, write_jsonl, chat)
    spec = spec_for({"path": "a.jsonl"}, curate=[{"dedup": "exact"}, {"quality": "default"}], eval_split=0.25)
    console = Console(record=True, width=120)
    out = prepare_dataset("chat", spec, base_dir=tmp_path, out_dir=tmp_path / "out", console=console)
    folder = tmp_path / "out"
    for name in ("train.jsonl", "eval.jsonl", "rejects.jsonl", "report.json", "report.md", "lengths.png"):
        assert (folder / name).is_file(), name
    assert (folder / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert out.rows == 15 and out.eval_path is not None and len(read_rows(out.eval_path)) == 5
    assert [s["step"] for s in out.report["steps"]] == ["load", "dedup.exact", "quality", "mix"]
    assert out.report["lengths"]["unit"] == "words" and out.report["lengths"]["count"] == 20
    assert json.loads((folder / "report.json").read_text())["fingerprint"] == out.fingerprint
    text = console.export_text()
    assert "dedup.exact" in text and "train 15" in text
    assert "| dedup.exact |" in (folder / "report.md").read_text()
    Console(file=io.StringIO()).print(render_report(out))


def test_cache_hit_and_what_invalidates_it(tmp_path, write_jsonl, chat):
    path = make(tmp_path, write_jsonl, chat)
    spec = spec_for({"path": "a.jsonl"}, curate=[{"dedup": "exact"}])
    console = Console(record=True)
    first = prepare_dataset("c", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    again = prepare_dataset("c", spec, base_dir=tmp_path, out_dir=tmp_path / "out", console=console)
    assert again.fingerprint == first.fingerprint and again.report == first.report
    assert "cached" in console.export_text()

    fp = dataset_fingerprint(spec, base_dir=tmp_path)
    assert fp == first.fingerprint
    assert dataset_fingerprint(spec, base_dir=tmp_path, seed=1) != fp
    assert dataset_fingerprint(spec_for({"path": "a.jsonl"}), base_dir=tmp_path) != fp
    # The tokenizer and eval texts only matter when an operator uses them.
    assert dataset_fingerprint(spec, base_dir=tmp_path, tokenizer_id="x", eval_fingerprint="y") == fp
    with_eval = spec_for({"path": "a.jsonl"}, curate=[{"decontaminate": "eval"}])
    assert dataset_fingerprint(with_eval, base_dir=tmp_path, eval_fingerprint="y") != dataset_fingerprint(
        with_eval, base_dir=tmp_path, eval_fingerprint="z"
    )
    path.write_text(path.read_text() + json.dumps(chat("new?", "New.")) + "\n")
    assert dataset_fingerprint(spec, base_dir=tmp_path) != fp
    changed = prepare_dataset("c", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    assert changed.rows == 21


def test_a_killed_run_never_looks_finished(tmp_path, write_jsonl, chat, monkeypatch):
    import data_prep.prepare as prepare_mod

    make(tmp_path, write_jsonl, chat)
    spec = spec_for({"path": "a.jsonl"})
    prepare_dataset("k", spec, base_dir=tmp_path, out_dir=tmp_path / "out", seed=1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "write_markdown", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("k", spec, base_dir=tmp_path, out_dir=tmp_path / "out", seed=2)
    assert not (tmp_path / "out" / "report.json").exists()
    assert prepare_mod.load_prepared("k", tmp_path / "out") is None
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_weights_caps_and_leak_free_split(tmp_path, write_jsonl, chat):
    make(tmp_path, write_jsonl, chat, n=10, name="a.jsonl")
    make(tmp_path, write_jsonl, chat, n=10, name="b.jsonl")
    make(tmp_path, write_jsonl, chat, n=10, name="c.jsonl")
    spec = spec_for(
        {"path": "a.jsonl", "weight": 2.0},
        {"path": "b.jsonl", "weight": 0.5},
        {"path": "c.jsonl", "max_rows": 3},
        eval_split=0.2,
    )
    out = prepare_dataset("mix", spec, base_dir=tmp_path, out_dir=tmp_path / "out", seed=3)
    train = [r["messages"][0]["content"] for r in read_rows(out.train_path)]
    evals = [r["messages"][0]["content"] for r in read_rows(out.eval_path)]
    everything = train + evals
    assert sum(t.startswith("a.jsonl") for t in everything) == 20
    assert sum(t.startswith("b.jsonl") for t in everything) == 5
    assert sum(t.startswith("c.jsonl") for t in everything) == 3
    assert not set(train) & set(evals)  # repeats of a held-out row stay out of train
    b = out.report["balance"]
    assert b == {"read": 30, "malformed": 0, "removed": 12, "added": 10, "out": 28, "ok": True}
    rejects = read_rows(tmp_path / "out" / "rejects.jsonl")
    assert len(rejects) == 12 and {r["operator"] for r in rejects} == {"mix"}
    again = prepare_dataset("mix", spec, base_dir=tmp_path, out_dir=tmp_path / "other", seed=3)
    assert read_rows(again.train_path) == read_rows(out.train_path)


def test_token_filter_needs_a_tokenizer_and_uses_it(tmp_path, write_jsonl, chat, word_tokenizer):
    write_jsonl(
        "t.jsonl", [chat("short", "yes"), chat("a much longer question here", "with a long answer too")]
    )
    spec = spec_for({"path": "t.jsonl"}, curate=[{"filter": {"max_tokens": 6}}])
    with pytest.raises(DataPrepError, match="tokenizer"):
        prepare_dataset("t", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    out = prepare_dataset("t", spec, base_dir=tmp_path, out_dir=tmp_path / "out", tokenizer=word_tokenizer)
    assert out.rows == 1 and out.report["lengths"]["unit"] == "tokens"


def test_preference_and_prompt_datasets(tmp_path, write_jsonl):
    write_jsonl("p.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(4)])
    write_jsonl("r.jsonl", [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)])
    pref = prepare_dataset(
        "prefs",
        spec_for({"path": "p.jsonl"}, kind="preference", shuffle=False),
        base_dir=tmp_path,
        out_dir=tmp_path / "p",
    )
    assert read_rows(pref.train_path)[0] == {
        "prompt": [{"role": "user", "content": "q0"}],
        "chosen": "good",
        "rejected": "bad",
    }
    rl = prepare_dataset(
        "rl",
        spec_for({"path": "r.jsonl"}, kind="prompt", shuffle=False),
        base_dir=tmp_path,
        out_dir=tmp_path / "r",
    )
    assert read_rows(rl.train_path)[1] == {
        "prompt": [{"role": "user", "content": "What is 1 + 1?"}],
        "answer": "2",
    }


def test_a_file_mixing_formats_keeps_each_rows_own_reading(tmp_path, write_jsonl, chat):
    rows = [
        chat("messages row?", "Yes."),  # 1
        {"conversations": [{"from": "human", "value": "sharegpt?"}, {"from": "gpt", "value": "Yes."}]},  # 2
        {"instruction": "Dolly row", "context": "", "response": "Yes.", "category": "open_qa"},  # 3
        {"question": "GSM8K 1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"},  # 4
        {"text": "<|im_start|>user\nChatML?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>"},  # 5
        {"prompt": "a pair", "chosen": "good", "rejected": "bad"},  # 6: no chat reading
        {"text": "just some prose"},  # 7: no turn markers
        {"query": "MetaMath?", "response": "The answer is: 3"},  # 8
    ]
    write_jsonl("mixed.jsonl", rows)
    spec = spec_for({"path": "mixed.jsonl"}, shuffle=False, max_reject_fraction=0.3)
    out = prepare_dataset("mixed", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    kept = read_rows(out.train_path)
    assert [r["messages"][0]["content"] for r in kept] == [
        "messages row?",
        "sharegpt?",
        "Dolly row",
        "GSM8K 1 + 1?",
        "ChatML?",
        "MetaMath?",
    ]
    rejects = {r["line"]: (r["reason"], r["detail"]) for r in read_rows(tmp_path / "out" / "rejects.jsonl")}
    assert rejects == {
        6: ("wrong_format", "a preference row cannot make a chat row"),
        7: (
            "unrecognized_format",
            "column 'text' holds no ChatML, Llama-3 or Human:/Assistant: turn markers",
        ),
    }
    source = out.report["sources"][0]
    assert source["formats"] == {
        "messages": 1,
        "sharegpt": 1,
        "dolly": 1,
        "gsm8k": 1,
        "chatml": 1,
        "metamathqa": 1,
    }
    b = out.report["balance"]
    assert b["ok"] and b["read"] == 8 == b["out"] + b["malformed"] and b["malformed"] == 2
    md = (tmp_path / "out" / "report.md").read_text()
    assert (
        "| `mixed.jsonl` | 8 | 2 | messages 1, sharegpt 1, dolly 1, gsm8k 1, chatml 1, metamathqa 1 |" in md
    )


def test_kind_unpaired_is_documented_on_its_field():
    # The derivation of unpaired rows from pairs is a dataset option users find in the schema docs.
    description = DatasetSpec.model_fields["kind"].description or ""
    assert "unpaired" in description and "label true" in description and "label false" in description
