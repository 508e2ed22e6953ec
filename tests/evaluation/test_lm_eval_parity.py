"""posttrain's scores are exactly plain lm-eval's: same model, tasks, limit and settings.

The "plain" side is `lm_eval.simple_evaluate(model="hf", ...)` loading the saved
model folder itself. posttrain's side runs through `posttrain eval` (CLI) and
through a recipe run (the base model's evaluation). The tiny random model
writes garbage, which is the point: identical garbage, document by document,
means the same prompts, generation settings, filters and metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from posttrain.evaluation.harness import compact_metrics
from posttrain.evaluation.registry import lm_eval_tasks_dir
from posttrain.models.precision import weights_dtype
from posttrain.paths import eval_tasks_dir

DATA = Path(__file__).parent / "data"
SEED = 42

# posttrain scores in the dtype `model.dtype: auto` gives inference on this machine (bf16 where the CPU has
# bf16 units), with lm-eval's softmax in fp32; plain lm-eval is given the same settings.
EVAL_PRECISION = {"dtype": str(weights_dtype("auto", "inference")).removeprefix("torch."), "softmax_dtype": "float32"}


def _plain_lm_eval(model_dir: Path, tasks: list[str], include: Path, **settings: Any) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(
        model="hf", model_args={"pretrained": str(model_dir), **EVAL_PRECISION}, tasks=tasks,
        task_manager=TaskManager(include_path=str(include), include_defaults=False), batch_size=8, device="cpu",
        apply_chat_template=True, fewshot_as_multiturn=True, log_samples=True, random_seed=SEED,
        numpy_random_seed=SEED, torch_random_seed=SEED, fewshot_random_seed=SEED, bootstrap_iters=1000, **settings,
    )


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


def _rows(path: Path) -> dict[int, dict[str, Any]]:
    return {r["doc_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def _plain_responses(samples: list[dict[str, Any]], filter_name: str) -> dict[int, Any]:
    """Per document: the filtered answer (generation) or every choice's (log-likelihood, is_greedy)."""
    return {s["doc_id"]: s["filtered_resps"] for s in samples if s["filter"] == filter_name}


def test_shipped_suite_through_posttrain_eval_equals_plain_lm_eval(tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = _posttrain("eval", str(tiny_model_dir), "--tasks", "posttrain", "--limit", "5", "--seed", str(SEED),
                      "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "runs" / "_eval" / tiny_model_dir.name
    ours = json.loads((folder / "eval.json").read_text())

    plain = _plain_lm_eval(tiny_model_dir, ["pt_arith", "pt_arith_mc", "pt_ifeval"], eval_tasks_dir(), limit=5)
    for task in ("pt_arith", "pt_arith_mc", "pt_ifeval"):
        assert ours["results"]["tasks"][task] == compact_metrics(plain["results"][task]), task
        # Document by document: the same answers (generated text, chosen choice) and the same metric values.
        rows = _rows(folder / "samples" / f"{task}.jsonl")
        for doc_id, response in _plain_responses(plain["samples"][task], "none").items():
            if task == "pt_arith_mc":
                assert rows[doc_id]["loglikelihoods"] == [float(ll) for ll, _ in response]
            else:
                assert rows[doc_id]["response"] == response[0]
    assert "pt_arith_mc" in proc.stdout and "95% interval" in proc.stdout


def _local_gsm8k_yaml(folder: Path, name: str, files: dict[str, str]) -> Path:
    """What a user of plain lm-eval writes to run the stock gsm8k on a local copy (written by hand here,
    independently of posttrain's generated one)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"include": str(lm_eval_tasks_dir() / "gsm8k" / "gsm8k.yaml"), "task": name, "dataset_path": "json",
              "dataset_name": None, "dataset_kwargs": {"data_files": files}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return folder


RECIPE = """\
name: gsm8k-local
seed: {seed}
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
eval:
  tasks: [{{task: gsm8k, data_files: {{test: data/gsm8k_test.jsonl, train: data/gsm8k_train.jsonl}}}}]
  limit: 5
  num_fewshot: 2
  gen_kwargs: {{max_gen_toks: 16}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 2, target_modules: [q_proj]}},
     train: {{max_steps: 1, batch_size: 2, max_length: 32}}}}
export: {{formats: [peft]}}
"""


def test_stock_gsm8k_on_local_data_equals_plain_lm_eval(tiny_model_dir: Path, tmp_path: Path) -> None:
    from posttrain.pipeline.runner import run_recipe
    from posttrain.recipe.loader import load_recipe

    (tmp_path / "data").mkdir()
    for name in ("gsm8k_test.jsonl", "gsm8k_train.jsonl"):
        (tmp_path / "data" / name).write_text((DATA / name).read_text())
    chat = {"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "Answer: 4"}]}
    (tmp_path / "chat.jsonl").write_text((json.dumps(chat) + "\n") * 4)
    recipe = tmp_path / "gsm8k.yaml"
    recipe.write_text(RECIPE.format(seed=SEED, model=tiny_model_dir))

    # Through a recipe: the base model's evaluation.
    run_recipe(load_recipe(recipe), runs_dir=tmp_path / "runs", console=Console(quiet=True))
    from_run = json.loads((tmp_path / "runs" / "gsm8k-local" / "base" / "eval.json").read_text())
    # Through `posttrain eval` with the recipe's eval settings.
    proc = _posttrain("eval", str(tiny_model_dir), "--recipe", str(recipe), "--seed", str(SEED),
                      "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "runs" / "_eval" / tiny_model_dir.name
    from_cli = json.loads((folder / "eval.json").read_text())

    files = {"test": str(tmp_path / "data" / "gsm8k_test.jsonl"), "train": str(tmp_path / "data" / "gsm8k_train.jsonl")}
    plain = _plain_lm_eval(tiny_model_dir, ["gsm8k_mine"], _local_gsm8k_yaml(tmp_path / "plain", "gsm8k_mine", files),
                           limit=5, num_fewshot=2, gen_kwargs={"max_gen_toks": 16})
    expected = compact_metrics(plain["results"]["gsm8k_mine"])
    assert set(expected) >= {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert from_run["results"]["tasks"]["gsm8k@gsm8k_test"] == expected
    assert from_cli["results"]["tasks"]["gsm8k@gsm8k_test"] == expected
    assert from_run["results"]["n_samples"]["gsm8k@gsm8k_test"] == 5

    for source in (tmp_path / "runs" / "gsm8k-local" / "base", folder):
        rows = _rows(source / "samples" / "gsm8k@gsm8k_test.jsonl")
        plain_docs = {s["doc_id"]: s for s in plain["samples"]["gsm8k_mine"] if s["filter"] == "strict-match"}
        assert set(rows) == set(plain_docs) == set(range(5))
        for doc_id, sample in plain_docs.items():
            assert rows[doc_id]["prompt"] == sample["arguments"][0][0]  # 2-shot prompt from the local train split
            assert rows[doc_id]["raw_response"] == sample["resps"][0][0]
            assert rows[doc_id]["responses"]["strict-match"] == sample["filtered_resps"][0]
            assert rows[doc_id]["target"] == sample["target"]
        assert "Question: Ben has 9 marbles" in rows[0]["prompt"] or "Question: A shelf" in rows[0]["prompt"]
