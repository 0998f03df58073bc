"""A reply that grows in one message while it is written, then is split for the platform.

Shared by the chat adapters; each supplies how to send and edit a message and its length
limit. Edits are paced (at most one every ``interval_s``) so no platform is hammered.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Generic, TypeVar

from bot.split import split_message
from engine.records import ChatResult

M = TypeVar("M")  # a sent message, as the platform library returns it


class PacedReply(abc.ABC, Generic[M]):
    limit: int

    def __init__(self, *, interval_s: float, prefix: str = "") -> None:
        """``prefix`` (e.g. the AI disclosure) goes above the text, in the same message."""
        self.interval_s = interval_s
        self.prefix = prefix
        self.messages: list[M] = []
        self._shown = ""
        self._last_edit = 0.0

    @abc.abstractmethod
    async def _send(self, text: str, buttons: Any = None) -> M:
        """Post a new message (and append it to ``self.messages``)."""

    @abc.abstractmethod
    async def _edit(self, message: M, text: str, buttons: Any = None) -> None:
        """Replace a message's text; a refused edit is logged, not raised."""

    async def pieces(self, source: AsyncIterable[str]) -> AsyncIterator[str]:
        """Pass the pieces through, updating the live message on the way."""
        text = ""
        async for piece in source:
            text += piece
            yield piece
            now = time.monotonic()
            if now - self._last_edit >= self.interval_s and text.strip():
                await self.update(text)
                self._last_edit = now

    async def update(self, text: str) -> None:
        text = self.prefix + text
        preview = text[: self.limit - 2] + " …" if len(text) > self.limit else text
        if not self.messages:
            await self._send(preview)
        elif preview != self._shown:
            await self._edit(self.messages[0], preview)
        self._shown = preview

    async def finish(self, text: str, buttons: Any = None) -> None:
        """The final text, in parts within the limit; the buttons go on the last part."""
        parts = split_message(self.prefix + text, self.limit) or ["…"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0 and self.messages:
                await self._edit(self.messages[0], part, buttons if last else None)
            else:
                await self._send(part, buttons if last else None)


def reply_body(result: ChatResult) -> str:
    """A finished chat reply as shown: its text, why it ended early, its sources."""
    body = result.text or ""
    if result.error is not None:
        body = (body + "\n\n" if body else "") + result.error.user_message
    if result.sources:
        body += "\n\n" + "\n".join(h.citation(n) for n, h in enumerate(result.sources, 1))
    return body
