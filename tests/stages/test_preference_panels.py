"""ORPO, SimPO and KTO runs plot their reward margins: the panels their stage types declare, from TRL's logs."""

from __future__ import annotations

import pytest

from posttrain.report.collect import read_run
from posttrain.report.plots import stage_panels

EXPECTED = {  # stage type, its data kind → the panels drawn after loss, learning rate and grad norm
    ("orpo", "preference"): ["reward margin (chosen − rejected, β·mean log p)", "preference accuracy",
                             "log odds ratio (chosen vs rejected)", "SFT loss on chosen"],
    ("simpo", "preference"): ["reward margin (chosen − rejected, β·mean log p)", "preference accuracy"],
    ("kto", "unpaired"): ["reward margin (desirable − undesirable)", "rewards (desirable, undesirable)",
                          "KL estimate (policy vs reference)"],
}


@pytest.mark.parametrize(("stage_type", "kind"), list(EXPECTED))
def test_the_report_plots_the_margins_trl_logged(measure, stage_type: str, kind: str) -> None:
    run_dir = measure(stage_type, kind=kind, steps=3).report.run_dir
    [stage] = read_run(run_dir).stages
    drawn = dict(stage_panels(stage.panels, stage.curves))
    assert list(drawn)[3:] == EXPECTED[(stage_type, kind)]
    steps, margins = drawn[EXPECTED[(stage_type, kind)][0]]["rewards/margins"]
    assert steps == [1.0, 2.0, 3.0] and len(margins) == 3  # one logged value per step, as TRL logged it
    report = (run_dir / "report.md").read_text()
    assert f"panels: loss, learning rate, grad norm, {', '.join(EXPECTED[(stage_type, kind)])}" in report
