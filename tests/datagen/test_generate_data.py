"""The bundled-data generator: deterministic, train/eval disjoint, planted problems as declared."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "generate_data.py"
EVAL_FILES = ("pt_arith/arith_test.jsonl", "pt_arith/arith_mc_test.jsonl", "pt_ifeval/ifeval_test.jsonl")


def _generate(out: Path, hash_seed: str) -> None:
    # Different hash seeds catch any output that depends on set/dict-of-str iteration order.
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, str(SCRIPT), "--out-root", str(out)], check=True, env=env,
                   capture_output=True, timeout=120)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    _generate(out, "1")
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _user_texts(rows: list[dict]) -> list[str]:
    texts = []
    for r in rows:
        for m in r.get("messages", r.get("prompt", [])):
            if m["role"] == "user":
                texts.append(m["content"])
    return texts


def test_two_runs_give_identical_bytes(generated: Path, tmp_path: Path) -> None:
    _generate(tmp_path, "2")
    assert _files(generated) == _files(tmp_path)


def test_committed_data_is_up_to_date(generated: Path) -> None:
    fresh = _files(generated)
    committed = {rel: (REPO / rel).read_bytes() for rel in fresh if (REPO / rel).exists()}
    stale = sorted(rel for rel in fresh if committed.get(rel) != fresh[rel])
    assert not stale, f"run `python scripts/generate_data.py`: stale {stale}"


def test_sizes_are_modest(generated: Path) -> None:
    total = sum(len(b) for b in _files(generated).values())
    assert total < 5_000_000
    counts = {name: len(_jsonl(generated / "data/quickstart" / name)) for name in
              ("chat.jsonl", "prefs.jsonl", "prompts.jsonl")}
    assert counts == {"chat.jsonl": 1500, "prefs.jsonl": 800, "prompts.jsonl": 500}
    for rel in EVAL_FILES:
        assert len(_jsonl(generated / "eval/tasks" / rel)) == 200


def test_train_and_eval_prompts_are_disjoint(generated: Path) -> None:
    eval_prompts = set()
    for rel in EVAL_FILES:
        for doc in _jsonl(generated / "eval/tasks" / rel):
            eval_prompts.add(doc["prompt"])
            eval_prompts.add(doc.get("question", doc["prompt"]))
    train = []
    for name in ("chat.jsonl", "prefs.jsonl", "prompts.jsonl"):
        train += _user_texts(_jsonl(generated / "data/quickstart" / name))
    assert train and not [t for t in train if t in eval_prompts or any(q in t for q in eval_prompts if len(q) > 40)]


def test_shapes_and_answer_lines(generated: Path) -> None:
    chat = _jsonl(generated / "data/quickstart/chat.jsonl")
    assert all(set(r) == {"messages"} for r in chat)
    assert sum(len(r["messages"]) > 2 for r in chat) >= 50  # some multi-turn rows
    for r in chat:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        for user, reply in zip(r["messages"][::2], r["messages"][1::2], strict=True):
            if user["content"].endswith('"Answer: <number>".'):
                assert re.search(r"\nAnswer: \d+$|^Answer: \d+$", reply["content"]), reply
    for r in _jsonl(generated / "data/quickstart/prefs.jsonl"):
        assert set(r) == {"prompt", "chosen", "rejected"} and r["chosen"] != r["rejected"]
    prompts = _jsonl(generated / "data/quickstart/prompts.jsonl")
    allowed = {"max_words", "min_words", "case", "keywords", "json", "bullets"}
    for r in prompts:
        assert ("answer" in r) != ("constraints" in r)
        if "answer" in r:
            assert r["answer"].isdigit()
        else:
            assert r["constraints"] and set(r["constraints"]) <= allowed
    alpaca = _jsonl(generated / "data/examples/alpaca.jsonl")
    sharegpt = _jsonl(generated / "data/examples/sharegpt.jsonl")
    assert len(alpaca) == len(sharegpt) == 50
    assert all(set(r) == {"instruction", "input", "output"} for r in alpaca)
    assert all({t["from"] for t in r["conversations"]} <= {"system", "human", "gpt"} for r in sharegpt)


def test_mc_labels_point_at_the_answer(generated: Path) -> None:
    for doc in _jsonl(generated / "eval/tasks/pt_arith/arith_mc_test.jsonl"):
        assert len(set(doc["choices"])) == 4
        assert doc["choices"][doc["label"]] == f"Answer: {doc['answer']}"


# --- the planted raw mix -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(generated: Path) -> tuple[list[str], dict]:
    lines = (generated / "data/quickstart/raw_chat.jsonl").read_text(encoding="utf-8").splitlines()
    manifest = json.loads((generated / "data/quickstart/raw_chat.planted.json").read_text())
    return lines, manifest


def _lines_of(manifest: dict, *kinds: str) -> set[int]:
    return {n for k in kinds for n in manifest["classes"][k]["lines"]}


def test_manifest_counts_add_up(raw: tuple[list[str], dict]) -> None:
    lines, manifest = raw
    classes = manifest["classes"]
    assert manifest["total_lines"] == len(lines)
    assert all(c["count"] == len(c["lines"]) > 0 for c in classes.values())
    assert manifest["clean_rows"] + sum(c["count"] for c in classes.values()) == len(lines)


def test_exact_duplicates_follow_their_source(raw: tuple[list[str], dict]) -> None:
    lines, manifest = raw
    first_seen: dict[str, int] = {}
    dups = set()
    for n, line in enumerate(lines, 1):
        if line in first_seen:
            dups.add(n)
        first_seen.setdefault(line, n)
    entry = manifest["classes"]["exact_duplicate"]
    assert dups == set(entry["lines"])
    for n, src in zip(entry["lines"], entry["source_lines"], strict=True):
        assert src < n and lines[src - 1] == lines[n - 1]


def _valid(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs:
        return None
    if any(m.get("role") not in {"user", "assistant", "system"} for m in msgs):
        return None
    if any(not m.get("content", "").strip() for m in msgs):
        return None
    return row


def test_malformed_lines_are_exactly_the_planted_ones(raw: tuple[list[str], dict]) -> None:
    lines, manifest = raw
    invalid = {n for n, line in enumerate(lines, 1) if _valid(line) is None}
    assert invalid == _lines_of(manifest, *manifest["groups"]["malformed"]["kinds"])


def test_contamination_and_pii_are_exactly_the_planted_ones(raw: tuple[list[str], dict], generated: Path) -> None:
    lines, manifest = raw
    eval_prompts = {doc["prompt"] for rel in EVAL_FILES for doc in _jsonl(generated / "eval/tasks" / rel)}
    pii = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\+?\(?\d{1,3}\)?[ -]\d{2,4}[ -]\d{3,4}(?:[ -]\d{3,4})?")
    contaminated, personal = set(), set()
    for n, line in enumerate(lines, 1):
        row = _valid(line)
        if row is None:
            continue
        text = " ".join(m["content"] for m in row["messages"])
        if any(m["content"] in eval_prompts for m in row["messages"]):
            contaminated.add(n)
        if pii.search(text):
            personal.add(n)
    assert contaminated == _lines_of(manifest, "contamination")
    assert personal == _lines_of(manifest, "email", "phone")


def test_near_duplicates_are_found_and_clean_rows_are_not_near_each_other(raw: tuple[list[str], dict]) -> None:
    from datasketch import MinHash, MinHashLSH

    lines, manifest = raw
    skip = _lines_of(manifest, "exact_duplicate", "contamination", "email", "phone",
                     *manifest["groups"]["malformed"]["kinds"])
    lsh = MinHashLSH(threshold=0.75, num_perm=128)
    hashes = {}
    for n, line in enumerate(lines, 1):
        if n in skip:
            continue
        words = re.findall(r"\w+", " ".join(m["content"] for m in json.loads(line)["messages"]).lower())
        mh = MinHash(num_perm=128, seed=1)
        mh.update_batch([" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))])
        hashes[n] = mh
        lsh.insert(n, mh)
    pairs = set()  # LSH gives candidates; keep those whose estimated similarity is really high
    for n, mh in hashes.items():
        pairs |= {(min(n, m), max(n, m)) for m in lsh.query(mh) if m != n and mh.jaccard(hashes[m]) >= 0.8}
    entry = manifest["classes"]["near_duplicate"]
    planted = {(src, n) for n, src in zip(entry["lines"], entry["source_lines"], strict=True)}
    assert planted <= pairs  # every planted near-duplicate is found next to its source
    assert not pairs - planted  # and no two clean rows look alike
