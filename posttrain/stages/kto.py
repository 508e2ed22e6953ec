"""KTO: learning from unpaired thumbs-up / thumbs-down answers, with TRL's KTOTrainer.

Each row is one prompt, one completion and a label (desirable or not), the
shape most product feedback has: no pairs needed. The loss (Ethayarajh et al.
2024) raises the log-ratio log π(y|x) − log π_ref(y|x) of desirable answers
above a running KL estimate and pushes undesirable ones below it, each side
weighted. The reference is the stage's input model, as for `dpo`: TRL
switches the new LoRA off to evaluate it.

Data: an `unpaired` dataset (prompt, completion, label). Preference pairs
serve too: in an `unpaired` dataset each pair becomes two rows, chosen
desirable and rejected undesirable (data_prep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from posttrain.errors import UserError
from posttrain.stagekit import HeldOutObjective, Panel, StageContext, StageResult, StageType
from posttrain.stagekit.declaration import DataNeed
from posttrain.stagekit.specs import StageCommon


class KTOStage(StageCommon):
    type: Literal["kto"]
    beta: PositiveFloat = Field(
        0.1, description="β: how far the model may move from the reference (input) model; higher stays closer."
    )
    desirable_weight: PositiveFloat = Field(
        1.0,
        description="Weight of the loss on desirable (label true) rows; raise it when they are the rarer "
        "class (the KTO paper advises weight × count of each class within a ratio of 1 to 4/3).",
    )
    undesirable_weight: PositiveFloat = Field(
        1.0, description="Weight of the loss on undesirable (label false) rows."
    )

    @model_validator(mode="after")
    def _batch_holds_a_kl_estimate(self) -> KTOStage:
        # KTO estimates its KL term from the other completions of the same batch.
        if self.train.batch_size < 2:
            raise ValueError("KTO needs train.batch_size of at least 2: its KL term pairs each prompt with "
                             "another row's completion from the same batch")
        return self


def run(ctx: StageContext, spec: KTOStage) -> StageResult:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from data_prep import read_rows
    from posttrain.training.arguments import common_arguments
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save

    rows = read_rows(ctx.dataset(spec.data).train_path)
    check_both_labels(rows, spec.data)
    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    config = KTOConfig(
        **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
        max_length=spec.train.max_length,
        beta=spec.beta,
        desirable_weight=spec.desirable_weight,
        undesirable_weight=spec.undesirable_weight,
    )
    trainer = KTOTrainer(
        model=model,
        # A full fine-tune needs its own frozen copy of the input as reference (TRL would reload the
        # base model by name, dropping the earlier stages merged into the input).
        ref_model=ctx.load_input_model() if spec.full_finetune else None,
        args=config,
        train_dataset=Dataset.from_list([unpaired_example(row) for row in rows]),
        processing_class=ctx.tokenizer,
        peft_config=None if spec.full_finetune else lora_config(spec.lora, model),
        callbacks=ctx.callbacks,
    )
    result = train_and_save(ctx, trainer, full_finetune=spec.full_finetune)
    result.metrics.update(label_counts(rows))
    return result


def label_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows are desirable and undesirable.

    >>> label_counts([{"label": True}, {"label": False}, {"label": True}])
    {'desirable_rows': 2, 'undesirable_rows': 1}
    """
    desirable = sum(bool(row["label"]) for row in rows)
    return {"desirable_rows": desirable, "undesirable_rows": len(rows) - desirable}


def check_both_labels(rows: Sequence[dict[str, Any]], data: str) -> None:
    """KTO learns from the contrast of the two labels: a dataset with only one of them is a user error."""
    counts = label_counts(rows)
    if not counts["desirable_rows"] or not counts["undesirable_rows"]:
        raise UserError(
            f"dataset {data!r} has {counts['desirable_rows']} desirable (label true) and "
            f"{counts['undesirable_rows']} undesirable (label false) rows after curation; KTO needs both. "
            "Add rows of the missing label, or give it preference pairs (each pair gives one of each)."
        )


def unpaired_example(row: dict[str, Any]) -> dict[str, Any]:
    """A TRL conversational unpaired example from a canonical unpaired row.

    >>> unpaired_example({"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4", "label": True})
    {'prompt': [{'role': 'user', 'content': '2+2?'}], 'completion': [{'role': 'assistant', 'content': '4'}], 'label': True}
    """
    return {
        "prompt": row["prompt"],
        "completion": [{"role": "assistant", "content": row["completion"]}],
        "label": bool(row["label"]),
    }


def held_out_objective(ctx: StageContext, spec: KTOStage, trained: Any) -> HeldOutObjective | None:
    """KTO's implied rewards on held-out rows: the log-ratio log π(y|x) − log π_ref(y|x) of each completion.

    `kto_logratio_gap`: mean log-ratio of desirable rows minus that of
    undesirable ones (nats; 0 for the input model, its own reference).
    `kto_sign_accuracy`: share of rows whose log-ratio has the label's sign
    (up for desirable, down for undesirable; 0 for the input model).
    None when the dataset has no held-out split or it lacks one label.
    """
    from posttrain.stagekit.objective import held_out_rows, input_model
    from posttrain.training.objectives import scored_completions

    rows = held_out_rows(ctx, spec.data)
    counts = label_counts(rows)
    if not counts["desirable_rows"] or not counts["undesirable_rows"]:
        return None
    prompts, completions = [r["prompt"] for r in rows], [r["completion"] for r in rows]

    def summed(m: Any) -> list[float]:
        return [s for s, _ in scored_completions(m, ctx.tokenizer, prompts, completions, max_length=spec.train.max_length)]

    policy = summed(trained)
    with input_model(ctx, trained) as reference:
        ratios = [p - r for p, r in zip(policy, summed(reference), strict=True)]
    labels = [bool(r["label"]) for r in rows]
    desirable = [x for x, good in zip(ratios, labels, strict=True) if good]
    undesirable = [x for x, good in zip(ratios, labels, strict=True) if not good]
    right_sign = sum((x > 0) if good else (x < 0) for x, good in zip(ratios, labels, strict=True))
    after = {
        "kto_logratio_gap": sum(desirable) / len(desirable) - sum(undesirable) / len(undesirable),
        "kto_sign_accuracy": right_sign / len(rows),
    }
    return HeldOutObjective(
        before=dict.fromkeys(after, 0.0), after=after, rows=len(rows),
        notes=["the input model is KTO's reference: its log-ratios are 0, so both metrics start at 0"],
    )


def _data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    return ("unpaired",), (
        "; set `kind: unpaired` on it to read its pairs as rows (chosen desirable, rejected undesirable)"
    )


STAGE = StageType(
    name="kto", spec=KTOStage, run=run, data_kinds=("unpaired",), data_kinds_for=_data_kinds,
    held_out_objective=held_out_objective,
    panels=(Panel("reward margin (desirable − undesirable)", ("rewards/margins",),
                  when_absent="no reward margin logged (a margin needs desirable and undesirable rows in one batch)"),
            Panel("rewards (desirable, undesirable)", ("rewards/chosen", "rewards/rejected")),
            Panel("KL estimate (policy vs reference)", ("kl",))),
)
