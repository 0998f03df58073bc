"""Buttons and select menus: drawn with a ``custom_id`` of ``dp:ACTION:VALUE`` and routed
here from the interaction event to ``bot.actions``, so they work for any message, even
after a restart."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.actions import Press, is_brief, press
from bot.discord.context import DiscordContext
from bot.discord.press import PREFIX
from bot.discord.users import chat_key, server_key, user_ref
from bot.turn import story_turn
from engine.api import StoryRequest

log = logging.getLogger(__name__)


class ComponentHandler:
    def __init__(self, adapter: DiscordContext) -> None:
        self.adapter = adapter
        self.engine = adapter.engine

    async def handle(self, interaction: discord.Interaction[Any]) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        prefix, _, rest = str(data.get("custom_id", "")).partition(":")
        if prefix != PREFIX:
            return  # not ours
        action, _, value = rest.partition(":")
        chosen = [str(v) for v in data.get("values") or []]  # a select menu's choice
        brief = is_brief(action)
        await interaction.response.defer(thinking=not brief, ephemeral=False)
        await press(self.engine, self.adapter.press_view(interaction, brief=brief), Press(
            user_ref(interaction.user), action, value or (chosen[0] if chosen else ""),
            chat_key=chat_key(interaction.channel_id, interaction.guild_id),
            server=server_key(interaction.guild_id)))

    async def write_story(self, interaction: discord.Interaction[Any],
                          request: StoryRequest, *, photo: bytes | None = None) -> None:
        """Stream a new story (about ``photo``, when given) into follow-ups of the
        (deferred) interaction."""
        await story_turn(self.engine, self.adapter.press_view(interaction),
                         user_ref(interaction.user), request,
                         chat_key=chat_key(interaction.channel_id, interaction.guild_id),
                         photo=photo)
