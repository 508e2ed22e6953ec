"""Crash-safe file I/O of a run directory: atomic JSON, checkpoint checks, stage histories, library versions.

Which file is where in a run directory is `posttrain.run_layout.RunDir`'s business, not this module's.
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
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


def usable_checkpoint(checkpoints_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest whole `checkpoint-N` folder, and the newer ones skipped as damaged, with why.

    A process killed while writing, or a disk that filled up, leaves a
    checkpoint whose files are cut short; resuming from it would crash or
    silently train from garbage, so the previous one is used instead.
    """
    numbered = [p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    skipped: list[tuple[Path, str]] = []
    for candidate in sorted(numbered, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate, skipped
        skipped.append((candidate, problem))
    return None, skipped


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is whole."""
    state = folder / "trainer_state.json"  # the Trainer writes it last
    if not state.exists():
        return "no trainer_state.json (it was still being written)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is cut short"
    for weights in folder.glob("*.safetensors"):
        if not _safetensors_whole(weights):
            return f"{weights.name} is cut short"
    for pickled in [*folder.glob("*.pt"), *folder.glob("*.bin")]:
        if not zipfile.is_zipfile(pickled):  # torch.save writes a zip whose directory sits at the end
            return f"{pickled.name} is cut short"
    return None


def _safetensors_whole(path: Path) -> bool:
    """The header parses and the file is as long as the tensors it declares."""
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + header_len + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string, to the second."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


HISTORY_KEPT = 20
"""How many of a stage's latest run records `stage.json` keeps in `history`."""


def run_id(started: float) -> str:
    """A run's identity in stage histories: its start as ISO-8601 UTC, to the millisecond (sorts as time)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds")


def with_history(record: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """`record`'s history with `entry` (what one run did with the stage) appended, the oldest dropped past the cap.

    Entries: `run` (run_id), `outcome` (trained, resumed, cached, failed; running while
    the stage trains, left so by a kill), and for a training run `planned` (why it
    trained: run, rerun, forced, resume), `seconds`, `resumed_from`.
    """
    history = [h for h in record.get("history") or [] if isinstance(h, dict)]
    return [*history, entry][-HISTORY_KEPT:]
