"""Waiting in a test for something another task or thread will do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HANG_S = 900.0
"""The one limit a test waits for anything: only a hang reaches it. Tests wait for events
(a line, a state, a port); how long those take on a busy machine decides nothing."""


async def eventually(cond: Callable[[], bool], timeout_s: float = HANG_S) -> None:
    """Return once ``cond()`` holds; AssertionError if it still doesn't after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s:g} s")
        await asyncio.sleep(0.002)
