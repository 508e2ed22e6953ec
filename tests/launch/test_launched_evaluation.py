"""`eval.num_processes: 2` scores exactly what one process scores: same aggregates, same per-document results.

The orchestrator hands the model to 2 gloo processes under `accelerate
launch`; each evaluates every other document and rank 0 gathers them back
in document order. The shipped suite has both kinds of task: pt_arith_mc
(multiple choice, log-likelihoods) and pt_arith (greedy generation). An odd
limit gives the ranks unequal shares. Batch size 1: with larger batches a
document's neighbours (and so its padding and matmul shapes) differ between
one process and two, and log-likelihoods then agree to about 1e-7 relative,
as they do in one process between two batch sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.errors import UserError
from posttrain.pipeline.evaluate import eval_fingerprint, evaluate_folder
from posttrain.stagekit.specs import EvalSpec
from tests.conftest import build_tiny_model, build_tiny_tokenizer

SETTINGS = {"tasks": ["pt_arith_mc", "pt_arith"], "limit": 5, "gen_kwargs": {"max_gen_toks": 8}, "batch_size": 1}


def _talkative_model(vocab_size: int):
    """The tiny model with weights large enough that its greedy replies differ from prompt to prompt.

    At the default init it answers every prompt with newlines, which pt_arith's stop sequence cuts to "".
    """
    import torch

    model = build_tiny_model(vocab_size, seed=1)
    torch.manual_seed(7)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.normal_(0.0, 0.3)
    return model


def _evaluate(folder: Path, spec: EvalSpec) -> dict[str, float]:
    tokenizer = build_tiny_tokenizer()
    model = _talkative_model(len(tokenizer))
    return evaluate_folder(
        spec, folder, "tiny", lambda: model, tokenizer=tokenizer, console=Console(quiet=True), label="tiny", seed=0
    )


def _comparable(folder: Path) -> dict:
    record = json.loads((folder / "eval.json").read_text())
    record["results"].pop("seconds")
    return record


@pytest.mark.slow
def test_two_processes_score_exactly_what_one_process_scores(tmp_path: Path) -> None:
    one = EvalSpec(**SETTINGS)
    two = EvalSpec(**SETTINGS, num_processes=2)
    assert eval_fingerprint("tiny", one) == eval_fingerprint("tiny", two)  # the same evaluation, cached once

    scores_one = _evaluate(tmp_path / "one", one)
    scores_two = _evaluate(tmp_path / "two", two)

    assert scores_two == scores_one
    assert _comparable(tmp_path / "two") == _comparable(tmp_path / "one")  # stats, stderrs, every metric
    for task in ("pt_arith_mc", "pt_arith"):
        rows_one = (tmp_path / "one" / "samples" / f"{task}.jsonl").read_text()
        rows_two = (tmp_path / "two" / "samples" / f"{task}.jsonl").read_text()
        assert rows_two == rows_one
        assert len(rows_one.splitlines()) == 5
    replies = [json.loads(r)["raw_response"] for r in (tmp_path / "two" / "samples" / "pt_arith.jsonl").open()]
    assert len(set(replies)) == 5  # real generations, one per document, each where it belongs
    assert not (tmp_path / "two" / "eval-launch").exists()  # the model written for the workers is gone


FAILING_TASK = """\
task: fails_on_rank_1
dataset_path: ""
custom_dataset: !function utils.load_docs
output_type: multiple_choice
test_split: test
doc_to_text: "{{prompt}}"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
"""
FAILING_UTILS = '''\
import os


def load_docs(**kwargs):
    if os.environ.get("RANK") == "1":
        raise UserWarning("rank 1 cannot read the documents")
    import datasets

    rows = [{"prompt": "1 + 1?", "choices": ["2", "3"], "label": 0}] * 4
    return {"test": datasets.Dataset.from_list(rows)}
'''


@pytest.mark.slow
def test_a_failing_rank_fails_the_evaluation_with_its_own_error(tmp_path: Path) -> None:
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    (tasks / "fails_on_rank_1.yaml").write_text(FAILING_TASK)
    (tasks / "utils.py").write_text(FAILING_UTILS)
    spec = EvalSpec(tasks=["fails_on_rank_1"], include=[str(tasks)], limit=4, num_processes=2)

    with pytest.raises(Exception) as caught:
        _evaluate(tmp_path / "eval", spec)
    message = str(caught.value)
    assert not isinstance(caught.value, UserError)
    assert message.startswith("evaluation of tiny, rank 1 failed: UserWarning: rank 1 cannot read the documents")
    assert not (tmp_path / "eval" / "eval-launch" / "model").exists()
    assert not (tmp_path / "eval" / "eval.json").exists()
