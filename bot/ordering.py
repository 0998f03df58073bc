"""Per-chat order with concurrency across chats.

Updates of different chats run at once (the engine's scheduler decides who gets the model
first). Within one chat, each update starts only once the previous one was *admitted*: its
turn is queued in the engine (which then answers that user's turns in order) or it ended. A
flood therefore reaches the engine's rate limit at once instead of waiting behind whole
replies, and ``/cancel`` or a button, which bypass the order, never wait at all.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_admission: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar(
    "doppel_admission", default=None)


def admitted() -> None:
    """The running update's turn is queued in the engine: the chat's next update may start.
    (A no-op outside ``ChatOrder.run``.)"""
    event = _admission.get()
    if event is not None:
        event.set()


class ChatOrder:
    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Event] = {}

    def waiting(self, key: str) -> bool:
        return key in self._tails

    async def run(self, key: str, work: Awaitable[T]) -> T:
        """Await ``work`` once the chat's previous update was admitted or ended."""
        before = self._tails.get(key)
        mine = asyncio.Event()
        self._tails[key] = mine
        task: asyncio.Future[T] | None = None
        try:
            if before is not None:
                await before.wait()
            token = _admission.set(mine)
            try:
                task = asyncio.ensure_future(work)  # the task copies the context: ``mine``
            finally:
                _admission.reset(token)
            return await task
        except BaseException:
            if task is None and asyncio.iscoroutine(work):
                work.close()  # cancelled while waiting its turn: it never starts
            raise
        finally:
            mine.set()
            if self._tails.get(key) is mine:
                del self._tails[key]
