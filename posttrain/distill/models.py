"""Load the teacher and build the student a distill stage names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.distill.prune import layers_to_keep, prune_layers
from posttrain.distill.student import model_vocab_size, shared_vocab_size, truncate_vocab
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.models.resolve import resolve_model
from posttrain.stagekit import StageContext


@dataclass
class Teacher:
    model: Any
    label: str
    """The stage name (`base` included) or the model reference the recipe gave."""
    stage: str | None
    """The pipeline stage it is, when it is one (its scores are on the leaderboard already)."""


def load_teacher(ctx: StageContext, name: str) -> Teacher:
    """`base` or an earlier stage (the stage's input included) → its model; else a model reference."""
    model_spec = ctx.model_spec
    lineage = ctx.lineage_of(name)
    if lineage is not None:
        return Teacher(ctx.load(lineage), name, name)
    resolved = resolve_model(name, base_dir=ctx.base_dir)
    model = load_model(resolved.path, dtype=model_spec.dtype, trust_remote_code=model_spec.trust_remote_code)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code=model_spec.trust_remote_code)
    # The data is tokenized with the pipeline's tokenizer: the teacher must read the same ids.
    shared_vocab_size(
        ctx.tokenizer, tokenizer, teacher_vocab=len(ctx.tokenizer), student_vocab=model_vocab_size(model),
        names=("base model", "teacher"),
    )
    return Teacher(model, name, None)


def build_student(ctx: StageContext, student_spec: Any, teacher: Any) -> tuple[Any, dict[str, Any]]:
    """The student, with both models cut to their shared vocabulary; and facts about it for the metrics.

    A pruned student is saved to `student_init/` before training, so what
    distillation started from can be inspected and evaluated on its own.
    `student_spec` is the stage's `student:` block (posttrain.stages.distill.StudentSpec).
    """
    if student_spec.init == "prune":
        keep = layers_to_keep(
            teacher.config.num_hidden_layers,
            keep_layers=student_spec.keep_layers,
            keep_fraction=student_spec.keep_fraction,
        )
        # requires_grad_: a teacher rebuilt from a LoRA lineage comes out of PEFT's merge with frozen weights.
        student = prune_layers(teacher, keep).requires_grad_(True)
        init_dir = ctx.stage_dir / "student_init"
        student.save_pretrained(init_dir, safe_serialization=True)
        ctx.tokenizer.save_pretrained(init_dir)
        return student, {"student": "pruned teacher", "kept_layers": keep, "student_init": str(init_dir)}

    assert student_spec.model is not None
    model_spec = ctx.model_spec
    resolved = resolve_model(student_spec.model, base_dir=ctx.base_dir)
    student = load_model(resolved.path, dtype=model_spec.dtype, trust_remote_code=model_spec.trust_remote_code)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code=model_spec.trust_remote_code)
    shared = shared_vocab_size(
        ctx.tokenizer, tokenizer, teacher_vocab=model_vocab_size(teacher), student_vocab=model_vocab_size(student)
    )
    # GKD compares full distributions and checks equal vocab sizes: cut the padding rows of the larger one.
    truncate_vocab(teacher, shared)
    truncate_vocab(student, shared)
    return student, {"student": student_spec.model, "student_path": str(Path(resolved.path))}
