from __future__ import annotations

import random
from pathlib import Path

from data_prep.minhash import lsh_params, near_duplicates, shingle_hashes, signatures
from data_prep.operators import OpContext
from data_prep.operators.dedup import ExactDedup, MinHashDedup, exact_dedup, minhash_dedup
from data_prep.rows import Row

CTX = OpContext(kind="chat", base_dir=Path("."))


def rows_of(pairs):
    return [
        Row(
            {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}, "t", i + 1, 0
        )
        for i, (u, a) in enumerate(pairs)
    ]


def test_exact_dedup_folds_case_and_whitespace_and_keeps_the_first():
    rows = rows_of(
        [("Hi there", "Hello!"), ("hi   THERE", " hello!"), ("Hi there", "Hello?"), ("Hi", "there Hello!")]
    )
    res = exact_dedup(rows, ExactDedup(), CTX)
    assert [r.line for r in res.kept] == [1, 3, 4]
    assert [(r.line, why, detail) for r, why, detail in res.removed] == [
        (2, "exact_duplicate", "same text as t:1")
    ]


def test_exact_dedup_on_prompt_only():
    rows = rows_of([("Same question", "answer one"), ("same question", "answer two")])
    assert len(exact_dedup(rows, ExactDedup(on="prompt"), CTX).kept) == 1
    assert len(exact_dedup(rows, ExactDedup(on="all"), CTX).kept) == 2


def _doc(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(5000)}" for _ in range(n))


def test_minhash_finds_planted_near_duplicates_and_nothing_else():
    rng = random.Random(0)
    docs = [_doc(rng, 80) for _ in range(300)]
    planted = {}
    for k in range(30):
        words = docs[k * 7].split()
        words[rng.randrange(len(words))] = "CHANGED"  # one substitution: Jaccard ~0.93
        docs.append(" ".join(words).upper() + " !")
        planted[len(docs) - 1] = k * 7
    drop = near_duplicates(docs, threshold=0.8)
    assert set(drop) == set(planted)
    assert all(drop[i][0] == planted[i] and drop[i][1] >= 0.8 for i in drop)


def test_minhash_threshold_is_exact_jaccard():
    base = " ".join(f"t{i}" for i in range(40))  # 38 distinct 3-gram shingles
    words = base.split()
    words[20] = "x"  # breaks 3 shingles: Jaccard 35/41 = 0.854
    other = " ".join(words)
    assert set(near_duplicates([base, other], threshold=0.85)) == {1}
    assert near_duplicates([base, other], threshold=0.86) == {}


def test_minhash_short_and_empty_documents():
    docs = ["hello world", "Hello, world!", "", "", "hello there world"]
    drop = near_duplicates(docs, threshold=0.8)
    assert set(drop) == {1}  # empty docs have no shingles and are never matched


def test_signatures_estimate_jaccard():
    rng = random.Random(1)
    a = _doc(rng, 200)
    words = a.split()
    b = " ".join([*words[:150], _doc(rng, 50)])
    sh = shingle_hashes([a, b], 3)
    sig = signatures(sh, 256)
    sa = set(sh.values[sh.offsets[0] : sh.offsets[1]].tolist())
    sb = set(sh.values[sh.offsets[1] : sh.offsets[2]].tolist())
    true = len(sa & sb) / len(sa | sb)
    est = float((sig[0] == sig[1]).mean())
    assert abs(est - true) < 0.1


def test_lsh_params_catch_pairs_at_the_threshold():
    for t in (0.5, 0.7, 0.8, 0.9):
        b, r = lsh_params(t, 128)
        assert b * r <= 128 and 1 - (1 - t**r) ** b >= 0.99


def test_minhash_operator_reports_partner():
    rows = rows_of(
        [
            ("q", "the quick brown fox jumps over the lazy dog today"),
            ("q", "The quick brown fox jumps over the lazy dog today."),
        ]
    )
    res = minhash_dedup(rows, MinHashDedup(), CTX)
    assert len(res.kept) == 1 and "t:1" in res.removed[0][2]
