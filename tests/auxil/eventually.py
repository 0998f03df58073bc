"""Waiting in a test for something another task or thread will do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Return once ``cond()`` holds; AssertionError if it still doesn't after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s:g} s")
        await asyncio.sleep(0.002)
