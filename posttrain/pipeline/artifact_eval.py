"""Score exported artifacts inside their engines: `posttrain eval RUN[/STAGE] --artifact gguf:q4_k_m,vllm` and
`export.evaluate: true`.

Each artifact is served by its engine on 127.0.0.1 (a free port, stopped on
every way out), scored on the recipe's eval tasks through lm-eval's API model
(evaluation/engine.py), compared document by document with the stage's own
evaluation (the merged model in transformers, evaluation/verdict.py), and
checked for what goes wrong in engines (chat template, end of turn, f16
greedy tokens). Everything lands in `RunDir.artifact_score_dir(stage, name)`
(ARCHITECTURE.md, "An exported artifact scored in its engine"), cached by the
artifact file and the eval settings.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import UserError
from posttrain.evaluation.engine import ReplyLog, evaluate_served, split_tasks
from posttrain.evaluation.harness import headline
from posttrain.evaluation.record import load_evidence
from posttrain.evaluation.stats import DeltaTest
from posttrain.evaluation.verdict import compare_tasks
from posttrain.fingerprint import fingerprint
from posttrain.leaderboard.render import objectives_markdown, run_markdown
from posttrain.leaderboard.store import LEADERBOARD_DB, record
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.locking import sole_writer
from posttrain.pipeline.artifact_checks import (
    end_of_turn_parity,
    engine_speed,
    gguf_template_parity,
    greedy_parity,
    llama_cpp_probe,
    vllm_template_parity,
)
from posttrain.pipeline.evaluate import SAMPLES_DIR, eval_fingerprint
from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import read_json, utc_now, write_json
from posttrain.serving.engines import (
    NO_PENALTY_FIELDS,
    engine_env,
    engine_python,
    engine_version,
    llama_cpp_command,
    vllm_command,
)
from posttrain.serving.process import served
from posttrain.stagekit.specs import EvalSpec

ARTIFACT_EVAL_VERSION = 2
"""Bump when what an artifact evaluation measures changes, so cached ones are redone.
2: llama.cpp's requests turn its default repeat penalty off (serving/engines.NO_PENALTY_FIELDS)."""
GGUF_FOLDER, VLLM_FOLDER = "gguf", "vllm"
FILES_JSON, MANIFEST = "files.json", "manifest.json"
@dataclass(frozen=True)
class ArtifactSpec:
    """`gguf:<quant>` (a GGUF file in llama.cpp's server) or `vllm` (the exported adapter in vLLM's server)."""

    kind: str
    quant: str | None = None

    @property
    def name(self) -> str:
        """The artifact's folder and leaderboard name: the quant (`q4_k_m`) or `vllm`."""
        return self.quant or self.kind

    @property
    def engine(self) -> str:
        return "llama.cpp" if self.kind == "gguf" else "vllm"

    def __str__(self) -> str:
        return f"gguf:{self.quant}" if self.kind == "gguf" else self.kind


def parse_artifacts(text: str | Sequence[str]) -> list[ArtifactSpec]:
    """`gguf:q4_k_m,gguf:q8_0,vllm` → specs (duplicates dropped); UserError naming every bad entry."""
    raw = [text] if isinstance(text, str) else list(text)
    entries = [e.strip() for item in raw for e in item.split(",") if e.strip()]
    specs: list[ArtifactSpec] = []
    bad: list[str] = []
    for entry in entries:
        kind, _, quant = entry.lower().partition(":")
        if kind == "vllm" and not quant:
            spec = ArtifactSpec("vllm")
        elif kind == "gguf" and re.fullmatch(r"[a-z0-9_]+", quant):
            spec = ArtifactSpec("gguf", quant)
        else:
            bad.append(entry)
            continue
        if spec not in specs:
            specs.append(spec)
    if bad or not specs:
        raise UserError(f"--artifact: {', '.join(map(repr, bad)) or 'nothing given'}: an artifact is "
                        "gguf:<quant> (gguf:q4_k_m, gguf:q8_0, gguf:f16) or vllm")
    return specs


def gguf_files(gguf_dir: Path) -> dict[str, str]:
    """Quant → file name of the GGUF models exported in `gguf_dir`: files.json `models` when it lists them (the
    llama.cpp converter's export), else every `model-<quant>.gguf` there."""
    listed = (read_json(gguf_dir / FILES_JSON) or {}).get("models")
    if isinstance(listed, dict) and listed:
        return {str(q).lower(): str(f) for q, f in listed.items()}
    return {p.stem.removeprefix("model-").lower(): p.name for p in sorted(gguf_dir.glob("model-*.gguf"))}


