"""Teacher→student distillation (GKD losses, depth-pruned or smaller students); the student starts a new lineage.

The teacher is the stage's input, `base`, an earlier stage or any model
reference; the student is a smaller model with the same tokenizer or a
depth-pruned copy of the teacher. Training is TRL's GKD trainer with our loss
(posttrain.distill.trainer). The run records what distillation bought: the
parameters and measured tokens/s of both models, and what the leaderboard
needs for the retention ratio (the teacher's stage, or its scores).
"""

from __future__ import annotations

import gc
import json
from typing import Any

from datasets import Dataset

from data_prep import read_rows
from posttrain.distill.benchmark import count_params, tokens_per_second
from posttrain.distill.data import prompt_of, teacher_answers, with_answer
from posttrain.distill.models import Teacher, build_student, load_teacher
from posttrain.distill.trainer import DistillTrainer, GKDConfig
from posttrain.recipe.schema import DistillStage
from posttrain.stages.context import StageContext, StageResult
from posttrain.training.arguments import common_arguments
from posttrain.training.outputs import train_and_save


def run(ctx: StageContext, spec: DistillStage) -> StageResult:
    rows = read_rows(ctx.dataset(spec.data).train_path)

    teacher = load_teacher(ctx, spec)
    metrics: dict[str, Any] = {"teacher": teacher.label, **_teacher_reference(ctx, spec, teacher)}
    student, facts = build_student(ctx, spec, teacher.model)
    metrics.update(facts)

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
        metrics.update(_compare(teacher.model, result.model, ctx.tokenizer))
    ctx.console.print(
        f"distill: teacher {metrics['teacher_params'] / 1e6:.1f}M params, {metrics['teacher_tokens_per_s']:.0f} tok/s"
        f" → student {metrics['student_params'] / 1e6:.1f}M, {metrics['student_tokens_per_s']:.0f} tok/s"
    )
    del trainer, teacher
    gc.collect()
    result.metrics.update(metrics)
    return result


def _teacher_reference(ctx: StageContext, spec: DistillStage, teacher: Teacher) -> dict[str, Any]:
    """How the leaderboard finds the teacher's scores: its stage, or scores measured here for an outside model."""
    if teacher.stage is not None:
        return {"teacher_stage": teacher.stage}
    if not spec.evaluate:
        return {}
    from posttrain.evaluation.runner import evaluate_model, headline

    eval_spec = ctx.recipe.eval
    ctx.console.print(f"[bold]eval[/] teacher {teacher.label}: {', '.join(eval_spec.tasks)} (limit {eval_spec.limit})")
    results = evaluate_model(
        teacher.model, ctx.tokenizer, tasks=eval_spec.tasks, limit=eval_spec.limit,
        batch_size=eval_spec.batch_size, seed=ctx.recipe.seed,
    )
    return {"teacher_scores": headline(results)}


def _examples(ctx: StageContext, spec: DistillStage, rows: list[dict[str, Any]], teacher: Any) -> list[dict[str, Any]]:
    """Chat rows as they are; with sequence KD, every prompt answered by the teacher (once, greedy, cached)."""
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


def _compare(teacher: Any, student: Any, tokenizer: Any) -> dict[str, Any]:
    teacher_params, student_params = count_params(teacher), count_params(student)
    speed = tokens_per_second({"teacher": teacher, "student": student}, tokenizer)
    teacher_speed, student_speed = speed["teacher"], speed["student"]
    return {
        "teacher_params": teacher_params,
        "student_params": student_params,
        "param_ratio": round(student_params / teacher_params, 4),
        "teacher_tokens_per_s": round(teacher_speed, 1),
        "student_tokens_per_s": round(student_speed, 1),
        "speedup": round(student_speed / teacher_speed, 3),
    }
