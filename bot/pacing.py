"""A reply that grows in one message while it is written, then is split for the platform.

Shared by the chat adapters; each supplies how to send and edit a message and its length
limit. Edits are paced (at most one every ``interval_s``) so no platform is hammered.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Generic, TypeVar

from bot.split import split_message
from engine.records import ChatResult
from engine.voice.audio import VoiceNote

log = logging.getLogger(__name__)
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


async def stream_reply(engine: Any, reply: Any, out: PacedReply[Any], *, speak: bool,
                       voice_only: bool, user_key: str) -> tuple[ChatResult, VoiceNote | None]:
    """Run a chat reply to its end: shown live in ``out`` (unless it is to be voice only)
    and, with ``speak``, spoken sentence by sentence as it is written. Returns the result and
    the voice note (None when not spoken, or when speech failed: the text still stands)."""
    from engine.errors import DoppelError

    pieces: AsyncIterable[str] = reply if speak and voice_only else out.pieces(reply)
    note: VoiceNote | None = None
    if speak:
        try:
            note = (await engine.voice.speak_stream(pieces, user=user_key,
                                                    persona=reply.persona)).note
        except DoppelError as exc:
            log.info("no voice note: %s", exc)
    else:
        async for _ in pieces:
            pass
    return await reply.result(), note
