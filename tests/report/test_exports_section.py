"""The report's Exports section on a run whose exported artifacts were scored in their engines (files written by
hand per ARCHITECTURE.md "An exported artifact scored in its engine"): every number, verdict and mark, what a
damaged file gives, and the section without scored artifacts."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from posttrain.report import write_report

REFERENCE = [1.0] * 12
"""grpo, the stage scored here, answers all 12 documents of the fake run right (tests/report/conftest.py)."""

PARITY_Q4 = {
    "chat_template": {"ok": True, "detail": "rendered prompt equals the tokenizer's on 12 documents"},
    "end_of_turn": {"ok": False, "detail": "2 of 12 replies ran past <|im_end|>"},
    "greedy_tokens": {"ok": None, "detail": "compared for f16 only"},
}
PARITY_Q8 = {
    "chat_template": {"ok": True, "detail": "same prompt"},
    "end_of_turn": {"ok": True, "detail": "every reply ended at <|im_end|>"},
    "greedy_tokens": {"ok": None, "detail": "compared for f16 only"},
}

HEADER = ("| model | engine | score [95%] | Δ vs merged [95%] | verdict | size (MB) | prompt tok/s | generation tok/s "
          "| peak memory (MB) | chat template | end of turn | greedy tokens | run with |")
MERGED = "| merged | transformers | 1.000 [0.80, 1.00] | – | reference | 4.0 | - | - | - | – | – | – | - |"
# q4_k_m: documents 6-11 wrong → 6 discordant pairs all one way, exact McNemar p = 2/64; Wilson [0.25, 0.75];
# Δ = -0.5 ± 1.96 · 0.1508 (the paired differences' standard error)
Q4 = ("| q4_k_m | llama.cpp 0.3.36 | 0.500 [0.25, 0.75] | -0.500 [-0.80, -0.20] | ▼ loses 0.50, significant (p = 0.0312) "
      "| 1.2 | 850.0 | 41.7 | 312 | ✓ | ✗ | – | llama-server -m grpo/export/gguf/model-q4_k_m.gguf -c 2048 |")
# q8_0: document 11 wrong → one discordant pair, p = 1
Q8 = ("| q8_0 | llama.cpp 0.3.36 | 0.917 [0.65, 0.99] | -0.083 [-0.25, +0.08] | -0.08, within noise (p = 1) "
      "| 2.0 | 610.5 | 28.0 | 420 | ✓ | ✓ | – | llama-server -m grpo/export/gguf/model-q8_0.gguf -c 2048 |")


def _score(stage: Path, writer, artifact: str, right: int, size: int, speed: tuple[float, float, float],
           parity: dict, **extra) -> Path:
    return writer(stage, artifact, {"pt_arith": [1.0] * right + [0.0] * (12 - right)}, {"pt_arith": REFERENCE},
                  size_bytes=size, parity=parity,
                  speed=dict(zip(("prompt_tokens_per_s", "generation_tokens_per_s", "peak_memory_mb"), speed, strict=True)),
                  command=f"llama-server -m grpo/export/gguf/model-{artifact}.gguf -c 2048", **extra)


@pytest.fixture
def scored_run(fake_run: Path, scored_artifact_writer) -> Path:
    """The fake run with grpo's merged export on disk (4 MB) and two GGUF quants scored in llama.cpp."""
    stage = fake_run / "grpo"
    (stage / "export" / "merged").mkdir(parents=True)
    with (stage / "export" / "merged" / "model.safetensors").open("wb") as f:
        f.truncate(4_000_000)
    _score(stage, scored_artifact_writer, "q4_k_m", 6, 1_200_000, (850.0, 41.7, 312.4), PARITY_Q4)
    _score(stage, scored_artifact_writer, "q8_0", 11, 2_000_000, (610.5, 28.0, 419.6), PARITY_Q8)
    return fake_run


def _exports_md(run: Path) -> str:
    return (run / "report.md").read_text().split("## Exports\n\n")[1]


def test_each_artifact_is_a_row_against_the_merged_model(scored_run: Path) -> None:
    write_report(scored_run)
    md = _exports_md(scored_run)
    title = "### grpo: the merged model and its exports, scored in their engines on pt_arith (exact_match)\n\n"
    assert md.startswith(title + HEADER + "\n|---|---|---:|---:|---|---:|---:|---:|---:|---|---|---|---|\n"
                         + MERGED + "\n" + Q4 + "\n" + Q8 + "\n")
    notes = md.split(Q8 + "\n\n")[1].split("\n\nThe merged model")[0]
    assert notes.splitlines() == [
        "- q4_k_m: end of turn ✗: 2 of 12 replies ran past <|im_end|>",
        "- q4_k_m: greedy tokens –: compared for f16 only",
        "- q8_0: greedy tokens –: compared for f16 only",
    ]
    assert "![quality vs size of grpo](report/quality-size-fake-grpo.png)" in md
    assert (scored_run / "report" / "quality-size-fake-grpo.png").stat().st_size > 5000
    # the table of exported formats is still there, below
    assert "### Exported formats\n\n| stage | format | path | checks | serve with |" in md
    assert "| grpo | vllm | " in md and "vllm serve /base --enable-lora" in md


