"""The uncertainty math on hand-made vectors: intervals, McNemar, paired bootstrap, chance normalization."""

from __future__ import annotations

import math

import pytest

from posttrain.evaluation.stats import (
    mcnemar,
    normalized_score,
    paired_bootstrap,
    paired_test,
    sample_stderr,
    task_stats,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("only_a", "only_b", "test", "p"),
    [
        (0, 0, "mcnemar-exact", 1.0),
        (5, 0, "mcnemar-exact", 2 / 2**5),  # 0.0625: five discordant pairs all one way is not enough
        (6, 0, "mcnemar-exact", 2 / 2**6),  # 0.03125: six is
        (10, 2, "mcnemar-exact", 2 * (1 + 12 + 66) / 2**12),  # 0.0386
        (3, 3, "mcnemar-exact", 1.0),
        (30, 10, "mcnemar-chi2", math.erfc(math.sqrt(9.025 / 2))),  # (|30-10|-1)^2/40 = 9.025 -> p = 0.00266
    ],
)
def test_mcnemar_known_values(only_a: int, only_b: int, test: str, p: float) -> None:
    assert mcnemar(only_a, only_b) == (test, pytest.approx(p))
    assert mcnemar(only_b, only_a) == (test, pytest.approx(p))  # two-sided: symmetric


def test_mcnemar_chi2_value_matches_the_table() -> None:
    _, p = mcnemar(30, 10)
    assert p == pytest.approx(0.002663, abs=2e-6)


def test_paired_test_on_binary_vectors_counts_discordant_pairs() -> None:
    a = {f"d{i}": v for i, v in enumerate([1, 0, 0, 0, 0, 0, 0, 1, 1, 0])}
    b = {f"d{i}": v for i, v in enumerate([1, 1, 1, 1, 1, 1, 1, 1, 1, 0])}  # 6 gained, none lost
    result = paired_test(a, b)
    assert result.test == "mcnemar-exact" and result.p_value == pytest.approx(2 / 2**6)
    assert result.delta == pytest.approx(0.6) and result.significant and result.n_paired == 10


def test_paired_test_pairs_by_document_not_by_position() -> None:
    a = {"x": 1.0, "y": 0.0}
    b = {"y": 0.0, "x": 1.0}
    assert paired_test(a, b).p_value == 1.0 and paired_test(a, b).delta == 0.0
    partial = paired_test({"x": 1.0, "y": 0.0, "z": 1.0}, {"x": 1.0})
    assert partial.n_paired == 1 and "1 documents" in (partial.note or "")


def test_bootstrap_identical_vectors_is_never_significant() -> None:
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2]
    assert paired_bootstrap(values, values) == 1.0
    result = paired_test(dict(enumerate(values)), dict(enumerate(values)))  # type: ignore[arg-type]
    assert result.test == "paired-bootstrap" and result.p_value == 1.0 and not result.significant


def test_bootstrap_clearly_shifted_vectors_are_significant() -> None:
    a = [0.1 * (i % 7) for i in range(40)]
    b = [x + 0.3 + 0.01 * (i % 3) for i, x in enumerate(a)]
    p = paired_bootstrap(a, b)
    assert p < 0.05
    assert paired_bootstrap(a, b) == p  # seeded: the same answer every time
    assert paired_bootstrap(b, a) == p  # two-sided


def test_bootstrap_noise_is_not_significant() -> None:
    a = [0.2, 0.8, 0.4, 0.6, 0.5, 0.3, 0.7, 0.5]
    b = [0.3, 0.7, 0.5, 0.5, 0.4, 0.4, 0.6, 0.6]  # moves both ways, mean unchanged
    assert paired_bootstrap(a, b) > 0.5


def test_wilson_interval() -> None:
    low, high = wilson_interval(0.5, 20)
    assert low == pytest.approx(0.2993, abs=1e-4) and high == pytest.approx(0.7007, abs=1e-4)
    assert wilson_interval(0.0, 20) == (0.0, pytest.approx(0.1611, abs=1e-4))  # not empty at 0
    assert wilson_interval(1.0, 5)[1] == 1.0


def test_task_stats_binary_and_continuous() -> None:
    binary = task_stats("acc", 0.25, [1.0, 0.0, 0.0, 0.0], reported_stderr=None, n=4, chance=0.25)
    assert binary.binary and binary.stderr == pytest.approx(sample_stderr([1, 0, 0, 0])) == pytest.approx(0.25)
    assert binary.ci95 == wilson_interval(0.25, 4) and binary.normalized == 0.0
    cont = task_stats("f1", 0.5, [0.4, 0.6], reported_stderr=0.1, n=2, chance=0.0)
    assert not cont.binary and cont.stderr == 0.1
    assert cont.ci95 == (pytest.approx(0.5 - 1.96 * 0.1, abs=1e-3), pytest.approx(0.5 + 1.96 * 0.1, abs=1e-3))
    corpus = task_stats("bleu", 12.0, None, reported_stderr=None, n=3, chance=0.0, note="corpus-level")
    assert not corpus.per_doc and corpus.stderr is None and corpus.ci95 is None


def test_normalized_score_against_chance() -> None:
    assert normalized_score(0.25, 0.25) == 0.0  # 4-way multiple choice at chance counts as nothing
    assert normalized_score(0.10, 0.25) == 0.0  # below chance is clipped
    assert normalized_score(0.625, 0.25) == pytest.approx(0.5)
    assert normalized_score(0.3, 0.0) == 0.3  # generation: chance is 0
