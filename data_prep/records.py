"""What curation hands back: one `StepRecord` per step, and the finished `PreparedDataset`.

`prepare_dataset` writes these, the report reads them; neither module imports
the other. `report.json` stores the records with `to_json()`, a cached dataset
reads them back with `from_json()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StepRecord:
    """Rows into and out of one step of the curation (load, each curate step, mix)."""

    step: str
    """`load`, a curate step's label (`dedup.exact`, `pii`) or `mix`."""
    rows_in: int
    removed: int
    rows_out: int
    reasons: dict[str, int] = field(default_factory=dict)
    """Removed rows by reason, most frequent first."""
    details: dict[str, Any] = field(default_factory=dict)
    """Step-specific counts for the report (pairs split, LSH bands, PII scrubbed, ...)."""
    spec: dict[str, Any] | None = None
    """A curate step's full settings, as its model dumps them."""
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        # Key order is report.json's; keys without a value are left out.
        out: dict[str, Any] = {"step": self.step}
        if self.spec is not None:
            out["spec"] = self.spec
        out |= {
            "rows_in": self.rows_in,
            "removed": self.removed,
            "rows_out": self.rows_out,
            "reasons": self.reasons,
            "details": self.details,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        return cls(
            step=data["step"],
            rows_in=data["rows_in"],
            removed=data["removed"],
            rows_out=data["rows_out"],
            reasons=dict(data.get("reasons") or {}),
            details=dict(data.get("details") or {}),
            spec=data.get("spec"),
            seconds=data.get("seconds"),
        )


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    kind: str
    train_path: Path
    eval_path: Path | None
    rows: int  # train rows
    report: dict[str, Any]
    fingerprint: str

    @property
    def steps(self) -> list[StepRecord]:
        return [StepRecord.from_json(s) for s in self.report["steps"]]
