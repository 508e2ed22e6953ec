"""What every curation operator receives and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.rows import Row


@dataclass
class OpContext:
    kind: str
    base_dir: Path
    tokenizer: Any = None
    eval_texts: Sequence[str] = ()
    seed: int = 0


@dataclass
class OpResult:
    kept: list[Row]
    removed: list[tuple[Row, str, str]] = field(default_factory=list)  # (row, reason, detail)
    details: dict[str, Any] = field(default_factory=dict)  # operator-specific counts for the report
