"""report.md / report.html built from a hand-written run directory: every section shows what the files hold."""

from __future__ import annotations

import re
from pathlib import Path

from posttrain.report import write_report
from posttrain.report.answers import paired
from posttrain.report.collect import read_run
from posttrain.report.plots import stage_panels


def test_report_shows_graph_data_scores_objectives_answers_and_exports(fake_run: Path) -> None:
    html_path = write_report(fake_run)
    md = (fake_run / "report.md").read_text()
    page = html_path.read_text()

    assert "base → sft → distill → dpo → grpo" in md
    assert "sft ⇢ distill (teacher)" in md
    assert re.search(r"\| sft \| sft \| base \| - \| chat \| cached \(reused\) \|", md)
    assert re.search(r"\| dpo \| dpo \| distill \| - \| chat \| trained \(--force\) in 3 s \|", md)
    assert "2026-11-20 10:00:00 UTC: trained<br>2026-11-21 09:30:00 UTC: cached |" in md
    assert "latest run started 2026-11-21 09:30:00 UTC" in md
    assert "too_short: 3, repeats: 2" in md and "2 malformed" in md
    # every model in the eval table, grpo's 12/12 vs base 0/12 passes McNemar, sft's 6/12 vs base too
    for label in ("base", "sft", "distill", "dpo", "grpo"):
        assert re.search(rf"^\| {label} \| ", md, re.M), label
    assert "1.000 [0.80, 1.00]<br>Δ vs base +1.000*" in md
    assert "Δ vs input +0.333*" not in md  # dpo → grpo: 4 discordant documents, p = 0.125, not significant
    assert "Δ vs input +0.333" in md
    # the student (7/12, every one sft's 6 and one more) keeps 7/6 of its teacher's gain over base (0/12)
    [kept] = re.findall(r"keeps (\d+)% of the teacher's gain \[(\d+)%, (\d+)%\]", md)
    assert kept[0] == "117" and int(kept[1]) >= 100 and int(kept[2]) >= 117
    assert re.search(r"^\| distill \| [^|]*keeps 117% of the teacher's gain", md, re.M)
    assert "| dpo | reward_margin | 0.0000 | 0.3000 | +0.3000 | 0.0980 | better | 40 |" in md
    assert "| dpo | pair_accuracy | 0.5000 | 0.5200 | +0.0200 | 0.0784 | within noise | 40 |" in md
    assert "vllm serve /base --enable-lora" in md and "vllm 0.32" in md
    # answers: documents where the models differ come first, each model's answer with its score
    assert "#### pt_arith #0" in md
    assert "| base | 0 | 0.00 |" in md and "| grpo | 7 | 1.00 |" in md

    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 1 + 4 + 1  # lengths, one curve figure per stage, scores
    assert "data-src" not in page and "http://" not in page and "https://" not in page  # nothing fetched when opened
    for link in re.findall(r"\]\((report/[^)]+\.png)\)", md):
        assert (fake_run / link).stat().st_size > 1000, link


def test_each_stage_type_plots_its_own_signals(fake_run: Path) -> None:
    stages = {s.name: s for s in read_run(fake_run).stages}
    titles = {name: [t for t, _ in stage_panels(s.panels, s.curves)] for name, s in stages.items()}
    assert titles["sft"] == ["loss", "learning rate", "grad norm"]
    assert titles["dpo"][3:] == ["reward margin (chosen − rejected)", "preference accuracy"]
    assert titles["distill"][3:] == ["loss parts (kd: divergence to teacher, ce: next token)"]
    grpo = dict(stage_panels(stages["grpo"].panels, stages["grpo"].curves))
    assert sorted(grpo["reward (total and per function)"]) == [
        "reward", "rewards/answer_line/mean", "rewards/exact_number/mean"]
    assert grpo["KL to reference"]["kl"] == ([1.0, 2.0, 3.0, 4.0], [0.01, 0.02, 0.03, 0.04])


def test_paired_test_uses_only_shared_documents(fake_run: Path) -> None:
    run = read_run(fake_run)
    models = dict(run.models())
    models["sft"].samples["pt_arith"] = models["sft"].samples["pt_arith"][:6]  # documents 0-5, all right
    result = paired(models["base"], models["sft"], "pt_arith")
    assert result is not None and result.n_paired == 6 and result.delta == 1.0
    assert result.test == "mcnemar-exact" and result.p_value == 2 / 64  # 6 discordant documents, all one way


def test_a_run_without_samples_or_exports_still_reports(tmp_path: Path, fake_run: Path) -> None:
    import shutil

    for folder in fake_run.glob("*/samples"):
        shutil.rmtree(folder)
    shutil.rmtree(fake_run / "grpo" / "export")
    write_report(fake_run)
    md = (fake_run / "report.md").read_text()
    assert "No per-document eval samples were found" in md
    assert "No exports yet." in md
    assert "needs per-document samples" in md


def test_a_file_in_an_unexpected_shape_costs_one_section(fake_run: Path) -> None:
    (fake_run / "data" / "chat" / "report.json").write_text('{"steps": [{"step": "load", "reasons": ["not", "a dict"]}]}')
    write_report(fake_run)
    md = (fake_run / "report.md").read_text()
    assert "## Data\n\nThis section could not be built: AttributeError" in md
    assert "## Evaluation" in md and "## Answers side by side" in md



def test_stage_outcomes_of_the_latest_run_in_words(fake_run: Path) -> None:
    import json

    def history(stage: str, *entries: dict) -> None:
        path = fake_run / stage / "stage.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "history": list(entries)}))

    older, latest = "2026-11-20T10:00:00.000+00:00", "2026-11-22T08:00:00.000+00:00"
    history("sft", {"run": older, "outcome": "trained", "planned": "run", "seconds": 5.0},
            {"run": latest, "outcome": "cached"})
    history("distill", {"run": latest, "outcome": "resumed", "planned": "resume", "resumed_from": "checkpoint-8",
                        "seconds": 2.0})
    history("dpo", {"run": latest, "outcome": "running", "planned": "rerun"})
    history("grpo", {"run": older, "outcome": "failed", "planned": "run", "seconds": 7.0})
    write_report(fake_run)
    md = (fake_run / "report.md").read_text()
    stages = md.split("## Stages")[1].split("## Data")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\w+) \| \w+ \| \w+ \| [^|]+ \| \w+ \| ([^|]+) \|",
                                                         stages, re.M) if m.group(1) != "stage"}
    assert rows == {
        "sft": "cached (reused)",
        "distill": "resumed from checkpoint-8 in 2 s",
        "dpo": "killed while training (or still running)",
        "grpo": "not in the latest run (last: failed after 7 s, run of 2026-11-20 10:00:00 UTC)",
    }
    assert "latest run started 2026-11-22 08:00:00 UTC" in md


def test_an_sft_example_shows_the_tokens_its_loss_learned(fake_run: Path) -> None:
    write_report(fake_run)
    page = (fake_run / "report.html").read_text()
    curves = page.split("<section id='curves'>")[1].split("</section>")[0]
    assert "<mark>Yes: 2 &lt; 3.&lt;|im_end|&gt;</mark>" in curves  # learned: highlighted, escaped
    assert "user\nIs 2 &lt; 3?" in curves and "<mark>&lt;|im_start|&gt;user" not in curves
    assert "6 of 14 tokens learned" in curves
    assert "⟦Yes: 2 < 3.<|im_end|>⟧" in (fake_run / "report.md").read_text()
