"""Report test helpers: a run directory written by hand, a user's workspace with tiny recipes, headless Chromium.

The hand-written run holds every file the report reads: stage.json (with the panels
its stage type declares, as the runner records them), metrics.jsonl (with each stage
type's own signals), eval.json with stats, samples/<task>.jsonl,
objective.json, export/export.json with a vLLM manifest, data/<ds>/report.json and
lengths.png. The workspace's recipes run on the tiny random model of tests/conftest.py,
hold out a quarter of each dataset (so every stage measures its held-out objective) and
evaluate on two documents; `posttrain_cli` runs posttrain as a user types it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.stages import STAGES as STAGE_TYPES

ROOT = Path(__file__).resolve().parents[2]
TASK = "pt_arith"
DOCS = 12

STAGES = [  # name, type, input, right answers out of DOCS, extra metrics logged per step
    ("sft", "sft", "base", 6, {}),
    ("distill", "distill", "sft", 7, {"kd": 0.9, "ce": 1.3}),
    ("dpo", "dpo", "distill", 8, {"rewards/margins": 0.2, "rewards/accuracies": 0.6}),
    ("grpo", "grpo", "dpo", 12, {"reward": 0.5, "rewards/exact_number/mean": 0.4,
                                 "rewards/answer_line/mean": 0.9, "kl": 0.01}),
]
BASE_RIGHT = 0
RUNS = ["2026-11-20T10:00:00.000+00:00", "2026-11-21T09:30:00.000+00:00"]
"""The run ids of the fake run's two runs (stage.json `history`)."""


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _eval(folder: Path, label: str, right: int) -> None:
    rows = [
        {"task": TASK, "doc_id": i, "prompt": f"What is {i} + 7?", "target": str(i + 7),
         "response": str(i + 7) if i < right else str(i), "metrics": {"exact_match": 1.0 if i < right else 0.0}}
        for i in range(DOCS)
    ]
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    (folder / "samples" / f"{TASK}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    score = right / DOCS
    _write(folder / "eval.json", {
        "fingerprint": "f", "label": label, "scores": {TASK: score},
        "stats": {TASK: {"metric": "exact_match", "score": score, "stderr": 0.1,
                         "ci95": [max(0.0, score - 0.2), min(1.0, score + 0.2)], "n": DOCS}},
        "results": {"primary": {TASK: "exact_match"}, "tasks": {TASK: {"exact_match": score}}},
    })


def write_fake_run(runs_dir: Path, name: str = "fake", lengths_png: Path | None = None) -> Path:
    run = runs_dir / name
    stage_list = "".join(f"  - {{name: {n}, type: {t}}}\n" for n, t, *_ in STAGES)
    run.mkdir(parents=True)
    (run / "recipe.resolved.yaml").write_text(f"name: {name}\nstages:\n{stage_list}")
    _eval(run / "base", "base", BASE_RIGHT)
    for name_, type_, input_, right, extra in STAGES:
        folder = run / name_
        spec = {"name": name_, "type": type_, **({"teacher": "sft"} if type_ == "distill" else {})}
        # Two runs: the first trained every stage, the second reused all but dpo, which it was forced to retrain.
        latest = ({"run": RUNS[1], "outcome": "trained", "planned": "forced", "seconds": 3.0} if name_ == "dpo"
                  else {"run": RUNS[1], "outcome": "cached"})
        history = [{"run": RUNS[0], "outcome": "trained", "planned": "run", "seconds": 4.0}, latest]
        _write(folder / "stage.json", {"name": name_, "type": type_, "input": input_, "status": "completed",
                                       "seconds": 3.0, "finished": 1_795_000_000.0, "data": "chat", "spec": spec,
                                       "history": history, "report": STAGE_TYPES[type_].report_record(),
                                       **({"compared_with": "sft"} if type_ == "distill" else {})})
        records = [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-3 * (5 - s), "grad_norm": 1.0 + s / 10,
                    **{k: v * s for k, v in extra.items()}} for s in range(1, 5)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        _eval(folder, name_, right)
    _write(run / "dpo" / "objective.json", {"objective": {
        "before": {"reward_margin": 0.0, "pair_accuracy": 0.5}, "after": {"reward_margin": 0.3, "pair_accuracy": 0.52},
        "rows": 40, "change_stderr": {"reward_margin": 0.05, "pair_accuracy": 0.04}, "lower_is_better": [],
        "notes": ["the reference model's margin is 0 by definition"]}})
    _write(run / "sft" / "loss_mask.json", {"dataset": "chat", "row": 1, "tokens": 14, "learned_tokens": 6,
                                            "end_of_turn": "<|im_end|>", "segments": [
        {"text": "<|im_start|>user\nIs 2 < 3?<|im_end|>\n<|im_start|>assistant\n", "learned": False, "tokens": 8},
        {"text": "Yes: 2 < 3.<|im_end|>", "learned": True, "tokens": 6}]})
    _write(run / "grpo" / "export" / "export.json", {"fingerprint": "x", "paths": {
        "merged": str(run / "grpo" / "export" / "merged"), "vllm": str(run / "grpo" / "export" / "vllm")}})
    _write(run / "grpo" / "export" / "vllm" / "manifest.json", {
        "engine": "vllm", "checked_against": "vllm 0.32", "command_line": "vllm serve /base --enable-lora"})
    data = run / "data" / "chat"
    _write(data / "report.json", {"name": "chat", "kind": "chat", "sources": [{"malformed": 2}], "steps": [
        {"step": "load", "rows_in": 30, "removed": 0, "rows_out": 30, "reasons": {}},
        {"step": "quality.default", "rows_in": 30, "removed": 5, "rows_out": 25, "reasons": {"too_short": 3, "repeats": 2}},
    ]})
    if lengths_png is not None:
        shutil.copy(lengths_png, data / "lengths.png")
    return run


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    from posttrain.report import plots

    png = tmp_path / "lengths.png"
    png.write_bytes(plots.scores_png([("x", {"t": 0.5}, {})], ["t"]) or b"")
    return write_fake_run(tmp_path / "runs", lengths_png=png)


@pytest.fixture
def make_fake_run():
    return write_fake_run


def _load_page_checks():
    """scripts/check_report_pages.py as a module: the tests check pages with the very code the script runs."""
    spec = importlib.util.spec_from_file_location("check_report_pages", ROOT / "scripts" / "check_report_pages.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


page_checks = _load_page_checks()
Browser = page_checks.Browser
CHROMIUM = page_checks.find_chromium()


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    if CHROMIUM is None:
        message = "no chromium on PATH (make install adds Debian's chromium)"
        if os.environ.get("CI") or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1":
            pytest.fail(message)  # `make test` installed it: a missing browser is a broken set-up, not a skip
        pytest.skip(message)
    return Browser(tmp_path / "chromium-profile")


# A user's workspace: data files and tiny recipes of different stage types.

_COMMON = """\
seed: 1
model: {base: {model}}
datasets:
  chat: {sources: [{path: data/chat.jsonl}], curate: [{dedup: exact}], eval_split: 0.25}
  prefs: {kind: preference, sources: [{path: data/prefs.jsonl}], eval_split: 0.25}
  prompts: {kind: prompt, sources: [{path: data/prompts.jsonl}], eval_split: 0.25}
"""
_SFT = """\
  - {name: sft, type: sft, data: chat, lora: {r: 4, target_modules: [q_proj, v_proj]},
     train: {max_steps: 3, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}
"""

PAIRS = "name: pairs\n" + _COMMON + """\
eval: {tasks: [pt_arith_mc], limit: 2, batch_size: 2}
stages:
""" + _SFT + """\
  - {name: dpo, type: dpo, data: prefs, lora: {r: 2},
     train: {max_steps: 2, batch_size: 4, lr: 1.0e-3, logging_steps: 1, max_length: 64}}
export: {formats: [peft, merged]}
"""
"""sft → dpo on offline pairs: the shape of recipes/dpo.yaml."""

RL = "name: rl\n" + _COMMON + """\
eval: {tasks: [pt_arith_mc, pt_arith], limit: 2, batch_size: 2}
stages:
""" + _SFT + """\
  - {name: grpo, type: grpo, data: prompts, rewards: [{fn: rewards.math:exact_number}, {fn: rewards.format:answer_line}],
     num_generations: 2, max_completion_length: 8, lora: {r: 4, target_modules: [q_proj, v_proj]},
     train: {max_steps: 2, batch_size: 4, lr: 5.0e-2, logging_steps: 1}}
  - {name: distill, type: distill, data: chat, teacher: grpo, student: {init: prune, keep_layers: [0]},
     train: {max_steps: 2, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}
export: {formats: [peft]}
"""
"""sft → grpo → distill (a pruned student of the GRPO model): the other stage types, a second eval task."""


def write_workspace(folder: Path, model: Path) -> dict[str, Path]:
    """Data under `folder/data` and the recipes as `folder/<name>.yaml`; returns name → recipe path."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    chat = [{"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                          {"role": "assistant", "content": f"{i} + 7 = {i + 7}.\nAnswer: {i + 7}"}]} for i in range(24)]
    prefs = [{"prompt": [{"role": "user", "content": f"What is {i} + 3?"}],
              "chosen": f"Answer: {i + 3}", "rejected": f"Answer: {i + 4}"} for i in range(16)]
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(12)]
    for name, rows in (("chat", chat), ("prefs", prefs), ("prompts", prompts)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipes = {}
    for name, text in (("pairs", PAIRS), ("rl", RL)):
        recipes[name] = folder / f"{name}.yaml"
        recipes[name].write_text(text.replace("{model}", str(model)))
    return recipes


def posttrain_cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """`posttrain ARGS...` in `cwd`, with this checkout's code, offline and on one thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "TENSORBOARD_LOGGING_DIR"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def workspace_kit():
    """What the end-to-end tests need from here: the recipes' writer, the CLI, and the page checks (the script's)."""
    return {"write": write_workspace, "cli": posttrain_cli, "pages": page_checks}
