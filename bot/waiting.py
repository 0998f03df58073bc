"""Waiting for the first of several things to happen (the others are then cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def until_first(*waits: Awaitable[Any]) -> None:
    """Run ``waits`` until the first ends (its error is raised); cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
