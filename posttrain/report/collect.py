"""Read a run directory back into plain data for the report: stages, data reports, curves, scores, exports.

Only files are read (stage.json, metrics.jsonl, eval.json, samples/, objective.json,
export/), so a report can be written for any run at any time, by the run itself or
by `posttrain report` later. Files another part of posttrain has not written yet
(samples, objectives, export manifests) are simply absent from the result. An exported
artifact scored in its engine (`<stage>/export/scored/<artifact>/`) whose files are
damaged or cut short is kept with what could be read and a sentence saying what could not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import read_json
from posttrain.stagekit.display import COMMON_PANELS, Panel, panels_from_record

SAMPLES_DIR = "samples"


@dataclass
class EvalData:
    """One model's evaluation: headline scores, their intervals when recorded, per-document rows."""

    scores: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Task → 95% interval (from eval.json `stats`, else ±1.96·stderr of the primary metric)."""
    metric: dict[str, str] = field(default_factory=dict)
    """Task → the metric its headline score is."""
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Task → per-document rows (`samples/<task>.jsonl`): doc_id, prompt, target, response, metrics."""


@dataclass
class StageData:
    name: str
    type: str
    input: str
    status: str
    teachers: list[str] = field(default_factory=list)
    """Other models the stage reads (a distill teacher), by the name the recipe gave."""
    compared_with: str | None = None
    """The stage whose scores this one's are compared with (a distilled student's teacher; stage.json)."""
    seconds: float | None = None
    finished: float | None = None
    data: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    """metrics.jsonl records, one per logging step."""
    facts: dict[str, Any] = field(default_factory=dict)
    eval: EvalData | None = None
    objective: dict[str, Any] | None = None
    """objective.json's `objective`: before/after held-out values, change_stderr, lower_is_better."""
    exports: list[dict[str, Any]] = field(default_factory=list)
    """One entry per exported format: format, path, and what its manifest says (checks, serve command)."""
    full_model: bool = False
    """The stage's weights are a whole model (`<stage>/model/`: a distilled student, a full fine-tune), not a LoRA."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """What each run did with the stage, oldest first (stage.json `history`, see rundir.with_history)."""
    panels: tuple[Panel, ...] = COMMON_PANELS
    """The training-curve panels its stage type declared (stage.json `report`), after the common ones."""
    scored: list[ScoredArtifact] = field(default_factory=list)
    """Its exported artifacts scored inside their engines (`export/scored/<artifact>/`), by name."""
    merged_bytes: int | None = None
    """Size on disk of its merged export (the `merged` format's folder): the reference scored artifacts are
    compared with, in transformers; None when that format was not exported."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The stage's spec as it ran (stage.json `spec`)."""
    loss_mask: dict[str, Any] | None = None
    """The first training example as the loss saw it (loss_mask.json: text runs, learned or not)."""


@dataclass
class ScoredArtifact:
    """One exported artifact scored in its engine: artifact.json as written, its evaluation, what was unreadable."""

    name: str
    """The folder's name (`q4_k_m`, `q8_0`, `vllm`)."""
    folder: Path
    record: dict[str, Any] | None
    """artifact.json (ARCHITECTURE.md "An exported artifact scored in its engine"); None when unreadable."""
    eval: EvalData | None
    size_bytes: int | None = None
    """Size on disk: artifact.json's `size_bytes`, else the size of its `file` (relative to the stage folder)."""
    problems: list[str] = field(default_factory=list)
    """Sentences on what could not be read (a damaged artifact.json or eval.json, a scoring cut short)."""


@dataclass
class DatasetData:
    name: str
    report: dict[str, Any]
    lengths_png: Path | None


@dataclass
class RunData:
    name: str
    run_dir: Path
    stages: list[StageData]
    base: EvalData | None
    datasets: list[DatasetData]
    eval_tasks: list[str] = field(default_factory=list)

    @property
    def latest_run(self) -> str | None:
        """The run id of the latest run that handled any stage, or None for a directory without histories."""
        return max((h["run"] for s in self.stages for h in s.history[-1:] if isinstance(h.get("run"), str)), default=None)

    def models(self) -> list[tuple[str, EvalData]]:
        """Every evaluated model, base first, in pipeline order."""
        out = [(BASE, self.base)] if self.base else []
        return out + [(s.name, s.eval) for s in self.stages if s.eval is not None]


def read_run(run_dir: Path) -> RunData:
    """Everything the report shows about the run in `run_dir`."""
    run = RunDir(run_dir)
    stages = [s for s in (_read_stage(run, name) for name in run.stages()) if s is not None]
    datasets = [
        DatasetData(d.name, read_json(d / "report.json") or {}, d / "lengths.png" if (d / "lengths.png").exists() else None)
        for d in sorted(run.data_root.glob("*")) if (d / "report.json").exists()
    ]
    tasks = list(dict.fromkeys(t for s in stages if s.eval for t in s.eval.scores))
    base = read_eval(run.stage_dir(BASE))
    return RunData(run_dir.name, run_dir, stages, base, datasets, eval_tasks=list(dict.fromkeys([*(base.scores if base else []), *tasks])))


def _read_stage(run: RunDir, name: str) -> StageData | None:
    record = run.read_stage(name)
    if record is None:
        return None
    stage_dir = run.stage_dir(name)
    spec = record.get("spec") or {}
    teachers = [v for k, v in spec.items() if k in ("teacher",) and isinstance(v, str)]
    objective = (read_json(run.objective_file(name)) or {}).get("objective")
    exports = read_exports(run.export_dir(name))
    merged = next((Path(e["path"]) for e in exports if e.get("format") == "merged" and e.get("path")), None)
    return StageData(
        name=record.get("name", name), type=record.get("type", spec.get("type", "?")),
        input=record.get("input", BASE), status=record.get("status", "?"), teachers=teachers,
        compared_with=record.get("compared_with") if isinstance(record.get("compared_with"), str) else None,
        seconds=record.get("seconds"), finished=record.get("finished"), data=record.get("data"),
        metrics=record.get("metrics") or {}, curves=read_jsonl(run.metrics_file(name)),
        facts=record.get("facts") or {}, eval=read_eval(stage_dir), objective=objective,
        exports=exports,
        full_model=(run.model_dir(name) / "config.json").exists(),
        history=[h for h in record.get("history") or [] if isinstance(h, dict)],
        panels=panels_from_record(record),
        scored=read_scored(run, name),
        merged_bytes=folder_bytes(merged) if merged is not None else None,
        spec=spec if isinstance(spec, dict) else {},
        loss_mask=read_json(run.loss_mask_file(name)),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The parseable records of a JSON-lines file; a line cut short by a kill is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def read_eval(folder: Path) -> EvalData | None:
    """eval.json in `folder` with its stats and per-document samples, or None when never evaluated."""
    record = read_json(folder / RunDir.EVAL)
    if record is None:
        return None
    results = record.get("results") or {}
    data = EvalData(scores=dict(record.get("scores") or {}), metric=dict(results.get("primary") or {}))
    for task, stats in (record.get("stats") or results.get("stats") or {}).items():
        if isinstance(stats, dict) and stats.get("metric"):
            data.metric[task] = stats["metric"]  # the headline metric, keyed as in the samples' `metrics`
        ci = stats.get("ci95") if isinstance(stats, dict) else None
        if ci and len(ci) == 2 and None not in ci:
            data.intervals[task] = (float(ci[0]), float(ci[1]))
    for task, score in data.scores.items():
        stderr = (results.get("tasks") or {}).get(task, {}).get(f"{data.metric.get(task, '')}_stderr")
        if task not in data.intervals and isinstance(stderr, int | float):
            low, high = score - 1.96 * stderr, score + 1.96 * stderr
            if 0.0 <= score <= 1.0:  # a proportion: its interval cannot leave [0, 1]
                low, high = max(0.0, low), min(1.0, high)
            data.intervals[task] = (low, high)
    for path in sorted((folder / SAMPLES_DIR).glob("*.jsonl")):
        data.samples[path.stem] = read_jsonl(path)
    return data


def read_exports(export_dir: Path) -> list[dict[str, Any]]:
    """Each exported format: its path and what the manifest beside it says (checks, serve command)."""
    index = read_json(export_dir / "export.json") or {}
    paths: dict[str, str] = dict(index.get("paths") or {})
    out = []
    # Where the index was written; a run directory moved since then has its exports here now.
    written_at = {str(Path(p).parent) for p in paths.values()} - {str(export_dir)}
    for fmt, path in paths.items():
        entry: dict[str, Any] = {"format": fmt, "path": _where_now(path, export_dir)}
        for key in ("serving", "serve"):  # the format's serving section and command, as its declaration wrote them
            if (index.get(key) or {}).get(fmt):
                entry[key] = index[key][fmt]
                for old in written_at:
                    entry[key] = entry[key].replace(old, str(export_dir))
        for manifest in (export_dir / fmt / "manifest.json", export_dir / f"{fmt}.json"):
            entry.update(read_json(manifest) or {})
        out.append(entry)
    for manifest in sorted(export_dir.glob("*/manifest.json")):  # formats the index does not list
        if manifest.parent.name not in paths:
            out.append({"format": manifest.parent.name, "path": str(manifest.parent), **(read_json(manifest) or {})})
    return out


def _where_now(path: str, export_dir: Path) -> str:
    """A format's folder as the index recorded it, at where the export folder is now (a moved run directory)."""
    here = export_dir / Path(path).name
    return str(here) if here.exists() else path


def read_json_or_why(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in `path`, None) or (None, why it could not be read): a report never stops at a bad file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} could not be read ({type(exc).__name__})"
    except json.JSONDecodeError as exc:  # typically a file cut short by a kill
        return None, f"{path.name} is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"{path.name} holds a {type(data).__name__}, not an object"
    return data, None


def read_scored(run: RunDir, stage: str) -> list[ScoredArtifact]:
    """Every folder under `<stage>/export/scored/`, read as far as its files allow.

    RunDir.scored_artifacts lists only folders with an artifact.json; a folder without one is a scoring
    that did not finish, which the report says rather than hides."""
    root = run.export_dir(stage) / RunDir.ARTIFACT_SCORES
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out = []
    for folder in folders:
        record, why = read_json_or_why(folder / RunDir.ARTIFACT)
        problems = [f"{why}: the scoring did not finish or the file was damaged"] if why else []
        evaluation = None
        if (folder / RunDir.EVAL).exists():
            _, eval_why = read_json_or_why(folder / RunDir.EVAL)
            if eval_why:
                problems.append(f"{eval_why}: no per-document samples from it")
            else:
                try:
                    evaluation = read_eval(folder)
                except (TypeError, ValueError, AttributeError) as exc:  # fields of an unexpected shape
                    problems.append(f"{RunDir.EVAL} could not be read ({type(exc).__name__}: {exc})")
        elif record is not None:
            problems.append(f"{RunDir.EVAL} is missing: no per-document samples from it")
        out.append(ScoredArtifact(folder.name, folder, record, evaluation, _artifact_bytes(record, run.stage_dir(stage)),
                                  problems))
    return out


def folder_bytes(folder: Path) -> int | None:
    """Total size of the files under `folder`, or None when there is no such folder."""
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _artifact_bytes(record: dict[str, Any] | None, stage_dir: Path) -> int | None:
    size = (record or {}).get("size_bytes")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return size
    file = (record or {}).get("file")
    if isinstance(file, str) and file:
        path = stage_dir / file
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return folder_bytes(path)
    return None
