"""What the Discord commands and components need of the adapter: they take this protocol,
not the adapter class, so the three modules import in one direction (adapter -> commands
-> components -> context)."""

from __future__ import annotations

from typing import Any, Protocol

import discord
from discord import app_commands

from bot.discord.press import DiscordPressView
from bot.discord.stream import DiscordTurnView
from bot.ordering import Underway
from engine.api import Engine, Persona, UserRef, VoiceNote


class DiscordContext(Protocol):
    engine: Engine
    underway: Underway
    tree: app_commands.CommandTree[discord.Client]

    def allowed(self, user: discord.abc.User, guild_id: int | None,
                channel: object = None) -> bool: ...

    def is_admin(self, interaction: discord.Interaction[Any]) -> bool: ...

    async def persona_for(self, user: UserRef, channel_id: int | None,
                          guild_id: int | None) -> Persona: ...

    def view(self, channel: discord.abc.Messageable, reply_to: discord.Message | None = None,
             interaction: discord.Interaction[Any] | None = None, *,
             webhook: discord.Webhook | None = None,
             thread: discord.abc.Snowflake | None = None) -> DiscordTurnView: ...

    async def answer(self, channel: discord.abc.Messageable, author: discord.abc.User,
                     text: str, *, reply_to: discord.Message | None = None,
                     guild_id: int | None = None, spoken: bool = False,
                     interaction: discord.Interaction[Any] | None = None,
                     thread_of: int | None = None) -> None: ...

    async def send_voice(self, channel_id: int, note: VoiceNote) -> None: ...

    def press_view(self, interaction: discord.Interaction[Any], *,
                   brief: bool = False) -> DiscordPressView: ...
