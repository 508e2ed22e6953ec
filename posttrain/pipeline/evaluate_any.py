"""`posttrain eval`: score any model with the same code path as a run, and put it on the same leaderboard.

A model reference is one of: a run (`runs/<name>` or just `<name>`: its last
completed stage), a run's stage (`runs/<name>/<stage>`, `<name>/<stage>`, `<name>/base`),
a PEFT adapter folder (adapter_config.json: loaded on the base it names), a
Hugging Face model folder, a `.gguf` file, the embedded alias, or a hub id.
The evaluation lands in `runs/_eval/<label>/` (eval.json + samples/) and on
`runs/leaderboard.sqlite` under run `eval`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import UserError
from posttrain.evaluation.record import EvalEvidence, load_evidence
from posttrain.fingerprint import fingerprint
from posttrain.leaderboard.store import LEADERBOARD_DB, record
from posttrain.models.lineage import ADAPTER_CONFIG, Lineage, materialize
from posttrain.models.precision import precision_key
from posttrain.models.resolve import resolve_model
from posttrain.pipeline.evaluate import eval_fingerprint, evaluate_folder
from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import utc_now
from posttrain.stagekit.specs import EvalSpec

EVAL_RUN = "eval"
"""The leaderboard run name of models evaluated on their own."""
EVAL_DIR = "_eval"
"""Their folder in the runs directory (a recipe name cannot start with `_`, so no run shares it)."""


@dataclass
class EvalTarget:
    ref: str
    label: str
    """The model's name on the leaderboard."""
    identity: str
    """What the model is, for the eval fingerprint."""
    tokenizer_path: str
    load: Callable[[], Any]


@dataclass
class EvalOutcome:
    target: EvalTarget
    folder: Path
    scores: dict[str, float]
    evidence: EvalEvidence | None


def resolve_target(ref: str, *, runs_dir: Path) -> EvalTarget:
    """What `ref` names, ready to load; UserError naming `ref` when it is no model."""
    path = Path(ref).expanduser()
    if not path.exists() and (runs_dir / ref).exists():
        path = runs_dir / ref
    for candidate in (path, runs_dir / ref):
        if candidate.name == BASE and RunDir(candidate.parent).recipe_file.is_file():
            return _stage_target(ref, candidate)  # base/ exists only when the run evaluated its base
    if path.is_dir():
        if RunDir(path).recipe_file.is_file():
            return _stage_target(ref, path / _last_stage(RunDir(path)))
        if RunDir(path.parent).is_stage_dir(path):
            return _stage_target(ref, path)
        if (path / ADAPTER_CONFIG).is_file():
            return _adapter_target(ref, path)
    try:
        resolved = resolve_model(str(path) if path.exists() else ref)
    except UserError as exc:
        raise UserError(f"cannot evaluate {ref!r}: {exc}") from None
    return EvalTarget(
        ref, _slug(Path(ref).stem if resolved.source in {"local", "gguf"} else ref), resolved.identity,
        resolved.path, lambda: _load(resolved.path),
    )


def _load(path: str) -> Any:
    from posttrain.models.loading import load_model

    return load_model(path, purpose="inference")


def _last_stage(run: RunDir) -> str:
    last = run.last_completed_stage()
    if last is None:
        raise UserError(f"run {run.root} has no completed stage to evaluate (stages: {', '.join(run.stages()) or 'none'})")
    return last


def _stage_target(ref: str, stage_dir: Path) -> EvalTarget:
    run, stage = RunDir(stage_dir.parent), stage_dir.name
    label = f"{run.root.name}/{stage}"
    if stage == BASE:
        base = resolve_model(str((run.recipe().get("model") or {}).get("base", "")))
        return EvalTarget(ref, label, base.identity, base.path, lambda: _load(base.path))
    status = run.read_stage(stage) or {}
    if status.get("status") != "completed":
        raise UserError(f"cannot evaluate {ref!r}: stage {label} has not completed (status {status.get('status')!r})")
    lineage = run.lineage(stage)
    # The recorded lineage is relative to the run directory: a moved run scores under the same key.
    identity = fingerprint("stage", status.get("fingerprint", ""), status.get("lineage") or {})
    return EvalTarget(ref, label, identity, lineage.base, lambda: materialize(lineage))


def _adapter_target(ref: str, adapter_dir: Path) -> EvalTarget:
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base_ref = config.get("base_model_name_or_path")
    if not base_ref:
        raise UserError(f"cannot evaluate {ref!r}: its adapter_config.json names no base_model_name_or_path")
    try:
        base = resolve_model(str(base_ref), base_dir=adapter_dir)
    except UserError as exc:
        raise UserError(f"cannot evaluate adapter {ref!r}: its base model {base_ref!r} does not resolve: {exc}") from None
    has_tokenizer = any((adapter_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))

    def load() -> Any:  # merged into fp32 weights, then cast: scored as a run scores its stages
        return materialize(Lineage(base=base.path, adapters=[str(adapter_dir)]))

    identity = fingerprint("adapter", base.identity, _adapter_digest(adapter_dir))
    return EvalTarget(ref, _slug(adapter_dir.name), identity, str(adapter_dir) if has_tokenizer else base.path, load)


def _adapter_digest(adapter_dir: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for file in sorted(adapter_dir.glob("adapter_*")):
        h.update(file.read_bytes())
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", text).strip("_") or "model"


def evaluate_reference(ref: str, spec: EvalSpec, *, runs_dir: Path, seed: int, console: Console) -> EvalOutcome:
    """Evaluate the model `ref` names on `spec` into runs/_eval/<label>/ and record it on the leaderboard."""
    from posttrain.models.loading import load_tokenizer

    target = resolve_target(ref, runs_dir=runs_dir)
    target.identity = fingerprint(target.identity, precision_key("auto"))  # bf16 scores differ from fp32 ones
    tokenizer = load_tokenizer(target.tokenizer_path)
    folder = runs_dir / EVAL_DIR / _slug(target.label)
    scores = evaluate_folder(
        spec, folder, target.identity, target.load, tokenizer=tokenizer, console=console, label=target.label,
        seed=seed, extra={"model_ref": ref},
    )
    evidence = load_evidence(folder)
    record(
        runs_dir / LEADERBOARD_DB, EVAL_RUN, target.label, ref, scores, eval_fingerprint(target.identity, spec),
        utc_now(), stats=evidence.stats if evidence else None,
    )
    return EvalOutcome(target, folder, scores, evidence)
