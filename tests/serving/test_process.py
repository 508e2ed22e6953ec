"""serving/process.py with a real server process: free port, ready wait, always stopped, peak memory."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from posttrain.serving.process import HOST, PORT, ServerError, free_port, served

STUB = Path(__file__).with_name("openai_stub.py")


def _stub(*extra: str) -> list[str]:
    return [sys.executable, str(STUB), "--port", PORT, *extra]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has stopped running.
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _gone(pid: int, within: float = 5.0) -> bool:
    """Dead within `within` seconds (a SIGKILLed process takes a moment to leave the process table)."""
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _child_pid(log: Path) -> int:
    for _ in range(100):
        for line in log.read_text().splitlines():
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no child pid in {log.read_text()!r}")


def test_free_port_is_bindable_and_not_fixed() -> None:
    import socket

    ports = {free_port() for _ in range(5)}
    assert len(ports) > 1  # the OS hands out different ports, none hard-coded
    with socket.socket() as sock:
        sock.bind((HOST, ports.pop()))


def test_waits_until_ready_then_stops_server_and_its_children(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    start = time.monotonic()
    with served(_stub("--ready-after", "1.0", "--child"), log=log, ready_timeout=30) as server:
        assert time.monotonic() - start >= 1.0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert str(server.port) in server.command
        with urllib.request.urlopen(f"{server.url}/v1/models") as response:
            assert response.status == 200
        pid, child = server.process.pid, _child_pid(log)
        assert _alive(pid) and _alive(child)
    assert server.process.poll() is not None
    assert _gone(child)
    assert server.peak_memory_mb > 1  # two python processes' resident peak, sampled from /proc


def test_stopped_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), served(_stub("--child"), log=tmp_path / "log") as server:
        child = _child_pid(tmp_path / "log")
        raise RuntimeError("boom")
    assert server.process.poll() is not None and _gone(child)


def test_stopped_on_keyboard_interrupt_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), served(_stub("--ignore-term"), log=tmp_path / "log") as server:
        raise KeyboardInterrupt
    assert server.process.poll() is not None


def test_a_server_that_exits_early_raises_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('model file is corrupt'); sys.exit(4)", PORT]
    with pytest.raises(ServerError, match=r"(?s)exited with status 4.*model file is corrupt"), \
            served(command, log=tmp_path / "log", ready_timeout=30):
        pass


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    seen = []

    def never(url: str) -> bool:
        seen.append(url)
        return False

    with pytest.raises(ServerError, match=r"(?s)did not answer .* within 1s.*stub listening"), \
            served(_stub(), log=tmp_path / "log", ready_timeout=1, ready=never):
        pass
    port = int(seen[0].rsplit(":", 1)[1])
    import socket

    with socket.socket() as sock:  # the port is free again: the stub was stopped
        sock.bind((HOST, port))


HOLDER = """
import sys, time
from pathlib import Path
from posttrain.serving.process import served
with served({command!r}, log=Path({log!r})) as server:
    print(server.process.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("signum", [15, 9])
def test_server_does_not_outlive_a_terminated_or_killed_caller(tmp_path: Path, signum: int) -> None:
    import signal
    import subprocess

    log = tmp_path / "server.log"
    code = HOLDER.format(command=_stub(), log=str(log))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        server_pid = int(holder.stdout.readline())
        assert _alive(server_pid)
        holder.send_signal(signum)  # `timeout` sends SIGTERM; SIGKILL leaves no handler to run
        holder.wait(timeout=30)
        assert _gone(server_pid, within=15)
    finally:
        holder.kill()
        holder.wait()
    if signum == signal.SIGTERM:
        assert holder.returncode == 128 + 15  # unwound through the `finally` that stops the server
