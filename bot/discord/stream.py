"""Deliver a streaming reply in Discord: paced edits, 2,000-character parts, typing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord

from bot.pacing import PacedReply

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


class StreamedReply(PacedReply[Editable]):
    """Shows text as it arrives by editing one message at most every ``interval_s`` seconds
    (discord.py handles 429s; this keeps well under them), then splits the final text into
    messages of at most 2,000 characters; the buttons go on the last one."""

    limit = LIMIT

    def __init__(self, send: Send, *, interval_s: float = 1.0, prefix: str = "") -> None:
        super().__init__(interval_s=interval_s, prefix=prefix)
        self.send = send

    async def _send(self, text: str, buttons: discord.ui.View | None = None) -> Editable:
        msg = await self.send(text, buttons)
        self.messages.append(msg)
        return msg

    async def _edit(self, message: Editable, text: str,
                    buttons: discord.ui.View | None = None) -> None:
        try:
            await message.edit(content=text, view=buttons)
        except discord.HTTPException as exc:
            log.warning("edit failed: %s", exc)
