"""Teacher→student distillation (GKD losses, depth- or width-pruned or smaller students); the student starts a new lineage.

The teacher is the stage's input, `base`, an earlier stage or any model
reference; the student is a smaller model with the same tokenizer or a
pruned copy of the teacher (fewer layers and/or MLP neurons). Training is TRL's GKD trainer with our loss
(posttrain.distill.trainer). The run records what distillation bought: the
parameters and measured tokens/s of both models, and what the leaderboard
needs for the retention ratio (the teacher's stage, or its scores).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from posttrain.distill.facts import DistillFacts
from posttrain.fingerprint import NEUTRAL_AT_DEFAULT
from posttrain.stagekit import HeldOutObjective, Panel, StageContext, StageResult, StageType
from posttrain.stagekit.declaration import DataNeed
from posttrain.stagekit.objective import held_out_rows
from posttrain.stagekit.specs import StageCommon, Strict


class StudentSpec(Strict):
    model: str | None = Field(
        None, description="A smaller model sharing the teacher's tokenizer (alias, hub id or path)."
    )
    init: Literal["prune"] | None = Field(
        None, description="prune: build the student from the teacher by keeping a subset of its layers "
        "(keep_layers or keep_fraction) and/or of each layer's MLP neurons (mlp_keep_fraction)."
    )
    keep_layers: list[int] | None = Field(None, description="Teacher layer indices the pruned student keeps.")
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="Or: keep this fraction of layers, chosen by `select` (first and last kept)."
    )
    mlp_keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Width pruning: keep this fraction of every kept layer's MLP neurons (rounded down to a multiple "
        "of 32, so llama.cpp can quantize the student), those with the largest "
        "mean |act(gate·x)·(up·x)| on the stage's first 32 training rows (Minitron's activation importance). "
        "Gated MLPs only (Llama, Qwen, Mistral, Gemma, OLMo, Granite). It keeps far more than depth pruning at "
        "the same size (see posttrain/distill/prune.py), but every layer still runs, so it speeds decoding less.",
    )
    mlp_refit: bool = Field(
        False, json_schema_extra=NEUTRAL_AT_DEFAULT,
        description="With mlp_keep_fraction: choose the neurons on the first 128 rows and refit each MLP's down_proj "
        "by least squares so the kept neurons reproduce what all the neurons wrote there (posttrain/distill/"
        "prune.py). The student starts far closer to the teacher (showcase: untrained 0.28 against 0.05 on 100 "
        "pt_arith documents, teacher 0.33) and wants a gentle rate (1e-5), but its q4_k_m GGUF file lost 0.10 "
        "against the student in both recipes measured, where the copied weights' lost 0.035 or gained.",
    )
    select: Literal["even", "influence"] = Field(
        "even", json_schema_extra=NEUTRAL_AT_DEFAULT,
        description="With keep_fraction: which layers stay. even: spread evenly; influence: those that change the "
        "hidden state most on the stage's first 32 training rows (1 − cosine of a layer's input and output, as in "
        "ShortGPT), so the layers that pass their input on almost unchanged are dropped.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        if (self.model is None) == (self.init is None):
            raise ValueError("give exactly one of `model` (a smaller model) or `init: prune`")
        if self.init == "prune" and self.keep_layers is not None and self.keep_fraction is not None:
            raise ValueError("`init: prune` takes one of keep_layers or keep_fraction, not both")
        if self.init == "prune" and self.keep_layers is None and self.keep_fraction is None \
                and self.mlp_keep_fraction is None:
            raise ValueError("`init: prune` needs keep_layers or keep_fraction (depth) and/or mlp_keep_fraction (width)")
        if self.init is None and self.mlp_keep_fraction is not None:
            raise ValueError("`mlp_keep_fraction` prunes the teacher: it needs `init: prune`, not `model`")
        if self.select == "influence" and self.keep_fraction is None:
            raise ValueError("`select: influence` chooses layers for keep_fraction; keep_layers lists them itself")
        return self


class DistillStage(StageCommon):
    type: Literal["distill"]
    teacher: str | None = Field(
        None, description="Teacher: a stage name, `base`, or a model reference; default this stage's input."
    )
    student: StudentSpec = Field(description="The student model, or how to make it from the teacher.")
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="Token-level divergence: forward_kl = KL(teacher‖student), reverse_kl = KL(student‖teacher), "
        "jsd = generalized JSD with `beta`.",
    )
    beta: float = Field(
        0.5, ge=0.0, le=1.0,
        description="jsd only: weight of the teacher in the mixture (0.5 symmetric; 0 means forward KL, 1 reverse KL).",
    )
    lmbda: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of batches on student-generated text (GKD).")
    temperature: PositiveFloat = Field(
        1.0, description="Softmax temperature of both distributions (and of on-policy sampling); the loss is scaled by T²."
    )
    ce_weight: float = Field(0.0, ge=0.0, description="Weight of the plain cross-entropy on the data's answers.")
    sequence_kd: bool = Field(
        False, description="Sequence-level KD: the teacher writes the answers (greedy) the student trains on."
    )
    max_new_tokens: PositiveInt = Field(96, description="Longest generation (sequence KD, on-policy batches).")
    full_finetune: bool = Field(True, description="Train all student weights (the student starts a new lineage).")

    @field_validator("full_finetune")
    @classmethod
    def _full(cls, value: bool) -> bool:
        if not value:
            raise ValueError("a distilled student trains all its weights; LoRA distillation is not supported")
        return value


def run(ctx: StageContext, spec: DistillStage) -> StageResult:
    from datasets import Dataset

    from data_prep import read_rows
    from posttrain.distill.models import build_student, load_teacher
    from posttrain.distill.trainer import DistillTrainer, GKDConfig
    from posttrain.training.arguments import common_arguments
    from posttrain.training.outputs import train_and_save

    rows = read_rows(ctx.dataset(spec.data).train_path)

    teacher = load_teacher(ctx, spec.teacher or ctx.input_name)
    teacher_scores = _outside_teacher_scores(ctx, spec, teacher)
    student, student_facts = build_student(ctx, spec.student, teacher.model, rows)
    metrics: dict[str, Any] = {"teacher": teacher.label, **student_facts}

    examples = _examples(ctx, spec, rows, teacher.model)
    config = GKDConfig(
        **common_arguments(ctx, spec.train),
        max_length=spec.train.max_length,
        temperature=spec.temperature,
        beta=spec.beta,
        lmbda=spec.lmbda,
        max_new_tokens=spec.max_new_tokens,
        seq_kd=False,  # sequence KD is done once, greedily, before training (see _examples)
    )
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher.model,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks,
        loss=spec.loss,
        ce_weight=spec.ce_weight,
    )
    result = train_and_save(ctx, trainer, full_finetune=True)

    with ctx.console.status("Measuring tokens/s of teacher and student..."):
        facts = _compare(teacher, result.model, ctx.tokenizer, teacher_scores)
    ctx.console.print(
        f"distill: teacher {facts.teacher_params / 1e6:.1f}M params, {facts.teacher_tokens_per_s:.0f} tok/s"
        f" → student {facts.student_params / 1e6:.1f}M, {facts.student_tokens_per_s:.0f} tok/s"
    )
    del trainer, teacher
    gc.collect()
    result.metrics.update(metrics)
    result.facts["distill"] = facts
    return result


def _outside_teacher_scores(ctx: StageContext, spec: DistillStage, teacher: Any) -> dict[str, float] | None:
    """A teacher that is no pipeline stage has no leaderboard row: score it here, for the retention ratio."""
    if teacher.stage is not None or not spec.evaluate:
        return None
    from posttrain.evaluation.harness import evaluate_spec, headline

    eval_spec = ctx.eval_spec
    labels = ", ".join(eval_spec.task_labels)
    ctx.console.print(f"[bold]eval[/] teacher {teacher.label}: {labels} (limit {eval_spec.limit})")
    return headline(evaluate_spec(teacher.model, ctx.tokenizer, eval_spec, seed=ctx.seed))


def _examples(ctx: StageContext, spec: DistillStage, rows: list[dict[str, Any]], teacher: Any) -> list[dict[str, Any]]:
    """Chat rows as they are; with sequence KD, every prompt answered by the teacher (once, greedy, cached)."""
    from posttrain.distill.data import prompt_of, teacher_answers, with_answer

    if not spec.sequence_kd:
        # Prompt rows only reach here with lmbda = 1 (the recipe check sees to it): every batch is the
        # student's own sample, the empty answer is never trained on.
        return [row if "messages" in row else with_answer(prompt_of(row), "") for row in rows]

    cache = ctx.stage_dir / "teacher_answers.jsonl"
    prompts = [prompt_of(row) for row in rows]
    if ctx.resume_from and cache.exists():  # a resumed run must train on the very same answers
        return [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    with ctx.console.status(f"Teacher answering {len(prompts)} prompts (sequence-level KD)..."):
        answers = teacher_answers(
            teacher, ctx.tokenizer, prompts, max_new_tokens=spec.max_new_tokens, batch_size=spec.train.batch_size
        )
    examples = [with_answer(p, a) for p, a in zip(prompts, answers, strict=True)]
    cache.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    return examples


def _compare(teacher: Any, student: Any, tokenizer: Any, teacher_scores: dict[str, float] | None) -> DistillFacts:
    from posttrain.distill.benchmark import count_params, tokens_per_second

    speed = tokens_per_second({"teacher": teacher.model, "student": student}, tokenizer)
    return DistillFacts(
        teacher=teacher.label,
        teacher_params=count_params(teacher.model),
        student_params=count_params(student),
        teacher_tokens_per_s=round(speed["teacher"], 1),
        student_tokens_per_s=round(speed["student"], 1),
        teacher_stage=teacher.stage,
        teacher_scores=teacher_scores,
    )


def held_out_objective(ctx: StageContext, spec: DistillStage, trained: Any) -> HeldOutObjective | None:
    """The stage's divergence from the teacher on held-out answers, for the student before and after training.

    "Before" is the student as distillation started (student_init/ for a
    pruned student, the named model otherwise). Also reported: each model's
    loss on the held-out answers (`loss`; the teacher's own as `teacher_loss`),
    so what the student keeps of the teacher is visible without a benchmark.
    Prompt rows are answered by the teacher (greedy), as sequence KD does.
    """
    from posttrain.distill.data import prompt_of
    from posttrain.distill.models import load_teacher
    from posttrain.training.objectives import encode_completion, greedy_replies, objective_of

    rows = held_out_rows(ctx, spec.data)
    if not rows:
        return None
    teacher = load_teacher(ctx, spec.teacher or ctx.input_name).model
    teacher.eval()
    prompts = [prompt_of(row) for row in rows]
    if all("messages" in row for row in rows):
        answers = [row["messages"][-1]["content"] for row in rows]
    else:
        answers = greedy_replies(teacher, ctx.tokenizer, prompts, max_new_tokens=spec.max_new_tokens)
    length = spec.train.max_length
    items = [encode_completion(ctx.tokenizer, p, a, max_length=length) for p, a in zip(prompts, answers, strict=True)]
    students = {"before": _student_before_training(ctx, spec), "after": trained}
    measured = _against_teacher(spec, students, teacher, items, ctx.tokenizer.pad_token_id)
    del teacher, students
    gc.collect()
    return objective_of(
        measured["before"], measured["after"], rows=len(rows), before_is="student before training",
        lower_is_better=(spec.loss, "loss", "teacher_loss"),
    )


def _student_before_training(ctx: StageContext, spec: DistillStage) -> Any:
    from posttrain.models.loading import load_model
    from posttrain.models.resolve import resolve_model

    init_dir = ctx.stage_dir / "student_init"
    path = init_dir if spec.student.init == "prune" else resolve_model(spec.student.model, base_dir=ctx.base_dir).path
    model = load_model(path, dtype=ctx.model_spec.dtype, trust_remote_code=ctx.model_spec.trust_remote_code)
    model.eval()
    return model


def _against_teacher(
    spec: DistillStage, students: dict[str, Any], teacher: Any, items: list[Any], pad_id: int
) -> dict[str, dict[str, Any]]:
    """Per student: its divergence from the teacher and its loss, and the teacher's loss, per answer token.

    Each row keeps its token sums (training.objectives.PerRow), so changes get a paired error;
    the teacher runs once per batch for all students.
    """
    import torch

    from posttrain.distill.losses import IGNORE_INDEX, divergence
    from posttrain.training.objectives import PerRow, batches, row_nll, shifted_logits

    sums: dict[str, dict[str, list[float]]] = {name: {spec.loss: [], "loss": []} for name in students}
    teacher_loss: list[float] = []
    tokens: list[float] = []
    with torch.inference_mode():
        for batch in batches(items, 4, pad_id):
            t_logits, labels = shifted_logits(teacher, batch)
            mask = labels != IGNORE_INDEX
            tokens += mask.sum(-1).tolist()
            teacher_loss += row_nll(t_logits, labels)
            for name, student in students.items():
                s_logits, _ = shifted_logits(student, batch)
                shared = min(s_logits.size(-1), t_logits.size(-1))
                s_part, t_part = s_logits[..., :shared].float(), t_logits[..., :shared].float()
                div = divergence(spec.loss, s_part, t_part, beta=spec.beta, temperature=spec.temperature)
                sums[name][spec.loss] += (div * mask).sum(-1).tolist()
                sums[name]["loss"] += row_nll(s_part, labels)
    weights = tuple(float(n) for n in tokens)
    return {
        name: {
            **{metric: PerRow(tuple(values), weights) for metric, values in per_metric.items()},
            "teacher_loss": PerRow(tuple(teacher_loss), weights),
        }
        for name, per_metric in sums.items()
    }


def _data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    if raw.get("sequence_kd") or raw.get("lmbda", 0) == 1:
        return ("chat", "prompt"), ""
    # Prompts alone have no answers: the teacher or the student must write them.
    return ("chat",), " (for prompts, set `sequence_kd: true` or `lmbda: 1`)"


STAGE = StageType(
    name="distill", spec=DistillStage, run=run, data_kinds=("chat", "prompt"), data_kinds_for=_data_kinds,
    model_inputs=("teacher",), held_out_objective=held_out_objective,
    panels=(Panel("loss parts (kd: divergence to teacher, ce: next token)", ("kd", "ce")),),
    facts=(DistillFacts,),
)
