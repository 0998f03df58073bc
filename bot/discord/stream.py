"""Deliver a streaming reply in Discord: paced edits, 2,000-character parts, typing."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import discord

from bot.split import split_message

log = logging.getLogger(__name__)

LIMIT = 2000


class Editable(Protocol):
    async def edit(self, **kwargs: Any) -> Any: ...


class Buttons(discord.ui.View):
    """Components that are only drawn: clicks are routed by ``custom_id`` in the adapter's
    interaction handler, so they keep working after a restart and no view piles up in
    discord.py's view store."""

    def __init__(self, *items: discord.ui.Item[Any]) -> None:
        super().__init__(timeout=None)
        for item in items:
            self.add_item(item)

    def is_dispatchable(self) -> bool:
        return False


def button(label: str, custom_id: str, *, emoji: str | None = None,
           style: discord.ButtonStyle = discord.ButtonStyle.secondary) -> discord.ui.Button[Any]:
    return discord.ui.Button(label=label, custom_id=custom_id[:100], emoji=emoji, style=style)


Send = Callable[[str, discord.ui.View | None], Awaitable[Editable]]


class StreamedReply:
    """Shows text as it arrives by editing one message at most every ``interval_s`` seconds
    (discord.py handles 429s; this keeps well under them), then splits the final text into
    messages of at most 2,000 characters; the buttons go on the last one."""

    def __init__(self, send: Send, *, interval_s: float = 1.0, prefix: str = "") -> None:
        """``prefix`` (e.g. the AI disclosure) goes above the text, in the same message."""
        self.send = send
        self.prefix = prefix
        self.interval_s = interval_s
        self.messages: list[Editable] = []
        self._shown = ""
        self._last_edit = 0.0

    async def pieces(self, source: AsyncIterable[str]) -> AsyncIterator[str]:
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
        preview = text[: LIMIT - 2] + " …" if len(text) > LIMIT else text
        if not self.messages:
            self.messages.append(await self.send(preview, None))
        elif preview != self._shown:
            await self._edit(self.messages[0], preview, None)
        self._shown = preview

    async def _edit(self, msg: Editable, text: str, view: discord.ui.View | None) -> None:
        try:
            await msg.edit(content=text, view=view)
        except discord.HTTPException as exc:
            log.warning("edit failed: %s", exc)

    async def finish(self, text: str, view: discord.ui.View | None = None) -> None:
        parts = split_message(self.prefix + text, LIMIT) or ["…"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0 and self.messages:
                await self._edit(self.messages[0], part, view if last else None)
            else:
                self.messages.append(await self.send(part, view if last else None))
