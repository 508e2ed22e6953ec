"""KTO: TRL's loss on controlled log-ratios (preference, desirable/undesirable weights), bad data, a tiny run."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import KTOConfig, KTOTrainer

from posttrain.errors import RecipeError, UserError
from posttrain.recipe.loader import load_recipe
from posttrain.stages import STAGES, kto
from posttrain.stages.kto import check_both_labels, unpaired_example

BETA = 0.1
ROWS = [  # two desirable, two undesirable, in this order in the batch (KTO samples sequentially)
    {"prompt": [{"role": "user", "content": f"What is {i} + 7?"}], "completion": answer, "label": label}
    for i, (answer, label) in enumerate([("Answer: 7", True), ("no", False), ("Answer: 9", True), ("I do not know.", False)])
]


def kto_loss(model_dir: Path, tmp_path: Path, log_ratios: list[float], *, desirable: float = 1.0,
             undesirable: float = 1.0) -> float:
    """TRL's KTO loss on one batch of ROWS whose log π(y|x) − log π_ref(y|x) are `log_ratios`.

    The reference log-probabilities are precomputed by TRL from the model
    itself (every log-ratio 0, KL term 0); shifting them sets each row's
    log-ratio to the wanted value while the policy stays the real model.
    """
    config = KTOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=len(ROWS), max_length=64, beta=BETA,
        desirable_weight=desirable, undesirable_weight=undesirable, precompute_ref_log_probs=True,
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
    )
    trainer = KTOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
        train_dataset=Dataset.from_list([unpaired_example(r) for r in ROWS]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["label"].tolist() == [r["label"] for r in ROWS]
    batch["ref_logps"] = batch["ref_logps"] - torch.tensor(log_ratios)
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def expected(log_ratios: list[float], desirable: float = 1.0, undesirable: float = 1.0) -> float:
    """The KTO paper's value function with a zero KL term: 1 − σ(β·r) for desirable rows, 1 − σ(−β·r) otherwise."""
    per_row = [
        desirable * (1 - torch.sigmoid(torch.tensor(BETA * r))) if row["label"]
        else undesirable * (1 - torch.sigmoid(torch.tensor(-BETA * r)))
        for r, row in zip(log_ratios, ROWS, strict=True)
    ]
    return torch.stack(per_row).mean().item()


def test_raising_desirable_and_lowering_undesirable_answers_lowers_the_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    right = [3.0, -3.0, 3.0, -3.0]  # desirable up, undesirable down
    wrong = [-r for r in right]
    loss_right, loss_wrong = kto_loss(tiny_model_dir, tmp_path, right), kto_loss(tiny_model_dir, tmp_path, wrong)
    assert loss_right < kto_loss(tiny_model_dir, tmp_path, [0.0] * 4) < loss_wrong
    assert loss_right == pytest.approx(expected(right), abs=1e-4)


def test_desirable_and_undesirable_weights_scale_their_side_of_the_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    ratios = [1.0, 2.0, -1.0, 0.5]
    base = kto_loss(tiny_model_dir, tmp_path, ratios)
    heavy_desirable = kto_loss(tiny_model_dir, tmp_path, ratios, desirable=3.0)
    heavy_undesirable = kto_loss(tiny_model_dir, tmp_path, ratios, undesirable=3.0)
    assert heavy_desirable == pytest.approx(expected(ratios, desirable=3.0), abs=1e-4)
    assert heavy_undesirable == pytest.approx(expected(ratios, undesirable=3.0), abs=1e-4)
    # Weight w on one side adds (w − 1) × that side's share of the mean loss.
    desirable_share = expected(ratios) - expected(ratios, desirable=0.0)
    assert heavy_desirable - base == pytest.approx(2.0 * desirable_share, abs=1e-4)


def test_one_label_class_is_a_user_error_with_counts() -> None:
    with pytest.raises(UserError, match=r"'fb' has 3 desirable \(label true\) and 0 undesirable"):
        check_both_labels([{"label": True}] * 3, "fb")
    check_both_labels([{"label": True}, {"label": False}], "fb")


def test_one_label_class_stops_the_stage_before_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    from rich.console import Console

    from posttrain.pipeline.runner import run_recipe

    rows = [{"prompt": r["prompt"], "completion": r["completion"], "label": True} for r in ROWS]
    (tmp_path / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "k.yaml"
    path.write_text(
        f"name: k\nmodel: {{base: {tiny_model_dir}}}\neval: {{on_base: false}}\n"
        "datasets: {fb: {kind: unpaired, sources: [{path: good.jsonl}]}}\n"
        "stages: [{name: k, type: kto, data: fb, evaluate: false, train: {max_steps: 1, batch_size: 2}}]\n"
    )
    with pytest.raises(UserError, match=r"4 desirable .* and 0 undesirable"):
        run_recipe(load_recipe(path), runs_dir=tmp_path / "runs", console=Console(quiet=True))
    assert not (tmp_path / "runs" / "k" / "k" / "adapter").exists()


def test_a_batch_of_one_is_refused_at_validation(tmp_path: Path) -> None:
    (tmp_path / "fb.jsonl").write_text("")
    path = tmp_path / "k.yaml"
    path.write_text(
        "name: k\nmodel: {base: x}\ndatasets: {fb: {kind: unpaired, sources: [{path: fb.jsonl}]}}\n"
        "stages: [{name: k, type: kto, data: fb, train: {batch_size: 1}}]\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert len(info.value.problems) == 1
    assert "stages[0]: KTO needs train.batch_size of at least 2" in info.value.problems[0]


def test_preference_data_points_to_kind_unpaired(tmp_path: Path) -> None:
    (tmp_path / "prefs.jsonl").write_text("")
    path = tmp_path / "k.yaml"
    path.write_text(
        "name: k\nmodel: {base: x}\ndatasets: {p: {kind: preference, sources: [{path: prefs.jsonl}]}}\n"
        "stages: [{name: k, type: kto, data: p}]\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert len(info.value.problems) == 1
    assert "dataset 'p' is kind 'preference'; set `kind: unpaired` on it" in info.value.problems[0]


def test_held_out_log_ratio_gap_and_sign_accuracy_rise(measure) -> None:
    measured = measure("kto", kind="unpaired")
    before, after = measured.before, measured.after
    assert before == {"kto_logratio_gap": 0.0, "kto_sign_accuracy": 0.0}  # the input is its own reference
    assert after["kto_logratio_gap"] > 1.0
    assert after["kto_sign_accuracy"] > 0.75
    metrics = measured.report.stages[0].metrics
    assert metrics["desirable_rows"] == metrics["undesirable_rows"] > 0

    # The trained LoRA model as the stage hands it over (adapter on, reference = adapter off) measures the same.
    ctx, spec = measured.ctx, measured.spec
    as_trained = PeftModel.from_pretrained(ctx.load_input_model(), str(ctx.adapter_dir))
    objective = STAGES["kto"].held_out_objective
    assert objective(ctx, spec, as_trained).after == pytest.approx(measured.after, abs=1e-3)


def test_docstring_examples() -> None:
    result = doctest.testmod(kto)
    assert result.failed == 0 and result.attempted > 0


def test_a_full_fine_tune_trains_and_starts_a_new_lineage(measure) -> None:
    measured = measure("kto", kind="unpaired", settings="full_finetune: true,", lr=1e-3)
    assert measured.after["kto_logratio_gap"] > 1.0
    assert measured.report.stages[0].lineage.adapters == []  # a new lineage from the saved model
