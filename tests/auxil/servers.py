"""Helpers for tests that start real servers on loopback (Redis, Chroma, llama.cpp), and a
base for the protocol stand-ins that a real ``doppel run`` process talks to."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

import httpx
from aiohttp import web

from tests.auxil.eventually import HANG_S

T = TypeVar("T")


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
               timeout: float = HANG_S) -> None:
    """Poll ``ready`` until it holds; fail at once if ``proc`` exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.05)


class LoopbackServer:
    """An aiohttp server on a free loopback port, run on a thread of its own so that tests
    can block on it while a separate process (``doppel run``) talks to it. Subclasses add
    their routes in ``routes``; ``with Server() as s:`` starts and stops it. Whatever the
    served process does can be waited for with ``wait_for`` (re-checked on every ``changed``).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(HANG_S), f"{type(self).__name__} did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop from the test's thread."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, what: Callable[[], T], timeout: float = HANG_S) -> T:
        """Block until ``what()`` is truthy (re-checked on each change and every second); the
        generous limit only guards against a hang, it decides nothing."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := what()):
                left = deadline - time.monotonic()
                assert left > 0, "the process never did what the test waited for"
                self._changed.wait(min(left, 1.0))
        return result
