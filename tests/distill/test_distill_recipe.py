"""Recipe-level rules of the distill stage: validation messages, and the teacher as a dependency."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.errors import RecipeError
from posttrain.pipeline.plan import downstream, stage_graph, upstream_fingerprint
from posttrain.recipe.loader import load_recipe

RECIPE = """\
name: r
model: {{base: {model}}}
datasets: {{chat: {{sources: [{{path: chat.jsonl}}]}}}}
stages:
  - {{name: a, type: sft, data: chat}}
  - {{name: b, type: sft, data: chat, after: base}}
  - {{name: d, type: distill, data: chat, teacher: {teacher}, student: {student}{extra}}}
  - {{name: z, type: sft, data: chat}}
"""


def load(tmp_path: Path, model: Path, teacher: str = "a", student: str = "{init: prune, keep_layers: [0]}", extra: str = ""):
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(model=model, teacher=teacher, student=student, extra=extra))
    return load_recipe(path)


def test_a_teacher_stage_is_a_dependency(tmp_path: Path, tiny_model_dir: Path) -> None:
    planned = stage_graph(load(tmp_path, tiny_model_dir).recipe)
    d = planned[2]
    assert (d.input, d.model_inputs) == ("b", {"teacher": "a"})
    assert "d" in downstream(planned, {"a"})  # changing the teacher reruns the student
    fps = {"base": "0", "a": "1", "b": "2"}
    assert upstream_fingerprint(d, fps) != upstream_fingerprint(d, {**fps, "a": "9"})
    assert upstream_fingerprint(planned[1], fps) == "0"  # stages without a separate teacher: unchanged
    assert stage_graph(load(tmp_path, tiny_model_dir, teacher="b").recipe)[2].model_inputs == {}  # teacher == input


def test_teacher_mistakes_are_reported_at_validation(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(RecipeError) as later:
        load(tmp_path, tiny_model_dir, teacher="z")
    assert "later stage" in later.value.render()
    with pytest.raises(RecipeError) as typo:
        load(tmp_path, tiny_model_dir, teacher="aa")
    assert "teacher 'aa' is no earlier stage, and not a model" in typo.value.render()
    assert load(tmp_path, tiny_model_dir, teacher=str(tiny_model_dir)).recipe.stages[2].teacher == str(tiny_model_dir)


@pytest.mark.parametrize(
    ("student", "extra", "message"),
    [
        ("{init: prune}", "", "keep_layers or keep_fraction (depth) and/or mlp_keep_fraction"),
        ("{init: prune, keep_layers: [0], keep_fraction: 0.5}", "", "not both"),
        ("{model: x, mlp_keep_fraction: 0.5}", "", "needs `init: prune`"),
        ("{init: prune, mlp_keep_fraction: 0}", "", "greater than 0"),
        ("{init: prune, keep_fraction: 0.5, model: x}", "", "exactly one of `model`"),
        ("{init: prune, keep_fraction: 0.5}", ", full_finetune: false", "LoRA distillation is not supported"),
        ("{init: prune, keep_fraction: 0.5}", ", beta: 1.5", "less than or equal to 1"),
        ("{init: prune, keep_layers: [0], select: influence}", "", "keep_layers lists them itself"),
    ],
)
def test_student_and_loss_settings_are_checked(tmp_path: Path, tiny_model_dir: Path, student: str, extra: str, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        load(tmp_path, tiny_model_dir, student=student, extra=extra)
    assert message in err.value.render()


def test_prompt_data_needs_someone_to_write_the_answers(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": [{"role": "user", "content": "hi"}]}\n')
    path = tmp_path / "p.yaml"

    def write(extra: str) -> Path:
        stage = "{name: d, type: distill, data: p, student: {init: prune, keep_layers: [0]}" + extra + "}"
        path.write_text(
            f"name: p\nmodel: {{base: {tiny_model_dir}}}\n"
            "datasets: {p: {kind: prompt, sources: [{path: p.jsonl}]}}\n"
            f"stages:\n  - {stage}\n"
        )
        return path

    with pytest.raises(RecipeError) as err:
        load_recipe(write(""))
    assert "set `sequence_kd: true` or `lmbda: 1`" in err.value.render()
    for extra in (", sequence_kd: true", ", lmbda: 1"):
        assert load_recipe(write(extra)).recipe.stages[0].type == "distill"
