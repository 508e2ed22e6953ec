"""Twenty path-traversal and malformed requests all get a 4xx, and the server keeps serving; the token off loopback."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

REQUESTS = [
    ("GET", "/files/../../etc/passwd", None, None),
    ("GET", "/files/..%2f..%2fetc%2fpasswd", None, None),
    ("GET", "/files/%2e%2e/%2e%2e/etc/passwd", None, None),
    ("GET", "/files//etc/passwd", None, None),
    ("GET", "/files/run/.posttrain.lock", None, None),
    ("GET", "/files/run/%00stage.json", None, None),
    ("GET", "/files/outside/secret.txt", None, None),  # a link inside the runs folder pointing out of it
    ("GET", "/files/" + "a" * 5000, None, None),
    ("GET", "/runs/..%2F..%2Fetc", None, None),
    ("GET", "/api/runs/.hidden/report", None, None),
    ("GET", "/api/runs/nope", None, None),
    ("GET", "/api/compare?a=run&b=../run", None, None),
    ("GET", "/api/compare", None, None),
    ("GET", "/api/recipes/validate?path=../runs/run/recipe.resolved.yaml", None, None),
    ("GET", "/api/recipes/validate?path=/etc/passwd", None, None),
    ("GET", "/api/recipes/validate?path=notes.txt", None, None),
    ("POST", "/api/recipes/start", "application/json", json.dumps({"path": "../../evil.yaml"})),
    ("POST", "/api/recipes/start", "text/plain", json.dumps({"path": "ok.yaml"})),
    ("POST", "/api/recipes/start", "application/json", "{not json"),
    ("POST", "/api/chat", "application/json", json.dumps({"model": "../../x/base", "messages": [{"role": "user", "content": "hi"}]})),
    ("POST", "/api/chat", "application/json", json.dumps({"model": "run/base", "messages": [{"role": "root", "content": "hi"}]})),
    ("GET", "/api/runs/run/stop", None, None),
]


def _request(url: str, method: str, path: str, ctype: str | None, body: str | None, host: str | None = None):
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": ctype} if ctype else {}
    if host:
        headers["Host"] = host
    conn.request(method, path, body=body, headers=headers)  # sent as written: no client-side path clean-up
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    runs, recipes = tmp_path / "runs", tmp_path / "recipes"
    (runs / "run" / "sft").mkdir(parents=True)
    (runs / "run" / "recipe.resolved.yaml").write_text("name: run\nstages: [{name: sft, type: sft}]\n")
    (runs / "run" / "sft" / "stage.json").write_text('{"status": "completed"}')
    (runs / "run" / ".posttrain.lock").write_text("123")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "secret.txt").write_text("no")
    (runs / "outside").symlink_to(tmp_path / "secret")
    recipes.mkdir()
    (recipes / "notes.txt").write_text("not a recipe")
    return runs, recipes


def test_traversal_and_malformed_requests_get_4xx_and_the_server_keeps_serving(folders, serve) -> None:
    served = serve(*folders)
    statuses = {f"{m} {p[:60]}": _request(served.url, m, p, c, b) for m, p, c, b in REQUESTS}
    statuses["foreign Host"] = _request(served.url, "GET", "/api/runs", None, None, host="evil.example")
    assert len(statuses) >= 20
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert _request(served.url, "GET", "/api/runs", None, None) == 200
    assert _request(served.url, "GET", "/files/run/sft/stage.json", None, None) == 200


def test_off_loopback_every_request_needs_the_token(folders, serve) -> None:
    served = serve(*folders, token="s3cret", loopback=False)
    assert _request(served.url, "GET", "/api/runs", None, None) == 403
    assert _request(served.url, "GET", "/?token=wrong", None, None) == 403
    assert _request(served.url, "GET", "/api/runs?token=s3cret", None, None) == 200


def test_stop_is_ctrl_c_and_the_rerun_resumes(tmp_path: Path, tiny_model_dir: Path, serve, monkeypatch) -> None:
    """Stop sends SIGINT to the `posttrain run` it started: exit 130, checkpoints kept, the next start resumes.

    The first run stalls at the end of step 4 (a failpoint), after checkpoint-2 is written, so Stop
    always lands mid-training however fast the machine trains 16 steps."""
    import time

    from posttrain.run_layout import RunDir

    from .conftest import write_workspace

    recipes = write_workspace(tmp_path, tiny_model_dir)
    text = (recipes / "live.yaml").read_text().replace("name: live", "name: stoppable")
    (recipes / "stoppable.yaml").write_text(text.replace("max_steps: 40", "max_steps: 16").replace("save_steps: 1000", "save_steps: 2"))
    served = serve(tmp_path / "runs", recipes)
    run = RunDir(tmp_path / "runs" / "stoppable")

    def post(path: str, body: dict) -> int:
        return _request(served.url, "POST", path, "application/json", json.dumps(body))

    def job() -> dict:
        return next(j for j in served.app.state.jobs.listing() if j["name"] == "stoppable")

    monkeypatch.setenv("POSTTRAIN_FAILPOINT", "step4:STALL0")
    assert post("/api/recipes/start", {"path": "stoppable.yaml"}) == 200
    deadline = time.monotonic() + 300

    def logged_steps() -> list[int]:
        metrics = run.metrics_file("sft")
        complete_lines = metrics.read_text().split("\n")[:-1] if metrics.exists() else []
        return [json.loads(line)["step"] for line in complete_lines]

    while 3 not in logged_steps():  # step 3 logged: checkpoint-2 is complete, and step 4 will stall
        assert time.monotonic() < deadline and job()["state"] == "running", job()["output"]
        time.sleep(0.1)
    assert list(run.checkpoints_dir("sft").glob("checkpoint-*")) == [run.checkpoints_dir("sft") / "checkpoint-2"]
    monkeypatch.delenv("POSTTRAIN_FAILPOINT")
    assert post("/api/runs/stoppable/stop", {}) == 200
    while job()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job()["returncode"] == 130, job()["output"]
    assert not run.is_completed("sft")
    assert post("/api/recipes/start", {"path": "stoppable.yaml"}) == 200
    while job()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job()["returncode"] == 0, job()["output"]
    history = run.read_stage("sft")["history"]
    assert history[-1]["planned"] == "resume", history
