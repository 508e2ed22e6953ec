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
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import UserError
from posttrain.evaluation.engine import ReplyLog, evaluate_served, split_tasks
from posttrain.evaluation.harness import headline
from posttrain.evaluation.record import load_evidence
from posttrain.evaluation.samples import read_rows
from posttrain.evaluation.stats import DeltaTest
from posttrain.evaluation.verdict import compare_tasks
from posttrain.fingerprint import fingerprint
from posttrain.leaderboard.render import objectives_markdown, run_markdown
from posttrain.leaderboard.store import LEADERBOARD_DB, record
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.locking import sole_writer
from posttrain.pipeline.evaluate import SAMPLES_DIR, eval_fingerprint
from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import read_json, utc_now, write_json
from posttrain.serving.engines import (
    engine_env,
    engine_python,
    engine_version,
    llama_cpp_command,
    vllm_command,
)
from posttrain.serving.process import Server, served
from posttrain.stagekit.specs import EvalSpec

ARTIFACT_EVAL_VERSION = 1
"""Bump when what an artifact evaluation measures changes, so cached ones are redone."""
GGUF_FOLDER, VLLM_FOLDER = "gguf", "vllm"
FILES_JSON, MANIFEST = "files.json", "manifest.json"
PARITY_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is 17 + 25?"}],
    [{"role": "system", "content": "You answer with a number only."}, {"role": "user", "content": "9 * 8 = ?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "Name a prime number."}],
]
"""The conversations the parity checks render and decode: plain, with a system turn, and multi-turn."""
GREEDY_TOKENS = 16
SPEED_REQUESTS = 3


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
                                               chat_template=getattr(tokenizer, "chat_template", None))
        speed = _speed(server, model_name, replies)
        if spec.kind == "vllm":
            parity["chat_template"] = _vllm_template_parity(server, model_name, tokenizer)
        peak = server.peak_memory_mb
        command = server.command  # as run: the port it was given
    (folder / SAMPLES_DIR).mkdir(exist_ok=True)
    if spec.kind == "gguf":
        probe = _llama_cpp_probe(python, file, tokenizer, greedy=spec.quant == "f16")
        parity["chat_template"] = _gguf_template_parity(probe, tokenizer)
        parity["greedy_tokens"] = (_greedy_parity(run, stage, probe) if spec.quant == "f16" else
                                   {"ok": None, "detail": "compared for f16 only (a quantized model's tokens may differ)"})
    else:
        parity["greedy_tokens"] = {"ok": None, "detail": "compared for f16 GGUF only"}
    parity["end_of_turn"] = _end_of_turn(replies, run.stage_dir(stage) / SAMPLES_DIR, tokenizer)
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


def _chat(server: Server, model: str, messages: list[dict[str, str]], max_tokens: int) -> tuple[dict, float]:
    start = time.perf_counter()
    reply = server.post_json("/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": max_tokens,
                                                      "temperature": 0, "seed": 0})
    return reply, time.perf_counter() - start


def _speed(server: Server, model: str, replies: ReplyLog) -> dict[str, Any]:
    """Prompt tokens/s from timed one-token replies to distinct long prompts; generation tokens/s from the eval's
    replies, each one's time less its prompt's share."""
    prompt_tokens, prompt_seconds = 0, 0.0
    for i in range(SPEED_REQUESTS):
        text = f"Request {i}. " + " ".join(f"{i * 97 + j} plus {j} is {i * 97 + 2 * j}." for j in range(40))
        reply, seconds = _chat(server, model, [{"role": "user", "content": text}], 1)
        prompt_tokens += int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        prompt_seconds += seconds
    prompt_tps = prompt_tokens / prompt_seconds if prompt_seconds > 0 else None
    gen_tokens, gen_seconds = 0, 0.0
    for p, c, s in zip(replies.prompt_tokens, replies.completion_tokens, replies.seconds, strict=False):
        gen_tokens += c
        gen_seconds += max(s - (p / prompt_tps if prompt_tps else 0.0), 1e-6)
    if not gen_tokens:  # no generation task was scored: time one reply of its own
        reply, seconds = _chat(server, model, PARITY_CONVERSATIONS[0], 32)
        gen_tokens = int((reply.get("usage") or {}).get("completion_tokens") or 0)
        gen_seconds = seconds
    docs = len(replies.seconds)
    return {
        "prompt_tokens_per_s": round(prompt_tps, 1) if prompt_tps else None,
        "generation_tokens_per_s": round(gen_tokens / gen_seconds, 1) if gen_seconds > 0 and gen_tokens else None,
        "seconds_per_100_docs": round(100 * sum(replies.seconds) / docs, 1) if docs else None,
    }