def test_html_marks_significant_changes_and_failed_checks(scored_run: Path) -> None:
    page = write_report(scored_run).read_text()
    exports = page.split("<section id='exports'>")[1].split("</section>")[0]
    assert "<td class='worse'>▼ loses 0.50, significant (p = 0.0312)</td>" in exports
    assert "<td>-0.08, within noise (p = 1)</td>" in exports  # within noise: no mark, no colour
    assert "<td class='fail' title='2 of 12 replies ran past &lt;|im_end|&gt;'>✗</td>" in exports
    assert "<td title='rendered prompt equals the tokenizer&#x27;s on 12 documents'>✓</td>" in exports
    assert exports.count("<td title='compared for f16 only'>–</td>") == 2
    assert exports.count("<img class='plot' src='data:image/png;base64,") == 1
    assert "<h3>Exported formats</h3><table class='exports'>" in exports


def _html_rows(page: str, css: str) -> list[list[str]]:
    body = page.split(f"<table class='{css}'>")[1].split("<tbody>")[1].split("</tbody>")[0]
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _md_rows(md: str, first: str) -> list[list[str]]:
    lines = md.split(first, 1)[1].split("\n\n")[1].splitlines()[2:]  # after the heading, below the header
    return [[c.replace("<br>", "\n").replace("\\|", "|") for c in re.split(r" (?<!\\)\| ", line.strip("| "))]
            for line in lines]


def test_markdown_and_html_show_the_same_cells(scored_run: Path, scored_artifact_writer) -> None:
    # a second task on one artifact, so multi-line cells are compared too
    (scored_run / "grpo" / "export" / "scored" / "q8_0" / "artifact.json").unlink()
    scored_artifact_writer(scored_run / "grpo", "q8_0", {"pt_arith": [1.0] * 12}, {"pt_arith": REFERENCE},
                           size_bytes=2_000_000, skipped_tasks={"pt_arith_mc": "no logprobs from the engine"})
    page = write_report(scored_run).read_text()
    md = _exports_md(scored_run)
    html_rows = _html_rows(page, "scored")
    assert html_rows == _md_rows(md, "### grpo:")
    assert [r[0] for r in html_rows] == ["merged", "q4_k_m", "q8_0"]
    assert html_rows[2][2:5] == ["pt_arith: 1.000 [0.76, 1.00]\npt_arith_mc: skipped", "pt_arith: +0.000 [+0.00, +0.00]\n"
                                 "pt_arith_mc: –", "pt_arith: +0.00, within noise (p = 1)\npt_arith_mc: –"]
    assert "- q8_0 skipped pt_arith_mc: no logprobs from the engine\n" in md  # said, not hidden


def test_damaged_and_partial_files_are_said_not_crashed(scored_run: Path, scored_artifact_writer) -> None:
    scored = scored_run / "grpo" / "export" / "scored"
    (scored / "q8_0" / "artifact.json").write_text('{"artifact": "q8_0", "tasks": {"pt_ar')  # cut short by a kill
    (scored / "q4_k_m" / "eval.json").write_text("[1, 2]")
    record = json.loads((scored / "q4_k_m" / "artifact.json").read_text())
    for key in ("speed", "parity"):
        del record[key]
    (scored / "q4_k_m" / "artifact.json").write_text(json.dumps(record))
    (scored / "f16").mkdir()  # a scoring that never wrote its artifact.json
    write_report(scored_run)
    md = _exports_md(scored_run)
    assert "This section could not be built" not in md
    rows = [line for line in md.splitlines() if line.startswith("| q4_k_m |") or line.startswith("| q8_0 |")]
    assert rows == ["| q4_k_m | llama.cpp 0.3.36 | 0.500 [0.25, 0.75] | -0.500 [-0.80, -0.20] | "
                    "▼ loses 0.50, significant (p = 0.0312) | 1.2 | - | - | - | ? | ? | ? | "
                    "llama-server -m grpo/export/gguf/model-q4_k_m.gguf -c 2048 |"]
    notes = md.split("\n\nThe merged model")[0].split("|\n\n")[-1]
    assert notes.splitlines() == [
        "- f16: artifact.json is missing: the scoring did not finish or the file was damaged",
        "- q4_k_m: eval.json holds a list, not an object: no per-document samples from it",
        "- q4_k_m: artifact.json has no speed, parity (a scoring cut short or an older one)",
        "- q4_k_m: chat template not recorded",
        "- q4_k_m: end of turn not recorded",
        "- q4_k_m: greedy tokens not recorded",
        "- q8_0: artifact.json is not valid JSON (Unterminated string starting at: line 1 column 32 (char 31)): "
        "the scoring did not finish or the file was damaged",
    ]


