"""A tiny recipe with `tracking:` run through the CLI: TensorBoard and MLflow hold the same loss series as
metrics.jsonl, the console stays quiet (library output in log.txt), and the run writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """\
name: tracked
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: prefs.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 4, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 2}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-3, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft]}}
tracking: {{tensorboard: true, mlflow: true}}
"""


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    work = tmp_path_factory.mktemp("tracked")
    with (work / "chat.jsonl").open("w") as f:
        for i in range(16):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                                             {"role": "assistant", "content": f"Answer: {i + 7}"}]}) + "\n")
    with (work / "prefs.jsonl").open("w") as f:
        for i in range(8):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} + 3?"}],
                                "chosen": f"Answer: {i + 3}", "rejected": f"Answer: {i + 4}"}) + "\n")
    (work / "tracked.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "TENSORBOARD_LOGGING_DIR"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", "tracked.yaml", "--runs-dir", "runs"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"run_dir": work / "runs" / "tracked", "runs": work / "runs", "stdout": done.stdout, "stderr": done.stderr}


def _losses(stage_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def test_tensorboard_events_hold_the_loss_series_and_scores(tracked_run: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tracked_run["run_dir"]
    for stage in ("sft", "dpo"):
        events = EventAccumulator(str(run_dir / "tensorboard" / stage))
        events.Reload()
        logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
        expected = _losses(run_dir / stage)
        assert len(expected) == {"sft": 4, "dpo": 2}[stage]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # stored as float32
        score = json.loads((run_dir / stage / "eval.json").read_text())["scores"]["pt_arith_mc"]
        assert events.Scalars("eval/pt_arith_mc")[0].value == pytest.approx(score)


def test_mlflow_has_a_run_per_stage_nested_under_the_recipe_run(tracked_run: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tracked_run['runs'].resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"tracked", "sft", "dpo"}
    parent = runs["tracked"]
    assert parent.info.status == "FINISHED"
    for stage in ("sft", "dpo"):
        child = runs[stage]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        history = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, "loss"))
        expected = _losses(tracked_run["run_dir"] / stage)
        assert [s for s, _ in history] == [s for s, _ in expected]
        assert [v for _, v in history] == pytest.approx([v for _, v in expected])
        score = json.loads((tracked_run["run_dir"] / stage / "eval.json").read_text())["scores"]["pt_arith_mc"]
        assert child.data.metrics["eval/pt_arith_mc"] == pytest.approx(score)
        assert parent.data.metrics[f"eval/{stage}/pt_arith_mc"] == pytest.approx(score)
    assert "eval/base/pt_arith_mc" in parent.data.metrics


def test_console_is_quiet_and_library_output_lands_in_log_txt(tracked_run: dict) -> None:
    out, err = tracked_run["stdout"], tracked_run["stderr"]
    assert err.strip() == ""
    for noise in ("Warning", "warn(", "it/s]", "Loading weights", "Running loglikelihood", "INFO"):
        assert noise not in out, noise
    lines = out.splitlines()
    assert len(lines) < 90, out  # about two screens for two stages, data tables and the leaderboard
    for line in ("✓ stage sft trained", "✓ stage dpo trained", "eval sft: pt_arith_mc", "run directory:"):
        assert line in out
    assert any(line.startswith("sft ") and "4/4" in line and "loss " in line for line in lines), out
    log = (tracked_run["run_dir"] / "log.txt").read_text()
    assert "Running loglikelihood requests" in log  # lm-eval's per-request bar, off the console


def test_the_run_writes_its_report(tracked_run: dict, browser) -> None:
    page = tracked_run["run_dir"] / "report.html"
    md = (tracked_run["run_dir"] / "report.md").read_text()
    assert "base → sft → dpo" in md
    dom, log = browser.dump_dom(page.as_uri())
    assert '<div id="js-errors"></div>' in dom and browser.console_errors(log) == []
    shown = [s for s in dom.split('data-shown="')[1:]]
    assert len(shown) == 2 + 2 + 1 and not any(s.startswith("broken") for s in shown)  # lengths ×2, curves ×2, scores
    eval_table = dom.split('<section id="eval">')[1].split("</table>")[0]
    assert all(f"<td>{label}</td>" in eval_table for label in ("base", "sft", "dpo"))
    answers = dom.split('<section id="answers">')[1].split("</section>")[0]
    assert answers.count('<div class="doc">') == 2  # eval limit 2: both documents, each with three answers
    assert answers.count('<tr class="answer">') == 2 * 3
