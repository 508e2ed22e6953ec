"""Fixtures for the sandbox suites: things outside the sandbox that hostile code must not reach."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHILD_MARK = b"Code that runs on the *child* side"  # on the command line of every sandbox process


@pytest.fixture
def canary() -> Iterator[Path]:
    """A canary file in a world-writable directory, so file permissions alone do not protect it."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-canary-"))
    folder.chmod(0o777)
    file = folder / "canary.txt"
    file.write_text("still here")
    file.chmod(0o666)
    yield file
    assert file.read_text() == "still here", "the sandbox let code touch a file outside its directory"
    assert sorted(p.name for p in folder.iterdir()) == ["canary.txt"], "something was created beside the canary"
    shutil.rmtree(folder)


@pytest.fixture
def owner_only_secret() -> Iterator[tuple[Path, str]]:
    """A mode-600 file of the test's user (root on CI) holding a random secret: ``(path, secret)``."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-secret-"))
    folder.chmod(0o755)
    secret = f"SECRET-{secrets.token_hex(8)}"
    file = folder / "secret.txt"
    file.write_text(secret)
    file.chmod(0o600)
    yield file, secret
    shutil.rmtree(folder)


@pytest.fixture
def listener_port() -> Iterator[int]:
    """The port of a TCP listener on 127.0.0.1; teardown fails if anything connected to it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        yield server.getsockname()[1]
        with pytest.raises(TimeoutError):
            server.accept()


def processes_with(marker: bytes) -> list[int]:
    """Pids (other than ours) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture
def assert_none_left():
    """``assert_none_left(marker)``: fail if a process carrying ``marker`` outlives the run (2 s grace)."""
    return _assert_none_left


def _assert_none_left(marker: bytes = CHILD_MARK, grace_s: float = 2.0) -> None:
    deadline = time.monotonic() + grace_s
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == [], "a process outlived its sandbox"
