"""UI test helpers: the dashboard served by a real uvicorn, a workspace with a tiny recipe, headless Chromium.

The browser is Debian's chromium driven by Playwright (`executable_path`, no browser download).
Like tests/report, a missing browser skips, except under `make test`/CI, where it fails.
Every page a test opens records console errors and uncaught exceptions; `page.errors` must stay empty.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posttrain.serving.process import free_port

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
SHOTS = os.environ.get("POSTTRAIN_UI_SHOTS")
"""A folder to save a PNG of each page into (docs/ui/ holds the committed ones)."""

STEPS = 40

LIVE = """\
name: live
seed: 1
model: {base: MODEL}
datasets:
  chat: {sources: [{path: data/chat.jsonl}], eval_split: 0.25}
eval: {tasks: [pt_arith_mc], limit: 2, batch_size: 2}
stages:
  - {name: sft, type: sft, data: chat, lora: {r: 8, target_modules: [q_proj, v_proj]},
     train: {max_steps: STEPS, batch_size: 8, lr: 5.0e-2, logging_steps: 1, max_length: 128, save_steps: 1000}}
export: {formats: [peft]}
"""
"""One SFT stage on the tiny model: enough steps, each logged, that a page polling every 150 ms sees them go by."""


def write_workspace(folder: Path, model: Path) -> Path:
    """`folder/recipes/{live,broken}.yaml` with their data; returns the recipes folder."""
    recipes = folder / "recipes"
    (recipes / "data").mkdir(parents=True)
    chat = [{"messages": [{"role": "user", "content": f"What is {i} + 7? Explain the sum step by step, please."},
                          {"role": "assistant", "content": f"Adding seven to {i}: {i} + 7 = {i + 7}.\nAnswer: {i + 7}"}]}
            for i in range(48)]
    (recipes / "data" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    (recipes / "live.yaml").write_text(LIVE.replace("MODEL", str(model)).replace("STEPS", str(STEPS)))
    (recipes / "broken.yaml").write_text("name: broken\nmodel: {base: nowhere}\nstages:\n  - {name: a, type: nope}\n")
    return recipes


class Served:
    """The dashboard app under uvicorn on a free port, in a thread of this process."""

    def __init__(self, runs: Path, recipes: Path, **options) -> None:
        import uvicorn

        from posttrain.ui.server import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(runs, recipes, **options)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture
def serve() -> Iterator:
    started: list[Served] = []

    def start(runs: Path, recipes: Path, **options) -> Served:
        started.append(Served(runs, recipes, **options))
        return started[-1]

    yield start
    for served in started:
        served.close()


@pytest.fixture(scope="session")
def chromium():
    if CHROMIUM is None:
        message = "no chromium on PATH (make install adds Debian's chromium)"
        if os.environ.get("CI") or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1":
            pytest.fail(message)  # `make test` installed it: a missing browser is a broken set-up, not a skip
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page that keeps every console error and uncaught exception in `page.errors`."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"exception: {e}"))
    page.set_default_timeout(60_000)
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    """A PNG of the whole page into $POSTTRAIN_UI_SHOTS, when set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)