def exported_artifacts(run: RunDir, stage: str) -> list[ArtifactSpec]:
    """The artifacts of `stage` a run scores: the GGUF quants the recipe asked for (files.json `quants`; the f16
    file every GGUF export also holds only when asked for), then vllm when exported."""
    gguf_dir = run.export_dir(stage) / GGUF_FOLDER
    files = gguf_files(gguf_dir)
    asked = (read_json(gguf_dir / FILES_JSON) or {}).get("quants")
    quants = [q for q in asked if q in files] if isinstance(asked, list) else list(files)
    out = [ArtifactSpec("gguf", q) for q in quants]
    if (run.export_dir(stage) / VLLM_FOLDER / MANIFEST).is_file():
        out.append(ArtifactSpec("vllm"))
    return out


def artifact_file(run: RunDir, stage: str, spec: ArtifactSpec) -> Path:
    """The exported file (gguf) or manifest (vllm); UserError saying how to export it when it is missing."""
    export = run.export_dir(stage)
    if spec.kind == "gguf":
        files = gguf_files(export / GGUF_FOLDER)
        path = export / GGUF_FOLDER / files.get(spec.quant or "", f"model-{spec.quant}.gguf")
        if not path.is_file():
            have = ", ".join(f"gguf:{q}" for q in files) or "none"
            raise UserError(f"stage {stage!r} has no {spec} export ({path} is missing; exported: {have}); "
                            f"run `posttrain export {run.root} --stage {stage} --format gguf` first")
        return path
    path = export / VLLM_FOLDER / MANIFEST
    if not path.is_file():
        raise UserError(f"stage {stage!r} has no vllm export ({path} is missing); "
                        f"run `posttrain export {run.root} --stage {stage} --format vllm` first")
    return path


def run_eval_spec(run: RunDir) -> tuple[EvalSpec, int]:
    """The run's eval settings and seed, as its resolved recipe recorded them."""
    raw = run.recipe()
    base_dir = Path(str(raw.get("base_dir") or run.root))
    try:
        return EvalSpec.model_validate(raw.get("eval") or {}, context={"base_dir": base_dir}), int(raw.get("seed", 42))
    except Exception as exc:
        raise UserError(f"{run.recipe_file}: its eval section does not load: {exc}") from exc


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def score_artifacts(run: RunDir, stage: str, specs: Sequence[ArtifactSpec], *, console: Console,
                    tokenizer: Any = None) -> list[dict[str, Any]]:
    """Score each artifact of `stage` (cached when unchanged); artifact.json records, in order."""
    if not run.is_completed(stage):
        raise UserError(f"stage {stage!r} of {run.root} has not completed")
    files = {spec: artifact_file(run, stage, spec) for spec in specs}  # every missing export named before any work
    for spec in specs:
        engine_python(spec.engine)
    eval_spec, seed = run_eval_spec(run)
    if tokenizer is None:
        from posttrain.models.loading import load_tokenizer

        tokenizer = load_tokenizer(run.lineage(stage).base)
    return [score_artifact(run, stage, spec, files[spec], eval_spec=eval_spec, seed=seed, tokenizer=tokenizer,
                           console=console) for spec in specs]


