"""Naming eval tasks: the shipped suite, your own task folders, lm-eval's registry, stock tasks on local data.

Problems surface at validate time with their YAML line: unknown names with
did-you-mean, registry tasks whose hub data is not at hand offline, few-shot
prompts without a split to draw from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.errors import RecipeError, UserError
from posttrain.evaluation import registry
from posttrain.evaluation.harness import evaluate_model
from posttrain.evaluation.tasks import plan_tasks
from posttrain.recipe.loader import load_recipe
from posttrain.stagekit.specs import EvalTask

DATA = Path(__file__).parent / "data"


@pytest.fixture
def no_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: no hub dataset is available."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return tmp_path / "hf"


def _recipe(tmp_path: Path, eval_section: str, model: str = "some/model") -> Path:
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    path = tmp_path / "r.yaml"
    path.write_text(
        f"name: r\nmodel: {{base: {model}}}\n"
        "datasets: {chat: {sources: [{path: chat.jsonl}]}}\n"
        f"eval:\n{eval_section}"
        "stages: [{name: sft, type: sft, data: chat}]\n"
    )
    return path


def test_unknown_task_fails_validation_with_did_you_mean_and_line(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "  tasks: [pt_arith, gsm8kk]\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = err.value.render()
    assert "r.yaml:5:" in text and "unknown eval task 'gsm8kk'" in text and "did you mean 'gsm8k'" in text


def test_registry_task_without_its_data_offline_names_task_and_dataset(tmp_path: Path, no_hf_cache: Path) -> None:
    path = _recipe(tmp_path, "  tasks: [gsm8k]\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = err.value.render()
    assert "eval task 'gsm8k'" in text and "openai/gsm8k" in text and "data_files" in text
    # The same task with its dataset in the local cache validates.
    (no_hf_cache / "datasets" / "openai___gsm8k").mkdir(parents=True)
    assert load_recipe(path).recipe.eval.tasks == ["gsm8k"]


def test_stock_task_on_local_data_validates_and_generates_an_including_yaml(tmp_path: Path, no_hf_cache: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text((DATA / "gsm8k_test.jsonl").read_text())
    path = _recipe(tmp_path, "  tasks: [{task: gsm8k, data_files: data/test.jsonl}]\n  num_fewshot: 0\n")
    spec = load_recipe(path).recipe.eval
    entry = spec.tasks[0]
    assert isinstance(entry, EvalTask) and entry.label == "gsm8k@test"
    assert entry.data_files == str((tmp_path / "data" / "test.jsonl").resolve())  # recipe-relative, made absolute
    plan = plan_tasks(spec.tasks, spec.include, num_fewshot=spec.num_fewshot)
    (task,) = plan.tasks
    assert (task.column, task.source) == ("gsm8k@test", "local")
    generated = yaml.safe_load((plan.include_paths[0] / "gsm8k@test.yaml").read_text())
    assert generated["include"].endswith("lm_eval/tasks/gsm8k/gsm8k.yaml")
    assert generated["dataset_path"] == "json" and generated["dataset_name"] is None
    assert generated["dataset_kwargs"] == {"data_files": {"test": entry.data_files}}
    assert generated["training_split"] is None and generated["fewshot_split"] is None  # the copy has no train split


def test_few_shot_without_a_split_to_draw_from_is_a_validation_problem(tmp_path: Path) -> None:
    path = _recipe(tmp_path, f"  tasks: [{{task: gsm8k, data_files: {DATA / 'gsm8k_test.jsonl'}}}]\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)  # gsm8k is 5-shot by default; its examples come from the 'train' split
    assert "5-shot prompts draws examples from its 'train' split" in err.value.render()
    missing = _recipe(tmp_path, "  tasks: [{task: gsm8k, data_files: nope.jsonl}]\n  num_fewshot: 0\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(missing)
    assert "data file not found" in err.value.render() and "nope.jsonl" in err.value.render()


def test_registry_task_is_found_without_indexing_all_of_lm_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               no_hf_cache: Path) -> None:
    (no_hf_cache / "datasets" / "allenai___ai2_arc").mkdir(parents=True)
    monkeypatch.setattr(registry, "registry_index", lambda: pytest.fail("the full index was built"))
    plan = plan_tasks(["arc_easy"])
    assert [(t.column, t.source) for t in plan.tasks] == [("arc_easy", "registry")]
    assert plan.include_paths == [registry.lm_eval_tasks_dir() / "arc"]  # lm-eval indexes one folder, not 14k YAMLs


def test_shipped_only_recipes_never_import_lm_eval(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "  tasks: [posttrain, arith]\n")
    code = (
        "import sys\nfrom posttrain.recipe.loader import load_recipe\n"
        "from posttrain.evaluation.tasks import plan_tasks\n"
        f"spec = load_recipe({str(path)!r}).recipe.eval\nplan_tasks(spec.tasks)\n"
        "print('lm_eval' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_own_task_folder_runs(tmp_path: Path, tiny_model, tiny_tokenizer) -> None:
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    docs = [{"q": f"Is {i} even?", "choices": ["yes", "no"], "label": i % 2} for i in range(6)]
    (folder / "parity.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "parity.yaml").write_text(yaml.safe_dump({
        "task": "my_parity", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "parity.jsonl")}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "choices",
        "doc_to_target": "label", "metric_list": [{"metric": "acc"}],
    }))
    path = _recipe(tmp_path, "  tasks: [my_parity, pt_arith_mc]\n  include: [my_tasks]\n")
    spec = load_recipe(path).recipe.eval
    out = evaluate_model(tiny_model, tiny_tokenizer, tasks=spec.tasks, include=spec.include, limit=4, batch_size=4,
                         samples_dir=tmp_path / "samples")
    assert list(out["tasks"]) == ["my_parity", "pt_arith_mc"] and out["n_samples"]["my_parity"] == 4
    assert out["stats"]["my_parity"]["chance"] == pytest.approx(0.5)  # two choices
    assert len((tmp_path / "samples" / "my_parity.jsonl").read_text().splitlines()) == 4


def test_duplicate_columns_and_unknown_metric_are_user_errors(tiny_model, tiny_tokenizer) -> None:
    assert [t.column for t in plan_tasks(["posttrain", "arith"]).tasks] == ["pt_arith", "pt_arith_mc", "pt_ifeval"]
    local = EvalTask(task="gsm8k", data_files=str(DATA / "gsm8k_test.jsonl"), num_fewshot=0)
    other = EvalTask(task="gsm8k", data_files=str(DATA / "gsm8k_train.jsonl"), num_fewshot=0, name="gsm8k@gsm8k_test")
    with pytest.raises(UserError, match="listed twice"):
        plan_tasks([local, other])
    with pytest.raises(UserError, match="metric 'bleu' is not reported"):
        evaluate_model(tiny_model, tiny_tokenizer, tasks=[EvalTask(task="pt_arith_mc", metric="bleu")], limit=1)
