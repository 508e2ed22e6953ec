"""A cheap near-duplicate guard so the clean data holds no accidental near-duplicates.

The curation demo plants near-duplicates on purpose and counts them; templated
rows that happen to look alike would blur those counts.
"""

from __future__ import annotations

import re
from collections import defaultdict

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return frozenset(tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDupGuard:
    """Accepts a text unless it is too similar to an accepted text in the same bucket."""

    def __init__(self, threshold: float = 0.6) -> None:
        self.threshold = threshold
        self._buckets: dict[str, list[frozenset]] = defaultdict(list)

    def admit(self, bucket: str, text: str) -> bool:
        sh = shingles(text)
        if any(jaccard(sh, other) >= self.threshold for other in self._buckets[bucket]):
            return False
        self._buckets[bucket].append(sh)
        return True


def ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
