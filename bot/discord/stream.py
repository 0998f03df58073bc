"""Deliver a streaming reply in Discord: paced edits, 2,000-character parts, typing."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp
import discord

from bot.pacing import PacedReply
from bot.turn import Button
from engine.api import Picture, VoiceNote

log = logging.getLogger(__name__)

LIMIT = 2000
EMBED_LIMIT = 10
"""Embeds (and files) in one message."""
EMBED_TEXT_LIMIT = 4096


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


class Send(Protocol):
    """Posts a message of the turn (``extra``: embeds, files)."""

    def __call__(self, text: str, view: discord.ui.View | None,
                 **extra: Any) -> Awaitable[Editable]: ...


class StreamedReply(PacedReply[Editable]):
    """Shows text as it arrives by editing one message at most every ``interval_s`` seconds
    (discord.py handles 429s; this keeps well under them), then splits the final text into
    messages of at most 2,000 characters; the buttons go on the last one."""

    limit = LIMIT

    def __init__(self, send: Send, *, interval_s: float = 1.0) -> None:
        super().__init__(interval_s=interval_s)
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
        except Exception as exc:
            if not connection_gone(exc):
                raise
            log.warning("edit lost, the connection to Discord is closed: %s", exc)


def connection_gone(exc: BaseException) -> bool:
    """The HTTP session to Discord is closed or dropped (at shutdown): nothing can be sent,
    and nothing is wrong with the turn itself."""
    return isinstance(exc, aiohttp.ClientError | ConnectionError) or (
        isinstance(exc, RuntimeError) and "Session is closed" in str(exc))


def view_of(buttons: Sequence[Button]) -> Buttons | None:
    """Platform-free buttons drawn with ``custom_id`` ``dp:ACTION:VALUE``."""
    if not buttons:
        return None
    return Buttons(*(button(b.label, f"dp:{b.action}:{b.value}") for b in buttons))


class DiscordTurnView:
    """A turn rendered in a Discord channel or as follow-ups of an interaction."""

    def __init__(self, channel: discord.abc.Messageable, send: Send, *,
                 send_voice: Callable[[VoiceNote], Awaitable[None]], interval_s: float,
                 voice_caption: str = "") -> None:
        self.channel = channel
        self.interval_s = interval_s
        self.out = StreamedReply(send, interval_s=interval_s)
        self._send = send
        self._send_voice = send_voice
        self.voice_caption = voice_caption
        self._position: Any = None

    async def queued(self, position: int) -> None:
        text = f"You are #{position} in line."
        if self._position is None:
            self._position = await self.channel.send(text)
        else:
            with contextlib.suppress(discord.HTTPException):
                await self._position.edit(content=text)

    async def dequeued(self) -> None:
        if self._position is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._position.delete()
            self._position = None

    @contextlib.asynccontextmanager
    async def activity(self, voice: bool) -> AsyncIterator[None]:
        async with self.channel.typing():
            yield

    async def show(self, text: str) -> None:
        await self.out.update(text)

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        await self.out.finish(text, view_of(buttons))

    def title(self, text: str) -> str:
        return f"**{text}**"

    async def pictures(self, pictures: Sequence[Picture]) -> None:
        """Embeds with their pictures attached, ten to a message."""
        for start in range(0, len(pictures), EMBED_LIMIT):
            part = pictures[start:start + EMBED_LIMIT]
            embeds = [discord.Embed(description=pic.caption[:EMBED_TEXT_LIMIT] or None)
                      .set_image(url=f"attachment://{pic.filename}") for pic in part]
            files = [discord.File(io.BytesIO(pic.data), filename=pic.filename) for pic in part]
            await self._send("", None, embeds=embeds, files=files)

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        await self._send_voice(note)
        view = view_of(buttons)
        if view is not None:  # voice only: the buttons need a message of their own
            await self.channel.send(f"🔊 {self.voice_caption}".strip(), view=view)
