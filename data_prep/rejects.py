"""Every row that leaves the dataset, with where it came from and why.

Malformed rows (operator `load` / `format`) count against `max_reject_fraction`;
rows removed by curation operators (dedup, filters, ...) are logged the same way
but are the dataset's intended shrinkage, so they do not.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from data_prep.rows import preview

MALFORMED_OPERATORS = ("load", "format")
EXAMPLES_PER_OPERATOR = 3


@dataclass
class RejectLog:
    entries: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operator, reason) -> n
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, *, source: str, line: int, operator: str, reason: str, detail: str, row: Any) -> None:
        entry = {
            "source": source,
            "line": line,
            "operator": operator,
            "reason": reason,
            "detail": detail,
            "row": preview(row),
        }
        self.entries.append(entry)
        self.counts[(operator, reason)] += 1
        if len(self.examples[operator]) < EXAMPLES_PER_OPERATOR:
            self.examples[operator].append(entry)

    def malformed(self) -> int:
        return sum(n for (op, _), n in self.counts.items() if op in MALFORMED_OPERATORS)

    def reasons(self, operator: str | None = None) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (op, reason), n in self.counts.items():
            if operator is None or op == operator:
                out[reason] += n
        return dict(out.most_common())

    def malformed_reasons(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (op, reason), n in self.counts.items():
            if op in MALFORMED_OPERATORS:
                out[reason] += n
        return dict(out.most_common())
