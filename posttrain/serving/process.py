"""A server process that is always stopped: its own process group, a free port from the OS, a ready wait.

`served(command, ...)` is a context manager. The command is started in a new
session (its own process group), so stopping it also stops whatever it
forked (vLLM's engine core, uvicorn workers). It is stopped on every way out
of the `with` block: a normal exit, an exception, Ctrl-C. Until it answers
`GET /v1/models` the caller waits, up to a timeout; a server that exits or
never answers raises with the last lines of its log.

A SIGTERM to this process (a `timeout`, a job scheduler) would end Python
without running `finally` blocks, and the server, in a session of its own,
would outlive it: while a server runs, SIGTERM raises SystemExit in the main
thread instead. If this process is killed outright (SIGKILL), the kernel sends
the server SIGTERM (PR_SET_PDEATHSIG), so it does not outlive us either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
"""Engines listen on the loopback interface only: nothing outside this machine reaches them."""
PORT = "{port}"
"""The placeholder a command uses for the port it is given."""


class ServerError(RuntimeError):
    """The server exited or never answered; the message ends with the last lines of its log."""


def free_port() -> int:
    """A port the OS says is free now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def resident_peak_kb(pid: int) -> int:
    """VmHWM of `pid` and its live children, in kB (0 once they are gone)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            for kid in kids:
                out += [int(kid), *_children(int(kid))]
    except OSError:
        pass
    return out


@dataclass
class Server:
    """A running server: where it listens, its process, its log, and the peak memory seen so far."""

    url: str
    """`http://127.0.0.1:<port>` (no trailing slash, no `/v1`)."""
    port: int
    process: subprocess.Popen
    log: Path
    command: list[str]
    peak_kb: int = 0
    _stop_sampling: threading.Event = field(default_factory=threading.Event)

    @property
    def peak_memory_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)

    def get_json(self, path: str, timeout: float = 30) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: dict, timeout: float = 600) -> dict:
        return json.loads(self.post(path, body, timeout))

    def post(self, path: str, body: dict, timeout: float = 600) -> str:
        """POST `body` as JSON; the answer's text (some endpoints, vLLM's adapter loading, answer plain text)."""
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")

    def _sample(self, every: float) -> None:
        while not self._stop_sampling.wait(every):
            self.peak_kb = max(self.peak_kb, resident_peak_kb(self.process.pid))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux; elsewhere nothing)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit (so `finally` blocks stop the server), in the main thread, where Python delivers it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group, then SIGKILL after `grace` seconds; returns once the leader is reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Children that outlived the leader (or ignored SIGTERM) share its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


@contextlib.contextmanager
def served(
    command: Sequence[str],
    *,
    log: Path,
    ready_timeout: float = 300.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready: Callable[[str], bool] = _answers,
    sample_every: float = 0.5,
) -> Iterator[Server]:
    """Start `command` (each `{port}` replaced by a free port), wait until it answers, yield it, stop it."""
    port = free_port()
    argv = [part.replace(PORT, str(port)) for part in command]
    url = f"http://{HOST}:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    process: subprocess.Popen | None = None
    sampler: threading.Thread | None = None
    server: Server | None = None
    with _sigterm_unwinds():
        try:
            with open(log, "w", encoding="utf-8") as sink:
                process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
            server = Server(url, port, process, log, argv)
            sampler = threading.Thread(target=server._sample, args=(sample_every,), daemon=True)
            sampler.start()
            deadline = time.monotonic() + ready_timeout
            while not ready(url):
                if process.poll() is not None:
                    raise ServerError(f"{argv[0]} exited with status {process.returncode} before answering on {url}; "
                                      f"last lines of {log}:\n{log_tail(log)}")
                if time.monotonic() > deadline:
                    raise ServerError(f"{argv[0]} did not answer on {url} within {ready_timeout:.0f}s; "
                                      f"last lines of {log}:\n{log_tail(log)}")
                time.sleep(0.25)
            server.peak_kb = max(server.peak_kb, resident_peak_kb(process.pid))
            yield server
        finally:
            if server is not None:
                server.peak_kb = max(server.peak_kb, resident_peak_kb(server.process.pid))
                server._stop_sampling.set()
            if process is not None:
                stop(process)
            if sampler is not None:
                sampler.join(timeout=5)
