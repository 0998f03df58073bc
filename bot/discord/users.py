"""Who and where, from a Discord message or interaction."""

from __future__ import annotations

import discord

from engine.api import UserRef


def user_ref(user: discord.abc.User) -> UserRef:
    return UserRef("discord", str(user.id), user.display_name)


def chat_key(channel_id: int | None, guild_id: int | None) -> str:
    """Empty for a DM; the channel otherwise (conversations are per channel)."""
    return "" if guild_id is None else f"dc:{channel_id}"


def server_key(guild_id: int | None) -> str:
    return "" if guild_id is None else f"discord:{guild_id}"
