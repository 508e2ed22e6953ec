"""Benchmark near-duplicate removal (data_prep MinHash + LSH) on generated documents.

Generates N documents of Zipf-distributed pseudo-words (50-200 words), then
plants near-duplicates: copies of earlier documents with light edits
(a few word substitutions, a deleted or inserted word, changed case and
punctuation, sometimes a short prefix like "Sure!"). It runs the dedup and
prints docs/s, wall time, and recall / precision on the planted copies:

  recall     planted duplicates removed / planted duplicates
  precision  planted duplicates removed / all rows removed

(a planted duplicate is every member of an original+copies group but the
earliest one, which dedup keeps).

Recall is also shown over the planted pairs whose true word-shingle Jaccard is
at or above the threshold (what the operator promises to catch).

  python scripts/bench_dedup.py                     # 100k docs, threshold 0.8
  python scripts/bench_dedup.py --docs 20000 --no-baseline
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.minhash import near_duplicates
from data_prep.operators.dedup import MinHashDedup
from data_prep.text import words

_PREFIXES = ["Sure! ", "Answer: ", "Here you go. ", "OK, "]


def make_vocab(rng: np.random.Generator, size: int) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, size=size)
    return np.array(["".join(rng.choice(letters, n)) for n in lengths], dtype=object)


def perturb(rng: np.random.Generator, text: str, vocab: np.ndarray, edit_rate: float) -> str:
    toks = text.split(" ")
    n_edits = max(1, round(len(toks) * edit_rate))
    for _ in range(n_edits):
        op = rng.integers(0, 3)
        i = int(rng.integers(0, len(toks)))
        if op == 0:
            toks[i] = str(vocab[rng.integers(0, len(vocab))])
        elif op == 1 and len(toks) > 5:
            del toks[i]
        else:
            toks.insert(i, str(vocab[rng.integers(0, len(vocab))]))
    out = " ".join(toks)
    if rng.random() < 0.3:
        out = out.upper() if rng.random() < 0.2 else out.capitalize()
    if rng.random() < 0.3:
        out = out.replace(" ", "  ", 3) + "."
    if rng.random() < 0.2:
        out = _PREFIXES[int(rng.integers(0, len(_PREFIXES)))] + out
    return out


def generate(
    n_docs: int, dup_fraction: float, edit_rate: float, seed: int
) -> tuple[list[str], dict[int, int]]:
    """Shuffled documents and {planted duplicate: the earliest member of its group}.

    A group is an original and its perturbed copies; dedup should keep the
    earliest member (original or not) and remove the others.
    """
    rng = np.random.default_rng(seed)
    vocab = make_vocab(rng, 30_000)
    zipf = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    zipf /= zipf.sum()
    n_planted = int(n_docs * dup_fraction)
    n_orig = n_docs - n_planted
    lengths = rng.integers(50, 201, size=n_orig)
    ids = rng.choice(len(vocab), size=int(lengths.sum()), p=zipf)
    docs = [" ".join(vocab[chunk]) for chunk in np.split(ids, np.cumsum(lengths)[:-1])]
    group = list(range(n_orig))  # document -> its original
    for orig in rng.choice(n_orig, size=n_planted, replace=True).tolist():
        docs.append(perturb(rng, docs[orig], vocab, edit_rate))
        group.append(orig)
    order = rng.permutation(len(docs))
    shuffled = [docs[i] for i in order]
    members: dict[int, list[int]] = {}
    for new_pos, old in enumerate(order.tolist()):
        members.setdefault(group[old], []).append(new_pos)
    planted = {}
    for positions in members.values():
        for p in positions[1:]:  # enumerate() order: positions[0] is the earliest
            planted[p] = positions[0]
    return shuffled, planted


def jaccard(a: str, b: str, k: int) -> float:
    def grams(t: str) -> set[tuple[str, ...]]:
        w = words(t)
        return {tuple(w[i : i + k]) for i in range(max(1, len(w) - k + 1))}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def bench_datasketch(docs: list[str], spec: MinHashDedup, limit: int) -> float:
    """docs/s of datasketch MinHash + MinHashLSH on the first `limit` documents."""
    from datasketch import MinHash, MinHashLSH

    subset = docs[:limit]
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
    for i, d in enumerate(subset):
        w = words(d)
        grams = [" ".join(w[j : j + spec.shingle]).encode() for j in range(max(1, len(w) - spec.shingle + 1))]
        m = MinHash(num_perm=spec.num_perm)
        m.update_batch(grams)
        lsh.query(m)
        lsh.insert(i, m)
    return len(subset) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument(
        "--dup-fraction", type=float, default=0.1, help="share of documents that are planted copies"
    )
    ap.add_argument("--edit-rate", type=float, default=0.02, help="word edits per word in a planted copy")
    ap.add_argument("--threshold", type=float, default=MinHashDedup().threshold)
    ap.add_argument("--num-perm", type=int, default=MinHashDedup().num_perm)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the datasketch baseline (timed on 5k documents)"
    )
    args = ap.parse_args()
    spec = MinHashDedup(threshold=args.threshold, num_perm=args.num_perm)

    t0 = time.perf_counter()
    docs, planted = generate(args.docs, args.dup_fraction, args.edit_rate, args.seed)
    words_total = sum(len(d.split()) for d in docs)
    print(
        f"generated {len(docs)} docs ({words_total / len(docs):.0f} words avg), {len(planted)} planted duplicates "
        f"in {time.perf_counter() - t0:.1f}s"
    )

    t0 = time.perf_counter()
    drop = near_duplicates(docs, spec.threshold, spec.num_perm, spec.shingle)
    wall = time.perf_counter() - t0

    removed = set(drop)
    hit = removed & set(planted)
    recall = len(hit) / len(planted) if planted else 1.0
    precision = len(hit) / len(removed) if removed else 1.0
    true_j = {c: jaccard(docs[c], docs[o], spec.shingle) for c, o in planted.items()}
    above = [c for c, j in true_j.items() if j >= spec.threshold]
    recall_above = len(set(above) & removed) / len(above) if above else 1.0
    js = np.array(list(true_j.values()))
    print(
        f"planted pairs' true Jaccard: p5 {np.percentile(js, 5):.2f}  p50 {np.median(js):.2f}  "
        f"min {js.min():.2f}; {len(above)}/{len(planted)} at or above threshold {spec.threshold}"
    )
    print(
        f"near-dup dedup: {len(docs)} docs in {wall:.1f}s = {len(docs) / wall:,.0f} docs/s "
        f"(threshold {spec.threshold}, {spec.num_perm} perms, {spec.shingle}-word shingles)"
    )
    print(
        f"removed {len(removed)}; recall {recall:.3f} (all planted), {recall_above:.3f} (planted with "
        f"Jaccard >= threshold); precision {precision:.3f}"
    )
    if not args.no_baseline:
        rate = bench_datasketch(docs, spec, 5000)
        print(
            f"baseline datasketch MinHash+MinHashLSH: {rate:,.0f} docs/s -> {len(docs) / rate:.0f}s for {len(docs)} docs"
        )
        print(f"speed ratio posttrain / datasketch: {len(docs) / wall / rate:.1f}x")


if __name__ == "__main__":
    main()
