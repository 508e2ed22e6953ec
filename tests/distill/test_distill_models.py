"""Teacher and student as the stage builds them: by stage name, by model reference, padded vocab, mismatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from transformers import AutoTokenizer

from posttrain.distill.models import build_student, load_teacher
from posttrain.errors import UserError
from posttrain.models.lineage import Lineage
from posttrain.recipe.loader import load_recipe
from posttrain.stagekit import StageContext

RECIPE = """\
name: r
model: {{base: {base}}}
datasets: {{chat: {{sources: [{{path: chat.jsonl}}]}}}}
stages:
  - {{name: d, type: distill, data: chat, teacher: {teacher}, student: {student}}}
"""


def context(tmp_path: Path, base: Path, teacher: str, student: str) -> tuple[StageContext, Any]:
    (tmp_path / "chat.jsonl").write_text("{}\n")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(base=base, teacher=teacher, student=student))
    loaded = load_recipe(path)
    ctx = StageContext(
        model_spec=loaded.recipe.model, eval_spec=loaded.recipe.eval, seed=loaded.recipe.seed, stage_dir=tmp_path / "d", input=Lineage(str(base)), tokenizer=AutoTokenizer.from_pretrained(base),
        datasets={}, console=Console(quiet=True), base_dir=tmp_path, earlier={"base": Lineage(str(base))},
    )
    return ctx, loaded.recipe.stages[0]


def save(folder: Path, model: Any, tokenizer: Any) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_smaller_student_with_padded_vocab_shares_the_teachers_logits(
    tmp_path: Path, tiny_model_dir: Path, tiny_llama: Any, tiny_tokenizer: Any
) -> None:
    n = len(tiny_tokenizer)
    save(tmp_path / "teacher", tiny_llama(n + 32, layers=4), tiny_tokenizer)  # padded like a big sibling
    save(tmp_path / "student", tiny_llama(n + 8, layers=1, seed=1), tiny_tokenizer)
    ctx, spec = context(tmp_path, tiny_model_dir, teacher="teacher", student="{model: student}")
    teacher = load_teacher(ctx, spec.teacher)
    assert teacher.stage is None and teacher.label == "teacher"  # a model reference, resolved against the recipe dir
    ids = torch.randint(3, n, (1, 6))
    with torch.no_grad():
        full = teacher.model(input_ids=ids).logits
    student, facts = build_student(ctx, spec.student, teacher.model)
    assert facts["student"] == "student"
    assert teacher.model.config.vocab_size == student.config.vocab_size == n + 8
    with torch.no_grad():
        torch.testing.assert_close(teacher.model(input_ids=ids).logits, full[..., : n + 8])


def test_a_student_with_another_tokenizer_is_refused(tmp_path: Path, tiny_model_dir: Path, tiny_llama: Any, tiny_tokenizer: Any) -> None:
    other = AutoTokenizer.from_pretrained(tiny_model_dir)
    other.add_tokens(["<tool_call>", "</tool_call>"])
    save(tmp_path / "student", tiny_llama(len(other), layers=1), other)
    ctx, spec = context(tmp_path, tiny_model_dir, teacher="base", student="{model: student}")
    teacher = load_teacher(ctx, spec.teacher)
    assert teacher.stage == "base"
    with pytest.raises(UserError, match=rf"student's tokenizer \({len(other)} tokens.*teacher's \({len(tiny_tokenizer)} tokens"):
        build_student(ctx, spec.student, teacher.model)


def test_a_pruned_student_is_saved_before_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    ctx, spec = context(tmp_path, tiny_model_dir, teacher="base", student="{init: prune, keep_layers: [1]}")
    student, facts = build_student(ctx, spec.student, load_teacher(ctx, spec.teacher).model)
    assert facts["kept_layers"] == [1] and student.config.num_hidden_layers == 1
    assert all(p.requires_grad for p in student.parameters())
    assert (Path(facts["student_init"]) / "config.json").exists()