def score_artifact(run: RunDir, stage: str, spec: ArtifactSpec, file: Path, *, eval_spec: EvalSpec, seed: int,
                   tokenizer: Any, console: Console) -> dict[str, Any]:
    folder = run.artifact_score_dir(stage, spec.name)
    reference_record = read_json(run.eval_file(stage))
    if not reference_record or "stats" not in reference_record:
        raise UserError(f"stage {stage!r} has no evaluation with per-document results ({run.eval_file(stage)}): "
                        "the artifact is compared with it; evaluate the stage first (`posttrain run` with "
                        "evaluate: true on the stage)")
    key = fingerprint(
        "artifact-eval", ARTIFACT_EVAL_VERSION, str(spec), _file_identity(file), engine_version(spec.engine),
        eval_fingerprint(str(spec), eval_spec), seed, reference_record.get("fingerprint", ""),
    )
    cached = read_json(folder / RunDir.ARTIFACT)
    if cached and cached.get("fingerprint") == key and (folder / SAMPLES_DIR).is_dir():
        console.print(f"[green]✓[/] {stage}@{spec.name} cached")
        return cached

    output_types = (reference_record.get("results") or {}).get("output_type") or {}
    tasks, skipped = split_tasks(eval_spec, output_types)
    console.print(f"[bold]eval[/] {stage}@{spec.name} in {spec.engine}: "
                  f"{', '.join(str(getattr(t, 'task', t)) for t in tasks) or 'no generation task'} "
                  f"(limit {eval_spec.limit})")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    python = engine_python(spec.engine)
    if spec.kind == "gguf":
        command = llama_cpp_command(python, file)
        model_name = file.stem
    else:
        manifest = json.loads(file.read_text())
        command = vllm_command(python, manifest)
        model_name = manifest["request_model"]
    results: dict[str, Any] | None = None
    replies = ReplyLog()
    parity: dict[str, dict[str, Any]] = {}
    with served(command, log=folder / "server.log", env=engine_env(),
                ready_timeout=600 if spec.kind == "vllm" else 180) as server:
        if tasks:
            # The engine renders the artifact's own copy of the tokenizer's template (parity-checked below).
            results, replies = evaluate_served(server.url, model_name, eval_spec, tasks, seed=seed,
                                               samples_dir=folder / SAMPLES_DIR,
                                               chat_template=getattr(tokenizer, "chat_template", None),
                                               request_fields=NO_PENALTY_FIELDS[spec.engine])
        speed = engine_speed(server, model_name, replies)
        if spec.kind == "vllm":
            parity["chat_template"] = vllm_template_parity(server, model_name, tokenizer)
        peak = server.peak_memory_mb
        command = server.command  # as run: the port it was given
    (folder / SAMPLES_DIR).mkdir(exist_ok=True)
    if spec.kind == "gguf":
        probe = llama_cpp_probe(python, file, tokenizer, greedy=spec.quant == "f16")
        parity["chat_template"] = gguf_template_parity(probe, tokenizer)
        parity["greedy_tokens"] = (greedy_parity(run, stage, probe) if spec.quant == "f16" else
                                   {"ok": None, "detail": "compared for f16 only (a quantized model's tokens may differ)"})
    else:
        parity["greedy_tokens"] = {"ok": None, "detail": "compared for f16 GGUF only"}
    parity["end_of_turn"] = end_of_turn_parity(replies, run.stage_dir(stage) / SAMPLES_DIR, tokenizer)
    speed["peak_memory_mb"] = peak

    label = f"{stage}@{spec.name}"
    scores = headline(results) if results else {}
    eval_record = {
        "fingerprint": key, "label": label, "scores": scores, "stats": (results or {}).get("stats", {}),
        "samples": {task: f"{SAMPLES_DIR}/{task}.jsonl" for task in scores}, "results": results or {},
        "dtype": spec.quant or "float32",
    }
    write_json(folder / RunDir.EVAL, eval_record)
    evidence = load_evidence(folder)
    reference = load_evidence(run.stage_dir(stage))
    artifact = {
        "artifact": spec.name, "spec": str(spec), "stage": stage, "engine": spec.engine,
        "engine_version": engine_version(spec.engine), "file": str(file.relative_to(run.stage_dir(stage))),
        "size_bytes": _size(spec, file), "command": shlex.join(command), "reference": "merged",
        "tasks": compare_tasks(spec.name, evidence, reference) if evidence else {},
        "skipped_tasks": skipped, "speed": speed, "parity": parity,
        "protocol": {
            "limit": eval_spec.limit, "num_fewshot": eval_spec.num_fewshot, "gen_kwargs": eval_spec.gen_kwargs,
            "seed": seed, "api": "lm-eval local-chat-completions (/v1/chat/completions), temperature 0",
            "request_fields": NO_PENALTY_FIELDS[spec.engine],
            "chat_template": "applied by the engine", "host": "127.0.0.1",
            "stop_strings": "the task's first 4 (lm-eval's chat-completions model sends at most 4)",
            "eval_seconds": (results or {}).get("seconds"),
            "reference_eval": str(run.eval_file(stage).relative_to(run.stage_dir(stage))),
        },
        "fingerprint": key,
    }
    write_json(folder / RunDir.ARTIFACT, artifact)
    return artifact


def _size(spec: ArtifactSpec, file: Path) -> int:
    if spec.kind == "gguf":
        return file.stat().st_size
    adapter = json.loads(file.read_text()).get("adapter_dir")
    folder = Path(adapter) if adapter else None
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder and folder.is_dir() else 0


def artifact_rows(run: RunDir, stages: Sequence[str]) -> list[tuple[StageScores, str]]:
    """(row `<stage>@<artifact>`, its eval fingerprint) for every scored artifact of `stages`; input = the stage."""
    rows = []
    for stage in stages:
        for name in run.scored_artifacts(stage):
            folder = run.artifact_score_dir(stage, name)
            saved = read_json(folder / RunDir.EVAL) or {}
            if saved.get("scores"):
                rows.append((StageScores(f"{stage}@{name}", saved["scores"], input=stage,
                                         evidence=load_evidence(folder)), str(saved.get("fingerprint", ""))))
    return rows


def _stage_rows(run: RunDir) -> list[StageScores]:
    """The run's base and stage rows, from their eval.json files (as the runner wrote the board)."""
    from posttrain.stagekit.facts import facts_from_json
    from posttrain.stages import fact_types

    rows = []
    base = read_json(run.eval_file(BASE)) or {}
    rows.append(StageScores(BASE, base.get("scores", {}), evidence=load_evidence(run.stage_dir(BASE))))
    for stage in run.stages():
        saved = read_json(run.eval_file(stage)) or {}
        if saved.get("scores"):
            status = run.read_stage(stage) or {}
            rows.append(StageScores(stage, saved["scores"], input=status.get("input") or None,
                                    facts=facts_from_json(status.get("facts"), fact_types()),
                                    evidence=load_evidence(run.stage_dir(stage))))
    return rows


