"""Long exchanges in a thread of their own: at a person's ``thread_after``-th message in a
server channel, the persona opens a public thread from that message and the conversation
goes on there, where everything the person says is for the persona (no mention needed)
and the channel stays readable. Without the Create Public Threads permission the
conversation simply stays in the channel."""

from __future__ import annotations

import logging
from typing import Literal

import discord

log = logging.getLogger(__name__)

ARCHIVE_MINUTES: Literal[1440] = 1440


class PersonaThreads:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self.opened: dict[int, int] = {}
        """Threads opened in this run: thread id -> the channel it belongs to."""
        self.refused: set[int] = set()
        """Channels where opening a thread was refused (not tried again this run)."""

    def parent_of(self, channel: object, me: discord.abc.User) -> int | None:
        """The channel a persona's thread belongs to, when ``channel`` is one (opened in
        this run, or known from the gateway's cache after a restart)."""
        cid = getattr(channel, "id", None)
        if cid in self.opened:
            return self.opened[cid]
        if isinstance(channel, discord.Thread) and channel.owner_id == me.id:
            return channel.parent_id
        return None

    async def open(self, message: discord.Message, guild_id: int,
                   name: str) -> discord.PartialMessageable | None:
        """A public thread from ``message``, or None when the bot may not open one."""
        channel_id = message.channel.id
        if channel_id in self.refused:
            return None
        try:
            data = await self.client.http.start_thread_with_message(
                channel_id, message.id, name=name[:100],
                auto_archive_duration=ARCHIVE_MINUTES,
                reason="Doppel: a long conversation with the persona")
        except discord.HTTPException as exc:
            log.warning("no thread in channel %s (%s): the conversation stays there",
                        channel_id, exc)
            self.refused.add(channel_id)
            return None
        thread_id = int(data["id"])
        self.opened[thread_id] = channel_id
        return self.client.get_partial_messageable(
            thread_id, guild_id=guild_id, type=discord.ChannelType.public_thread)
