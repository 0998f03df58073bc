"""Helpers for tests that start real servers on loopback (Redis, Chroma, llama.cpp)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    """Does ``url`` answer 200 (False while the server is not listening yet)?"""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
               timeout: float = 60) -> None:
    """Poll ``ready`` until it holds; fail at once if ``proc`` exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.05)