def _objectives(run: RunDir) -> list[tuple[str, Any]]:
    from posttrain.stagekit import HeldOutObjective

    out = []
    for stage in run.stages():
        saved = read_json(run.objective_file(stage)) or {}
        if saved.get("objective"):
            out.append((stage, HeldOutObjective.from_dict(saved["objective"])))
    return out


def publish_artifacts(run: RunDir, stages: Sequence[str], *, db_path: Path) -> None:
    """Rewrite the run's leaderboard.md with the artifact rows, and record those rows on the cross-run board."""
    raw = run.recipe()
    stage_rows = _stage_rows(run)
    extra = artifact_rows(run, run.stages())
    rows = stage_rows + [row for row, _ in extra]
    objectives = objectives_markdown(_objectives(run))
    run.leaderboard_file.write_text(run_markdown(str(raw.get("name", run.root.name)), rows)
                                    + (f"\n{objectives}" if objectives else ""))
    cells = compute_cells(rows)
    wanted = {f"{s}@{name}" for s in stages for name in run.scored_artifacts(s)}
    for (row, key), row_cells in zip(extra, cells[len(stage_rows):], strict=True):
        if row.label not in wanted:
            continue
        deltas: list[tuple[str, str, str, DeltaTest]] = []
        for task, cell in row_cells.items():
            if cell.test_base is not None:
                deltas.append((task, "base", BASE, cell.test_base))
            if cell.test_input is not None:
                deltas.append((task, "input", row.input or "", cell.test_input))
        record(db_path, str(raw.get("name", run.root.name)), row.label, str((raw.get("model") or {}).get("base", "")),
               row.scores, key, utc_now(), stats=row.evidence.stats if row.evidence else None, deltas=deltas)


def evaluate_artifacts(run_ref: Path, stage: str | None, artifacts: str | Sequence[str], *, runs_dir: Path,
                       console: Console) -> list[dict[str, Any]]:
    """`posttrain eval RUN[/STAGE] --artifact ...`: score, then put the rows on both leaderboards."""
    specs = parse_artifacts(artifacts)
    run, stage = _run_and_stage(run_ref, stage, runs_dir)
    # It writes into the run directory: not while `posttrain run` (or another eval) writes there.
    with sole_writer(run.lock_file, f"run directory {run.root}"):
        records = score_artifacts(run, stage, specs, console=console)
        publish_artifacts(run, [stage], db_path=runs_dir / LEADERBOARD_DB)
    return records


def _run_and_stage(ref: Path, stage: str | None, runs_dir: Path) -> tuple[RunDir, str]:
    for candidate in (ref, runs_dir / ref):
        if RunDir(candidate).is_run():
            run = RunDir(candidate)
            chosen = stage or run.last_completed_stage()
            if chosen is None:
                raise UserError(f"run {candidate} has no completed stage")
            if chosen not in run.stages():
                raise UserError(f"run {candidate} has no stage {chosen!r}; its stages are {', '.join(run.stages())}")
            return run, chosen
        if stage is None and RunDir(candidate.parent).is_run() and RunDir(candidate.parent).is_stage_dir(candidate):
            return RunDir(candidate.parent), candidate.name
    raise UserError(f"{ref}: no run directory (or RUN/STAGE) there or in {runs_dir}")


PARITY_NAMES = {"chat_template": "template", "end_of_turn": "stop", "greedy_tokens": "greedy"}


def scores_table(records: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows for the terminal: artifact, task, score, delta vs merged with its verdict, size, speed, parity."""
    rows = []
    for rec in records:
        speed, parity = rec.get("speed", {}), rec.get("parity", {})
        checks = " ".join(f"{PARITY_NAMES.get(name, name)} {'✓' if p.get('ok') else '–' if p.get('ok') is None else '✗'}"
                          for name, p in parity.items() if isinstance(p, dict))
        size = f"{rec.get('size_bytes', 0) / 2**20:.1f} MiB"
        gen = speed.get("generation_tokens_per_s")
        for task, t in (rec.get("tasks") or {"—": {}}).items():
            ci = t.get("ci95")
            score = f"{t['score']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") if "score" in t else "—"
            rows.append((f"{rec['stage']}@{rec['artifact']}", task, score, t.get("verdict", ""), size,
                         f"{gen} tok/s" if gen else "—", checks))
        for task, why in (rec.get("skipped_tasks") or {}).items():
            rows.append((f"{rec['stage']}@{rec['artifact']}", task, "skipped", why.split(":")[0], size, "", ""))
    return rows
