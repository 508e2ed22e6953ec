"""Adding an export format is adding one declaration: a toy format defined here is validated, written by a
run, reused while up to date, written again when not, and shown in the report and its model card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from safetensors import safe_open

from posttrain.errors import RecipeError
from posttrain.export.declaration import ExportFormat
from posttrain.export.formats import EXPORT_FORMATS, register, unregister
from posttrain.export.job import ExportJob
from posttrain.export.run_export import export_run
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe

TENSORS = "tensors.txt"


def write_tensor_names(job: ExportJob) -> None:
    """The names of the merged model's tensors, one a line: the toy format builds on `merged`."""
    folder = job.folder("toyfmt")
    folder.mkdir(parents=True, exist_ok=True)
    with safe_open(str(Path(job.paths["merged"]) / "model.safetensors"), "pt") as weights:
        (folder / TENSORS).write_text("".join(f"{name}\n" for name in sorted(weights.keys())))
    job.paths["toyfmt"] = str(folder)


TOY = ExportFormat(
    name="toyfmt", summary="the merged model's tensor names", write=write_tensor_names, title="tensor list",
    load=lambda job, folder: f"open({str(folder / TENSORS)!r}).read().split()",
    serve=lambda job, folder: f"cat {folder / TENSORS}",
    needs=("merged",), up_to_date=lambda job, folder: (folder / TENSORS).exists(),
)

RECIPE = """\
name: toyexp
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4}},
     train: {{max_steps: 1, batch_size: 2, max_length: 32}}}}
export: {{formats: [toyfmt]}}
"""


@pytest.fixture
def toy_registered() -> Iterator[None]:
    register(TOY)
    yield
    unregister("toyfmt")


def write_recipe(tmp_path: Path, model: Path) -> Path:
    turn = [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "Answer: 2"}]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": turn}) + "\n" for _ in range(4)))
    path = tmp_path / "toyexp.yaml"
    path.write_text(RECIPE.format(model=model))
    return path


def test_a_toy_format_is_written_reused_and_reported(toy_registered: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    loaded = load_recipe(write_recipe(tmp_path, tiny_model_dir))
    assert loaded.recipe.export.formats == ["toyfmt"]
    runs = tmp_path / "runs"

    report = run_recipe(loaded, runs_dir=runs, console=Console(quiet=True))
    export = runs / "toyexp" / "sft" / "export"
    assert report.stages[0].exports == {"merged": str(export / "merged"), "toyfmt": str(export / "toyfmt")}
    listed = (export / "toyfmt" / TENSORS).read_text().split()
    with safe_open(str(export / "merged" / "model.safetensors"), "pt") as merged:
        assert listed == sorted(merged.keys()) and "model.norm.weight" in listed
    assert "tensor list" in (export / "toyfmt" / "README.md").read_text()  # the declaration's model card title
    md = (runs / "toyexp" / "report.md").read_text()
    assert f"| sft | toyfmt | {export / 'toyfmt'} | - | cat {export / 'toyfmt' / TENSORS} |" in md
    assert "toyfmt" in (runs / "toyexp" / "report.html").read_text()

    stamp = (export / "toyfmt" / TENSORS).stat().st_mtime_ns
    again = run_recipe(loaded, runs_dir=runs, console=Console(quiet=True))
    assert again.stages[0].cached and again.stages[0].exports == report.stages[0].exports
    assert export_run(runs / "toyexp", None, ["toyfmt"]) == report.stages[0].exports
    assert (export / "toyfmt" / TENSORS).stat().st_mtime_ns == stamp  # up to date: reused, not rewritten

    (export / "toyfmt" / TENSORS).unlink()  # the declaration's own test now fails: written again
    merged_stamp = (export / "merged" / "model.safetensors").stat().st_mtime_ns
    export_run(runs / "toyexp", None, ["toyfmt"])
    assert (export / "toyfmt" / TENSORS).read_text().split() == listed
    assert (export / "merged" / "model.safetensors").stat().st_mtime_ns == merged_stamp  # its need was up to date


def test_a_recipe_naming_an_unregistered_format_is_refused_with_the_known_ones(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    assert "toyfmt" not in EXPORT_FORMATS
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tmp_path, tiny_model_dir))
    text = info.value.render()
    assert "export.formats[0]" in text
    assert all(f"'{name}'" in text for name in EXPORT_FORMATS), text


def test_a_format_must_be_registered_after_what_it_needs() -> None:
    with pytest.raises(ValueError, match="needs unregistered format"):
        register(ExportFormat(name="orphan", summary="-", write=write_tensor_names, title="-",
                              load=lambda job, folder: "", needs=("toyfmt",)))
    assert "orphan" not in EXPORT_FORMATS
