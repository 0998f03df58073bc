"""Per-chat order with concurrency across chats.

Updates of different chats run at once (the engine's scheduler decides who gets the model
first). Within one chat, each update starts only once the previous one was *admitted*: its
turn is queued in the engine (which then answers that user's turns in order) or it ended. A
flood therefore reaches the engine's rate limit at once instead of waiting behind whole
replies, and ``/cancel`` or a button, which bypass the order, never wait at all.

``Underway`` keeps the turns under way, so that ``/cancel`` and a stop can wait for a stopped
turn's last words.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Iterator
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


LAST_WORDS_S = 15.0
"""How long ``/cancel`` and an adapter's stop wait for stopped turns to show it."""

_underway: contextvars.ContextVar[Underway | None] = contextvars.ContextVar(
    "doppel_underway", default=None)


class Underway:
    """The turns an adapter has under way, by person: ``/cancel`` waits for the ones it
    stopped to show that they stopped before it says so, and the adapter's stop waits for
    their last words before it disconnects.

    ``track()`` in a task makes the turns started in it (and in the tasks it starts: they
    copy the context) count here; ``bot.turn`` marks each turn with ``turn_of``."""

    def __init__(self) -> None:
        self._turns: dict[str, set[asyncio.Future[None]]] = {}

    def track(self) -> None:
        _underway.set(self)

    @contextlib.contextmanager
    def turn(self, user: str) -> Iterator[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.setdefault(user, set()).add(done)
        try:
            yield
        finally:
            done.set_result(None)
            mine = self._turns.get(user, set())
            mine.discard(done)
            if not mine:
                self._turns.pop(user, None)

    async def ended(self, wait_s: float, user: str | None = None) -> None:
        """Wait (at most ``wait_s``) until the turns under way now (``user``'s, or
        everyone's) ended."""
        turns = {t for who, mine in self._turns.items() if user in (None, who) for t in mine}
        if turns:
            await asyncio.wait(turns, timeout=wait_s)


def turn_of(user: str) -> contextlib.AbstractContextManager[None]:
    """Mark a turn of ``user`` under way in the adapter that tracks this task (none: a
    no-op)."""
    underway = _underway.get()
    return underway.turn(user) if underway is not None else contextlib.nullcontext()
