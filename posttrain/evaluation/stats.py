"""How sure a score and a difference between two scores are: standard errors, 95% intervals, paired tests.

Every model of a run is scored on the same documents, so two models' results
pair up document by document. A paired test compares them where it matters
(the documents one model got right and the other wrong) and is far more
sensitive than comparing two intervals:

- 0/1 metrics (exact match, accuracy): McNemar's test on the discordant pairs,
  exact (binomial) when there are fewer than 25 of them, else chi-square with
  continuity correction;
- any other per-document metric: a seeded paired bootstrap of the mean difference.

Chance-normalized scores follow the Open LLM Leaderboard v2:
(score - chance) / (1 - chance), clipped at 0, chance being 1 / number of
choices for multiple choice and 0 for generation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054
ALPHA = 0.05
EXACT_BELOW = 25
"""McNemar is exact (binomial) below this many discordant pairs."""
BOOTSTRAP_RESAMPLES = 10_000


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def sample_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)), as lm-eval computes it."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(np.std(np.asarray(values, dtype=float), ddof=1) / math.sqrt(n))


def wilson_interval(p: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: stays inside [0, 1] and is not empty at p = 0 or 1."""
    if n <= 0:
        return (0.0, 1.0)
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if p <= 0.0 else max(0.0, centre - half)
    high = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return (low, high)


def normal_interval(mean: float, stderr: float) -> tuple[float, float]:
    return (mean - Z95 * stderr, mean + Z95 * stderr)


def normalized_score(score: float, chance: float) -> float:
    """(score - chance) / (1 - chance), clipped at 0: 0 is guessing, 1 is perfect."""
    if chance >= 1.0:
        return 0.0
    return max(0.0, (score - chance) / (1.0 - chance))


@dataclass(frozen=True)
class TaskStats:
    """One task's headline score with its uncertainty."""

    metric: str
    score: float
    stderr: float | None
    ci95: tuple[float, float] | None
    n: int
    chance: float
    normalized: float
    binary: bool
    per_doc: bool
    """Whether per-document values exist (the paired tests need them)."""
    note: str | None = None
    """Why something is unavailable (a corpus-level metric has no per-document values)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskStats:
        ci = data.get("ci95")
        return cls(**{**data, "ci95": tuple(ci) if ci is not None else None})


def task_stats(
    metric: str,
    score: float,
    values: Sequence[float] | None,
    *,
    reported_stderr: float | None,
    n: int,
    chance: float,
    note: str | None = None,
) -> TaskStats:
    """Stats of a score: lm-eval's stderr when it reported one, else from the per-document values."""
    binary = values is not None and len(values) > 0 and is_binary(values)
    stderr = reported_stderr
    if stderr is None and values:
        stderr = sample_stderr(values)
    if binary:
        ci: tuple[float, float] | None = wilson_interval(score, n)
    else:
        ci = normal_interval(score, stderr) if stderr is not None else None
    return TaskStats(
        metric=metric, score=score, stderr=stderr, ci95=ci, n=n, chance=chance,
        normalized=normalized_score(score, chance), binary=binary, per_doc=values is not None, note=note,
    )


@dataclass(frozen=True)
class DeltaTest:
    """A difference between two models on the same documents, and whether it is more than noise."""

    delta: float
    test: str | None
    """mcnemar-exact, mcnemar-chi2, paired-bootstrap, or None when no paired test could run."""
    p_value: float | None
    n_paired: int
    note: str | None = None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def mcnemar(only_a: int, only_b: int) -> tuple[str, float]:
    """Two-sided McNemar p-value from the discordant counts (a right & b wrong, a wrong & b right)."""
    n = only_a + only_b
    if n == 0:
        return "mcnemar-exact", 1.0
    if n < EXACT_BELOW:
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        return "mcnemar-exact", min(1.0, 2 * tail)
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return "mcnemar-chi2", math.erfc(math.sqrt(chi2 / 2))  # chi-square, 1 degree of freedom


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> float:
    """Two-sided p-value that mean(b - a) is 0: how often resampled mean differences fall on either side of 0."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diff.size == 0 or np.all(diff == 0):
        return 1.0
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    below = (np.sum(means <= 0) + 1) / (resamples + 1)
    above = (np.sum(means >= 0) + 1) / (resamples + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_test(a: dict[str, float], b: dict[str, float], *, seed: int = 0) -> DeltaTest:
    """Compare model b with model a on the documents both were scored on (keyed by document)."""
    common = [k for k in a if k in b]
    if not common:
        return DeltaTest(float("nan"), None, None, 0, "no documents in common")
    va = [float(a[k]) for k in common]
    vb = [float(b[k]) for k in common]
    delta = float(np.mean(vb) - np.mean(va))
    note = None
    if len(common) < max(len(a), len(b)):
        note = f"paired on the {len(common)} documents both models were scored on"
    if is_binary(va) and is_binary(vb):
        only_a = sum(1 for x, y in zip(va, vb, strict=True) if x == 1.0 and y == 0.0)
        only_b = sum(1 for x, y in zip(va, vb, strict=True) if x == 0.0 and y == 1.0)
        test, p = mcnemar(only_a, only_b)
        return DeltaTest(delta, test, p, len(common), note)
    return DeltaTest(delta, "paired-bootstrap", paired_bootstrap(va, vb, seed=seed), len(common), note)


@dataclass(frozen=True)
class GainKept:
    """The share of a reference model's gain over base that a model keeps: (m − base) / (reference − base)."""

    share: float
    low: float | None
    """95% paired bootstrap interval (documents resampled together for all three models); None when the
    reference's own gain over base is not reliably positive, so the share has no finite bound."""
    high: float | None
    n: int
    """Documents all three were scored on."""


def gain_kept(base: dict[str, float], reference: dict[str, float], model: dict[str, float], *,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> GainKept | None:
    """How much of `reference`'s gain over `base` `model` keeps (a distilled student and its teacher), per document.

    None when the reference gained nothing on these documents (there is no gain to keep).

    >>> docs = [str(i) for i in range(10)]
    >>> base = dict.fromkeys(docs, 0.0)
    >>> teacher = {d: 1.0 if int(d) < 8 else 0.0 for d in docs}
    >>> student = {d: 1.0 if int(d) < 4 else 0.0 for d in docs}
    >>> kept = gain_kept(base, teacher, student)
    >>> kept.share, kept.n, kept.low <= 0.5 <= kept.high
    (0.5, 10, True)
    """
    common = [k for k in reference if k in base and k in model]
    if not common:
        return None
    b, r, m = (np.asarray([float(d[k]) for k in common]) for d in (base, reference, model))
    gain = r.mean() - b.mean()
    if gain <= 0:
        return None
    share = float((m.mean() - b.mean()) / gain)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(resamples, len(common)))
    gains = r[idx].mean(axis=1) - b[idx].mean(axis=1)
    positive = gains > 0
    if positive.mean() < 0.975:  # the reference's gain itself is within noise: the share is unbounded
        return GainKept(share, None, None, len(common))
    shares = (m[idx].mean(axis=1) - b[idx].mean(axis=1))[positive] / gains[positive]
    low, high = np.percentile(shares, [2.5, 97.5])
    return GainKept(share, float(low), float(high), len(common))
