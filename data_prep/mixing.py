"""Mix sources by weight / row cap, shuffle with the seed, split off eval rows."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from data_prep.rows import Row
from data_prep.spec import DatasetSpec


@dataclass
class MixResult:
    rows: list[Row]
    dropped: list[Row] = field(default_factory=list)  # not sampled (weight < 1 or max_rows)
    added: int = 0  # repeats from weight > 1
    per_source: list[dict[str, int | float | None]] = field(default_factory=list)


def mix(rows: list[Row], spec: DatasetSpec, seed: int) -> MixResult:
    groups: list[list[Row]] = [[] for _ in spec.sources]
    for row in rows:
        groups[row.src_index].append(row)
    result = MixResult(rows=[])
    for i, (src, group) in enumerate(zip(spec.sources, groups, strict=True)):
        target = len(group) if src.weight is None else round(len(group) * src.weight)
        if src.max_rows is not None:
            target = min(target, src.max_rows)
        # Per-source RNG: changing one source's weight leaves the others' samples alone.
        rng = random.Random(f"{seed}:{i}")
        repeats, remainder = divmod(target, len(group)) if group else (0, 0)
        chosen = sorted(rng.sample(range(len(group)), remainder))
        picked = group * repeats + [group[j] for j in chosen]
        if repeats == 0:
            keep = set(chosen)
            result.dropped.extend(r for j, r in enumerate(group) if j not in keep)
        result.added += max(0, len(picked) - len(group))
        result.rows.extend(picked)
        result.per_source.append(
            {
                "source": src.label,
                "curated": len(group),
                "weight": src.weight,
                "max_rows": src.max_rows,
                "mixed": len(picked),
            }
        )
    return result


def shuffle_and_split(
    rows: list[Row], *, shuffle: bool, eval_split: float, seed: int
) -> tuple[list[Row], list[Row]]:
    rows = list(rows)
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(rows)
    if eval_split <= 0 or len(rows) < 2:
        return rows, []
    # Hold out whole records, with all their repeats (weight > 1) and both rows of a
    # pair split for `unpaired`, so no eval prompt is also trained on.
    records = list(dict.fromkeys((r.src_index, r.line) for r in rows))
    n_eval = min(len(records) - 1, max(1, round(len(records) * eval_split)))
    if n_eval <= 0:
        return rows, []
    held = set(rng.sample(records, n_eval))
    train = [r for r in rows if (r.src_index, r.line) not in held]
    evals = [r for r in rows if (r.src_index, r.line) in held]
    return train, evals
