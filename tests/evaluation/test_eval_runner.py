"""The in-process lm-eval runner end to end on a tiny random model (offline, seconds)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.evaluation.harness import available_tasks, evaluate_model, headline
from posttrain.evaluation.suite import resolve_tasks, task_documents

TASKS = ["pt_arith", "pt_arith_mc", "pt_ifeval"]


@pytest.fixture(scope="module")
def results(tiny_model, tiny_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    samples = tmp_path_factory.mktemp("eval") / "samples"
    out = evaluate_model(tiny_model, tiny_tokenizer, tasks=["posttrain"], limit=4, batch_size=4,
                         samples_dir=samples)
    return out, samples


def test_every_task_runs_and_scores_the_mean_over_its_documents(results: tuple[dict, Path]) -> None:
    out, samples = results
    assert list(out["tasks"]) == TASKS
    assert out["n_samples"] == dict.fromkeys(TASKS, 4)
    assert out["limit"] == 4 and out["seconds"] > 0
    assert out["lm_eval_version"] == importlib.metadata.version("lm_eval")  # the version that ran, not a pin
    assert out["primary"] == {"pt_arith": "exact_match", "pt_arith_mc": "acc", "pt_ifeval": "constraint_acc"}
    # Each headline score is its primary metric averaged over the documents in the samples log.
    rows = [json.loads(line) for t in TASKS for line in (samples / f"{t}.jsonl").read_text().splitlines()]
    scores = headline(out)
    assert set(scores) == set(TASKS)
    for task, metric in out["primary"].items():
        per_document = [r["metrics"][metric] for r in rows if r["task"] == task]
        assert len(per_document) == 4
        assert scores[task] == pytest.approx(sum(per_document) / 4) == out["tasks"][task][metric]
    json.dumps(out)  # JSON-able as promised


def test_samples_are_logged_one_file_per_task(results: tuple[dict, Path]) -> None:
    out, samples = results
    assert sorted(p.name for p in samples.iterdir()) == [f"{t}.jsonl" for t in TASKS]
    rows = {t: [json.loads(line) for line in (samples / f"{t}.jsonl").read_text().splitlines()] for t in TASKS}
    assert all(len(r) == 4 for r in rows.values())
    arith = rows["pt_arith"][0]
    assert arith["prompt"].startswith("<|im_start|>user\n")  # the chat template was applied
    assert arith["prompt"].endswith('End your reply with "Answer: <number>".<|im_end|>\n<|im_start|>assistant\n')
    assert isinstance(arith["response"], str) and arith["target"]
    assert set(arith["metrics"]) == {"exact_match", "exact_match_flex"}
    mc = rows["pt_arith_mc"][0]
    assert len(mc["choices"]) == 4 and all(c.startswith("Answer: ") for c in mc["choices"])
    assert mc["response"] in mc["choices"] and len(mc["loglikelihoods"]) == 4
    # The per-document values average to the reported score, and say what chance is.
    for task in TASKS:
        metric = out["primary"][task]
        values = [r["metrics"][metric] for r in rows[task]]
        assert sum(values) / len(values) == pytest.approx(out["tasks"][task][metric])
    assert out["stats"]["pt_arith_mc"]["chance"] == pytest.approx(0.25)
    assert out["stats"]["pt_arith"]["chance"] == 0.0


def test_peft_model_is_accepted_and_mode_restored(tiny_model, tiny_tokenizer) -> None:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    try:
        peft_model.train()
        out = evaluate_model(peft_model, tiny_tokenizer, tasks=["arith_mc"], limit=2, batch_size=2)
        assert out["n_samples"] == {"pt_arith_mc": 2}
        assert peft_model.training  # left in the mode it came in
    finally:
        peft_model.unload()


def test_unknown_task_lists_the_available_ones(tiny_model, tiny_tokenizer) -> None:
    with pytest.raises(UserError) as err:
        evaluate_model(tiny_model, tiny_tokenizer, tasks=["pt_arith", "pt_arithh"], limit=1)
    assert "pt_arithh" in str(err.value) and "pt_ifeval" in str(err.value)
    assert "did you mean 'pt_arith'" in str(err.value)
    assert available_tasks() == ["pt_arith", "pt_arith_mc", "pt_ifeval", "posttrain"]


def test_task_names_resolve() -> None:
    assert resolve_tasks(["arith", "posttrain"]) == TASKS
    with pytest.raises(UserError):
        resolve_tasks([])


def test_task_documents_cover_the_eval_prompts() -> None:
    docs = task_documents()
    assert len(docs) == 600  # 3 tasks x 200 prompts; numeric answers are left out
    assert any('End your reply with "Answer: <number>".' in d for d in docs)
    assert len(task_documents(["pt_ifeval"])) == 200


def test_plain_lm_eval_loads_the_suite_from_any_directory(tmp_path: Path) -> None:
    """What `lm_eval --include_path <repo>/eval/tasks` does, run from an unrelated CWD."""
    from posttrain.paths import eval_tasks_dir

    code = (
        "from lm_eval.tasks import TaskManager, get_task_dict\n"
        f"tm = TaskManager(include_path={str(eval_tasks_dir())!r}, include_defaults=False)\n"
        "d = get_task_dict(['posttrain'], tm)\n"
        "def leaves(x):\n"
        "    for v in x.values():\n"
        "        yield from (leaves(v) if isinstance(v, dict) else [v])\n"
        "print(sorted((t.config.task, len(t.test_docs())) for t in leaves(d)))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[('pt_arith', 200), ('pt_arith_mc', 200), ('pt_ifeval', 200)]" in proc.stdout