def test_without_scored_artifacts_the_section_is_the_formats_table(fake_run: Path) -> None:
    write_report(fake_run)
    md = _exports_md(fake_run)
    assert md.startswith("| stage | format | path | checks | serve with |")
    assert "scored in their engines" not in md and "Exported formats" not in md
    assert not list((fake_run / "report").glob("quality-size-*"))


def test_a_missing_reference_is_said(scored_run: Path) -> None:
    (scored_run / "grpo" / "eval.json").write_text("{not json")
    write_report(scored_run)
    md = _exports_md(scored_run)
    assert "- grpo has no readable eval.json: no reference to compare the artifacts with\n" in md
    # the artifacts' own files still give their scores and paired verdicts
    assert "| q4_k_m | llama.cpp 0.3.36 | 0.500 [0.25, 0.75] | -0.500 [-0.80, -0.20] | ▼ loses 0.50" in md


def test_the_page_check_finds_the_section_and_its_plot(scored_run: Path, browser, workspace_kit) -> None:
    page_checks = workspace_kit["pages"]  # scripts/check_report_pages.py
    page = write_report(scored_run)
    check = page_checks.check_report(browser, page)
    assert check.problems == []
    assert check.found["Exports"].endswith("; scored in their engines: grpo: q4_k_m, q8_0")
    dom, _ = browser.dump_dom(page.as_uri())
    plots = page_checks.shown_plots(page_checks.sections_of(dom)["exports"])
    assert [alt for alt, _ in plots] == ["quality vs size of grpo"] and plots[0][1] != "broken"
    # a table without its plot, or an artifact neither shown nor said, is a problem the check names
    exports = page_checks.sections_of(dom)["exports"]
    without_plot = re.sub(r'<img class="plot"[^>]*>', "", exports)
    problems, _ = page_checks._check_scored(without_plot, {"grpo": ["q4_k_m", "q8_0", "bf16"]})
    assert problems == ["exports: grpo's artifacts bf16 are neither rows nor notes",
                        "exports: no quality-vs-size plot for grpo"]


def test_an_artifact_json_without_task_results_is_completed_from_the_samples(scored_run: Path) -> None:
    path = scored_run / "grpo" / "export" / "scored" / "q4_k_m" / "artifact.json"
    record = json.loads(path.read_text())
    del record["tasks"]
    path.write_text(json.dumps(record))
    write_report(scored_run)
    md = _exports_md(scored_run)
    # score and interval from its eval.json, Δ from the two scores, the paired test from both samples/ folders
    assert ("| q4_k_m | llama.cpp 0.3.36 | 0.500 [0.25, 0.75] | -0.500 | ▼ loses 0.50, significant (p = 0.0312) | 1.2 |"
            in md)
    assert "- q4_k_m: artifact.json has no tasks (a scoring cut short or an older one)\n" in md


def test_fields_of_the_wrong_shape_become_dashes_and_notes(scored_run: Path) -> None:
    path = scored_run / "grpo" / "export" / "scored" / "q8_0" / "artifact.json"
    path.write_text(json.dumps({
        "artifact": "q8_0", "engine": "llama.cpp", "tasks": {"pt_arith": {"score": "high", "ci95": [0.1], "delta": None}},
        "skipped_tasks": ["pt_arith"], "size_bytes": "2 MB", "file": 7, "command": ["llama-server"],
        "speed": {"prompt_tokens_per_s": "fast", "generation_tokens_per_s": float("nan")}, "parity": ["ok"],
    }))
    write_report(scored_run)
    md = _exports_md(scored_run)
    # the score falls back to its eval.json (still intact), the paired test to both samples/ folders; what it
    # cannot read (a string size, a NaN speed, a list for parity) is a dash or a "?"
    row = next(line for line in md.splitlines() if line.startswith("| q8_0 |"))
    assert row == "| q8_0 | llama.cpp | 0.917 [0.65, 0.99] | -0.083 | within noise (p = 1) | - | - | - | - | ? | ? | ? | - |"
    assert "- q8_0: chat template not recorded\n" in md
