"""The dashboard in headless Chromium: a recipe started from the page trains live, the board, reports, compare, chat."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posttrain.run_layout import RunDir

from .conftest import STEPS, screenshot, write_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ui-workspace")
    return {"runs": folder / "runs", "recipes": write_workspace(folder, tiny_model_dir)}


def _trained(workspace: dict[str, Path]) -> Path:
    """The live run, completed: by the page's test when it ran first, else by the CLI here."""
    run = workspace["runs"] / "live"
    if not RunDir(run).is_completed("sft"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "posttrain.cli", "run", "live.yaml", "--runs-dir", str(workspace["runs"])],
                       cwd=workspace["recipes"], env=env, check=True, capture_output=True, timeout=900)
    return run


def _stage_view(page) -> dict | None:
    return page.evaluate("""() => {
        const row = document.querySelector('.run[data-run="live"] tr.stage[data-stage="sft"]');
        const card = document.querySelector('.run[data-run="live"]');
        if (!row) return card ? {run: card.dataset.status} : null;
        const curve = row.querySelector('svg.curve[data-label="loss"]');
        return {run: card.dataset.status, stage: row.dataset.status, steps: row.querySelector('.steps').textContent,
                left: row.querySelector('.left').textContent, points: Number(curve.dataset.points)};
    }""")


def test_a_recipe_started_from_the_page_trains_live_and_lands_on_the_board(workspace, serve, page) -> None:
    served = serve(workspace["runs"], workspace["recipes"])
    page.goto(f"{served.url}/?poll=150")
    page.select_option("#recipe", "broken.yaml")  # validate's errors inline, and no Start
    page.wait_for_selector("#validation.error")
    assert "nope" in page.inner_text("#validation") and page.is_disabled("#start")
    page.select_option("#recipe", "live.yaml")
    page.wait_for_selector("#message.ok")
    assert "valid: run live" in page.inner_text("#message")
    page.click("#start")
    page.wait_for_selector("#message.ok >> text=started run live")

    seen, refused, shot = [], None, False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        view = _stage_view(page)
        if view and "steps" in view:
            seen.append(view)
            if refused is None and view["stage"] == "running":  # the run's lock holds for a second start
                page.click("#start")
                page.wait_for_selector("#message.error")
                refused = page.inner_text("#message")
            if not shot and view["stage"] == "running" and view["points"] >= STEPS // 2:
                screenshot(page, "runs-training")
                shot = True
        if view and view.get("run") in ("completed", "failed"):
            break
        time.sleep(0.1)
    assert seen and seen[-1]["run"] == "completed", (seen[-1:], page.inner_text("#jobs"))
    assert refused and "in use by another posttrain process (PID" in refused
    training = [v for v in seen if v["stage"] == "running"]
    steps = sorted({int(v["steps"].split("/")[0]) for v in training if "/" in v["steps"]})
    points = sorted({v["points"] for v in training})
    assert len([s for s in steps if 0 < s < STEPS]) >= 3, steps  # progress advanced while it trained
    assert len([p for p in points if 0 < p < STEPS]) >= 3, points  # and the loss curve grew
    assert all(v["steps"].endswith(f"/ {STEPS}") for v in training if "/" in v["steps"])
    assert any(v["left"].endswith("left") for v in training)
    assert seen[-1]["points"] == STEPS
    screenshot(page, "runs")

    page.click(".run[data-run='live'] a.report-link")  # a finished stage links to its part of the report
    report = page.frame_locator("iframe.page")
    report.locator("section#curves").wait_for()
    assert page.url.endswith("/runs/live#curves")
    screenshot(page, "report")

    page.goto(f"{served.url}/board")
    board = page.frame_locator("iframe.page")
    board.locator("a[href='live/report.html']").first.wait_for()
    assert board.locator("tr[data-tasks]").count() == 2  # live's base and sft
    screenshot(page, "board")
    # Quiet but for the refused second start: Chromium logs every 4xx answer to fetch(), the 409 included.
    assert page.errors == ["console: Failed to load resource: the server responded with a status of 409 (Conflict)"]


def _load_report_conftest():
    spec = importlib.util.spec_from_file_location("report_conftest_for_ui", ROOT / "tests" / "report" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_page_pairs_two_runs(workspace, serve, page) -> None:
    runs = workspace["runs"]
    _trained(workspace)
    if not (runs / "fake").exists():
        _load_report_conftest().write_fake_run(runs)  # a second run, written by hand as the report tests do
    served = serve(runs, workspace["recipes"])
    page.goto(f"{served.url}/compare")
    page.select_option("#run-a", "live")
    page.select_option("#run-b", "fake")
    page.click("#compare")
    from playwright.sync_api import expect

    # The page compares its default pair on load; the frame must end on the pair clicked last, whichever
    # reply comes back first.
    heading = page.frame_locator("iframe.page").locator("section#paired h2")
    expect(heading).to_contain_text("live vs fake", timeout=60_000)
    page.wait_for_timeout(1_000)  # a stale reply to the load's click would land now
    assert "live vs fake" in heading.inner_text()
    screenshot(page, "compare")
    assert page.errors == []


def test_side_by_side_chat_streams_two_different_replies(workspace, serve, page) -> None:
    _trained(workspace)
    served = serve(workspace["runs"], workspace["recipes"])
    page.goto(f"{served.url}/chat")
    page.select_option("#model-0", "live/base")
    page.select_option("#model-1", "live/sft")
    page.fill("#setting-max_new_tokens", "16")
    page.fill("#setting-temperature", "1")  # greedy, the random tiny base repeats one whitespace token
    page.fill("#prompt", "What is 3 + 7?")
    page.click("#send")
    for side in (0, 1):
        page.wait_for_selector(f"#reply-{side}[data-state='done']", timeout=300_000)
    replies = [page.eval_on_selector(f"#reply-{side}", "e => e.textContent") for side in (0, 1)]
    chunks = [int(page.get_attribute(f"#reply-{side}", "data-chunks") or 0) for side in (0, 1)]
    assert all(r.strip() for r in replies) and replies[0] != replies[1], (replies, chunks)
    assert min(chunks) > 1, chunks  # streamed, not one block
    templates = page.locator("pre.template").all_text_contents()  # inside closed <details>
    assert all("im_start" in t or "{%" in t for t in templates), templates  # the chat template is shown
    assert "max_new_tokens 16 · temperature 1" in page.inner_text(".settings-used >> nth=0")
    screenshot(page, "chat")
    assert page.errors == []
