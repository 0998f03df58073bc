"""A reply that grows in one message while it is written, then is split for the platform.

Shared by the chat adapters' turn views; each supplies how to send and edit a message and
its length limit. When to show what is the turn driver's decision (``bot/turn.py``).
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Generic, TypeVar

from bot.split import split_message

log = logging.getLogger(__name__)
M = TypeVar("M")  # a sent message, as the platform library returns it


class PacedReply(abc.ABC, Generic[M]):
    limit: int

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self.messages: list[M] = []
        self._shown = ""

    @abc.abstractmethod
    async def _send(self, text: str, buttons: Any = None) -> M:
        """Post a new message (and append it to ``self.messages``)."""

    @abc.abstractmethod
    async def _edit(self, message: M, text: str, buttons: Any = None) -> None:
        """Replace a message's text; a refused edit is logged, not raised."""

    async def update(self, text: str) -> None:
        """Show ``text`` in the live message (cut with " …" past the platform's limit)."""
        preview = text[: self.limit - 2] + " …" if len(text) > self.limit else text
        if not self.messages:
            await self._send(preview)
        elif preview != self._shown:
            await self._edit(self.messages[0], preview)
        self._shown = preview

    async def finish(self, text: str, buttons: Any = None) -> None:
        """The final text, in parts within the limit; the buttons go on the last part."""
        parts = split_message(text, self.limit) or ["…"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0 and self.messages:
                await self._edit(self.messages[0], part, buttons if last else None)
            else:
                await self._send(part, buttons if last else None)
