"""A stage type's panels come from its declaration: a toy type defined here is plotted with no report file
edited, and a stage recorded before panels were declared still gets the panels every stage has."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
from rich.console import Console

from posttrain.models.lineage import Lineage
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.report import write_report
from posttrain.report.collect import read_run
from posttrain.report.plots import stage_panels
from posttrain.stagekit import Panel, StageContext, StageResult, StageType
from posttrain.stagekit.specs import StageCommon
from posttrain.stages import register, unregister
from posttrain.training.callbacks import MetricsFile


class WobbleStage(StageCommon):
    type: Literal["wobble"]


def run_wobble(ctx: StageContext, spec: WobbleStage) -> StageResult:
    """Keeps its input model; "trains" three steps, logging through the pipeline's own metrics callback."""
    [metrics] = [c for c in ctx.callbacks if isinstance(c, MetricsFile)]
    for step in (1, 2, 3):
        state = SimpleNamespace(global_step=step, epoch=step / 3, max_steps=3, is_world_process_zero=True)
        metrics.on_log(None, state, None, logs={"loss": 1.0 / step, "wobble/amplitude": 0.1 * step})
    return StageResult(lineage=Lineage(ctx.input.base, list(ctx.input.adapters)))


WOBBLE = StageType(
    name="wobble", spec=WobbleStage, run=run_wobble, data_kinds=("chat",),
    panels=(Panel("wobble amplitude", ("wobble/*",)),
            Panel("never logged", ("absent_key",), when_absent="no absent_key: the toy never logs it")),
)

RECIPE = """\
name: toy
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
stages:
  - {{name: shake, type: wobble, data: chat, evaluate: false}}
export: {{formats: []}}
"""


@pytest.fixture
def wobble_registered() -> Iterator[None]:
    register(WOBBLE)
    yield
    unregister("wobble")


def test_a_toy_stage_types_panel_is_drawn_from_its_declaration(
    wobble_registered: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": turn}) + "\n" for _ in range(3)))
    (tmp_path / "toy.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    runs = tmp_path / "runs"
    report = run_recipe(load_recipe(tmp_path / "toy.yaml"), runs_dir=runs, console=Console(quiet=True))

    [stage] = read_run(report.run_dir).stages
    drawn = dict(stage_panels(stage.panels, stage.curves))
    assert list(drawn) == ["loss", "wobble amplitude"]  # the others have no data
    assert drawn["wobble amplitude"] == {"wobble/amplitude": ([1.0, 2.0, 3.0], [0.1, 0.2, pytest.approx(0.3)])}
    md = (report.run_dir / "report.md").read_text()
    assert "shake: 3 log records, steps 1–3, loss 1.000 → 0.333; panels: loss, wobble amplitude" in md
    assert "no absent_key: the toy never logs it" in md
    assert "](report/curves-toy-shake.png)" in md

    # The run directory alone carries the declaration: reported again with the toy type gone, the same panel.
    unregister("wobble")
    (report.run_dir / "report.md").unlink()
    write_report(report.run_dir)
    assert "panels: loss, wobble amplitude" in (report.run_dir / "report.md").read_text()


def test_a_cached_stage_records_its_types_panels_of_today(
    wobble_registered: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": turn}) + "\n")
    (tmp_path / "toy.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    loaded = load_recipe(tmp_path / "toy.yaml")
    report = run_recipe(loaded, runs_dir=tmp_path / "runs", console=Console(quiet=True))
    stage_json = report.run_dir / "shake" / "stage.json"
    record = json.loads(stage_json.read_text())
    del record["report"]  # as an older posttrain wrote it
    stage_json.write_text(json.dumps(record))
    assert [p.title for p in read_run(report.run_dir).stages[0].panels] == ["loss", "learning rate", "grad norm"]

    assert run_recipe(loaded, runs_dir=tmp_path / "runs", console=Console(quiet=True)).stages[0].cached
    assert [p.title for p in read_run(report.run_dir).stages[0].panels][3:] == ["wobble amplitude", "never logged"]


def test_a_stage_recorded_before_panels_were_declared_plots_the_common_ones(fake_run: Path) -> None:
    stage_json = fake_run / "dpo" / "stage.json"
    record = json.loads(stage_json.read_text())
    del record["report"]
    stage_json.write_text(json.dumps(record))
    dpo = {s.name: s for s in read_run(fake_run).stages}["dpo"]
    assert [title for title, _ in stage_panels(dpo.panels, dpo.curves)] == ["loss", "learning rate", "grad norm"]
    write_report(fake_run)
    assert "dpo: 4 log records, steps 1–4, loss 2.000 → 0.500; panels: loss, learning rate, grad norm\n" in (
        fake_run / "report.md").read_text()
