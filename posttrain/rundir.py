"""The run directory: `runs/<name>/` with the resolved recipe and one folder per stage.

    runs/<name>/recipe.resolved.yaml
    runs/<name>/data/<dataset>/...          curated data + report
    runs/<name>/base/eval.json
    runs/<name>/<stage>/stage.json          status, fingerprint, timings, versions, lineage
    runs/<name>/<stage>/adapter/            this stage's LoRA (on its input model)
    runs/<name>/<stage>/metrics.jsonl       training logs
    runs/<name>/<stage>/eval.json
    runs/<name>/<stage>/export/peft|merged
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

_VERSIONED = ("posttrain", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "lm_eval")


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so a killed process never leaves half a file that parses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (trainer_state.json is written last)."""
    candidates = [
        p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
        and (p / "trainer_state.json").exists()
    ]
    return max(candidates, key=lambda p: int(p.name.split("-")[-1]), default=None)


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string, to the second."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
