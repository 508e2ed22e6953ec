"""The job file: everything a worker process needs to rebuild a stage's context, and what it hands back.

The orchestrator writes `<stage>/launch/job.json` (the resolved recipe, the
stage's name, its input lineage, the prepared datasets, the checkpoint to
resume from); every rank reads it. Rank 0 writes `result.json` (lineage,
metrics, facts); a failing rank writes `errors/rank<N>.json`. Paths in the
files are absolute: on several machines the run directory must be on a
shared filesystem, at the same path on each.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from posttrain.models.lineage import Lineage
from posttrain.stagekit import StageContext, StageResult
from posttrain.stagekit.facts import facts_from_json, facts_to_json
from posttrain.stages import fact_types

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
ERRORS_DIR = "errors"


def launch_dir(stage_dir: Path) -> Path:
    return stage_dir / "launch"


@dataclass
class StageJob:
    recipe: dict[str, Any]
    """The resolved recipe (`Recipe.model_dump(mode="json")`), validated again by the worker."""
    base_dir: str
    """The recipe file's folder: relative paths in the recipe resolve against it."""
    tokenizer: str
    """Folder or hub id the session loaded the tokenizer from."""
    stage: str
    stage_dir: str
    input: dict[str, Any]
    input_name: str
    earlier: dict[str, dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    """Prepared datasets by name, as data_prep.PreparedDataset fields."""
    resume_from: str | None = None

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=str))
        return path

    @classmethod
    def read(cls, path: Path) -> StageJob:
        return cls(**json.loads(path.read_text()))


def job_for(ctx: StageContext, *, recipe: dict[str, Any], stage: str, tokenizer: str) -> StageJob:
    """The job that runs `stage` with the context the orchestrator built for it."""
    return StageJob(
        recipe=recipe, base_dir=str(ctx.base_dir.resolve()), tokenizer=tokenizer, stage=stage,
        stage_dir=str(ctx.stage_dir.resolve()), input=ctx.input.to_dict(), input_name=ctx.input_name,
        earlier={name: lineage.to_dict() for name, lineage in ctx.earlier.items()},
        datasets={name: _dataset_fields(d) for name, d in ctx.datasets.items()},
        resume_from=str(ctx.resume_from) if ctx.resume_from else None,
    )


def datasets_of(job: StageJob) -> dict[str, Any]:
    from data_prep.prepare import PreparedDataset

    prepared = {}
    for name, fields in job.datasets.items():
        eval_path = fields.get("eval_path")
        prepared[name] = PreparedDataset(**{
            **fields, "train_path": Path(fields["train_path"]), "eval_path": Path(eval_path) if eval_path else None,
        })
    return prepared


def write_result(path: Path, result: StageResult, *, launch: dict[str, Any]) -> None:
    """`launch` says how the stage actually ran (processes, accelerate's distributed type)."""
    payload = {
        "lineage": result.lineage.to_dict(), "metrics": result.metrics, "facts": facts_to_json(result.facts),
        "launch": launch,
    }
    path.write_text(json.dumps(payload, indent=1, default=float))


def read_result(path: Path) -> StageResult:
    data = json.loads(path.read_text())
    return StageResult(
        lineage=Lineage.from_dict(data["lineage"]), model=None, metrics=data.get("metrics", {}),
        facts=facts_from_json(data.get("facts"), fact_types()),
    )


def _dataset_fields(prepared: Any) -> dict[str, Any]:
    fields = asdict(prepared)
    fields["report"] = {}  # the curation report stays in the orchestrator; stages read only the rows
    return fields
