"""A run directory written by hand in the shapes posttrain's parts write, for fast report tests.

Every file the report reads is here: stage.json, metrics.jsonl (with each stage
type's own signals), eval.json with stats, samples/<task>.jsonl, objective.json,
export/export.json with a vLLM manifest, data/<ds>/report.json and lengths.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
                                       "history": history})
        records = [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-3 * (5 - s), "grad_norm": 1.0 + s / 10,
                    **{k: v * s for k, v in extra.items()}} for s in range(1, 5)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        _eval(folder, name_, right)
    _write(run / "dpo" / "objective.json", {"objective": {
        "before": {"reward_margin": 0.0, "pair_accuracy": 0.5}, "after": {"reward_margin": 0.3, "pair_accuracy": 0.52},
        "rows": 40, "change_stderr": {"reward_margin": 0.05, "pair_accuracy": 0.04}, "lower_is_better": [],
        "notes": ["the reference model's margin is 0 by definition"]}})
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


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
          "--disable-background-networking", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


class Browser:
    """Headless Chromium, offline, a fresh profile per test: the DOM after the page's scripts ran, screenshots."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={self.profile}", *args],
                              capture_output=True, text=True, timeout=120, check=True)

    def dump_dom(self, url: str) -> tuple[str, str]:
        """(DOM after load, the browser's log)."""
        done = self._run("--dump-dom", url)
        return done.stdout, done.stderr

    def screenshot(self, url: str, out: Path, size: str = "1300,2400") -> Path:
        self._run("--hide-scrollbars", f"--window-size={size}", f"--screenshot={out}", url)
        return out

    @staticmethod
    def console_errors(log: str) -> list[str]:
        """Lines where the page's JavaScript failed (uncaught errors, console.error)."""
        return [line for line in log.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    if CHROMIUM is None:
        message = "no chromium on PATH (make install adds Debian's chromium)"
        if os.environ.get("CI") or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1":
            pytest.fail(message)  # `make test` installed it: a missing browser is a broken set-up, not a skip
        pytest.skip(message)
    return Browser(tmp_path / "chromium-profile")