def _end_of_turn(replies: ReplyLog, reference_samples: Path, tokenizer: Any) -> dict[str, Any]:
    """How many replies stopped (finish_reason `stop`) and how many ran to the token limit (`length`), next to how
    many of the merged model's replies in transformers reached that many tokens on the same documents: a model
    that rambles in transformers too is no engine run-on. ok: none ran on, or at most max(2, 10% of the documents)
    more than in transformers."""
    n = len(replies.finish_reasons)
    if not n:
        return {"ok": None, "detail": "no generation task was scored"}
    stopped, cut = replies.count("stop"), replies.count("length")
    detail = (f"{stopped} of {n} replies stopped (end-of-turn token or a task stop string), {cut} ran to the "
              "token limit")
    limits = [c for c, r in zip(replies.completion_tokens, replies.finish_reasons, strict=False) if r == "length"]
    reference_cut = None
    if limits and reference_samples.is_dir():
        limit = min(limits)
        texts = [row.get("raw_response") or "" for file in sorted(reference_samples.glob("*.jsonl"))
                 for row in read_rows(file) if row.get("raw_response") is not None]
        reference_cut = sum(1 for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= limit)
        detail += f"; the merged model in transformers reached {limit} tokens in {reference_cut} of {len(texts)}"
    # An engine that misses the end-of-turn token runs on in nearly every reply; a few more replies at the limit
    # than transformers (greedy ties broken differently by a quantized model) are no such sign.
    ok = cut == 0 or (reference_cut is not None and cut - reference_cut <= max(2, round(0.1 * n)))
    return {"ok": ok, "detail": detail, "stop": stopped, "length": cut, "n": n, "reference_length": reference_cut}


def _template_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def _llama_cpp_probe(python: Path, file: Path, tokenizer: Any, *, greedy: bool) -> dict[str, Any]:
    """What llama-cpp-python renders for the parity conversations and, for f16, its greedy tokens."""
    request = {"model": str(file), "conversations": PARITY_CONVERSATIONS, "max_tokens": GREEDY_TOKENS,
               "greedy": [_template_ids(tokenizer, c) for c in PARITY_CONVERSATIONS] if greedy else []}
    script = Path(__file__).resolve().parents[1] / "serving" / "llama_cpp_probe.py"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        done = subprocess.run([str(python), str(script), str(path)], capture_output=True, text=True,
                              env=engine_env(), timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"llama-cpp-python could not load {file}:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    answer["greedy_prompts"] = request["greedy"]
    return answer


def _gguf_template_parity(probe: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    mismatches = []
    for i, messages in enumerate(PARITY_CONVERSATIONS):
        want, got = _template_text(tokenizer, messages), probe["prompts"][i]
        if want != got:
            mismatches.append(f"conversation {i + 1}: the engine renders {got!r}, the tokenizer {want!r}")
    tokens_equal = all(_template_ids(tokenizer, m) == probe["prompt_tokens"][i]
                       for i, m in enumerate(PARITY_CONVERSATIONS))
    detail = (f"llama-cpp-python's {probe['chat_format']} formatter (the GGUF's own template) renders "
              f"{len(PARITY_CONVERSATIONS) - len(mismatches)} of {len(PARITY_CONVERSATIONS)} conversations as "
              f"tokenizer.apply_chat_template does; prompt token ids {'equal' if tokens_equal else 'differ'}")
    return {"ok": not mismatches, "detail": detail + ("; " + "; ".join(mismatches) if mismatches else ""),
            "chat_format": probe["chat_format"], "tokens_equal": tokens_equal}


def _vllm_template_parity(server: Server, model: str, tokenizer: Any) -> dict[str, Any]:
    equal = 0
    problems = []
    for i, messages in enumerate(PARITY_CONVERSATIONS):
        got = server.post_json("/tokenize", {"model": model, "messages": messages, "add_generation_prompt": True})
        want = _template_ids(tokenizer, messages)
        if [int(t) for t in got.get("tokens", [])] == want:
            equal += 1
        else:
            problems.append(f"conversation {i + 1}: vLLM {got.get('tokens')}, tokenizer {want}")
    detail = (f"vLLM's /tokenize renders {equal} of {len(PARITY_CONVERSATIONS)} conversations to the token ids of "
              "tokenizer.apply_chat_template")
    return {"ok": not problems, "detail": detail + ("; " + "; ".join(problems) if problems else "")}


def _greedy_parity(run: RunDir, stage: str, probe: dict[str, Any]) -> dict[str, Any]:
    """f16 greedy tokens of llama.cpp against transformers' greedy on the merged lineage (fp32)."""
    import torch

    from posttrain.models.lineage import materialize

    model = materialize(run.lineage(stage), dtype="float32", purpose="inference")
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    same = 0
    problems = []
    for i, prompt in enumerate(probe["greedy_prompts"]):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 max_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=next(iter(eos_ids), 0))
        want = _until_eos(out[0, len(prompt):].tolist(), eos_ids)
        got = _until_eos(probe["greedy"][i], eos_ids | {probe.get("eos", -1)})
        if want == got:
            same += 1
        else:
            problems.append(f"prompt {i + 1}: llama.cpp {got}, transformers {want}")
    del model
    detail = f"{same} of {len(probe['greedy_prompts'])} prompts: the same {GREEDY_TOKENS} greedy token ids"
    return {"ok": not problems, "detail": detail + ("; " + "; ".join(problems) if problems else "")}


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[: i + 1]
    return tokens


# -- the leaderboard ---------------------------------------------------------------------------------------------


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
