"""Personas as themselves in server channels: a channel webhook per persona, named and
pictured as the persona (``[persona] avatar``), made once and reused. Without the Manage
Webhooks permission the bot answers as itself, and says so once per server."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import utils

from engine.api import Persona

log = logging.getLogger(__name__)

NEEDS_PERMISSION = ("(I can answer as {name}, with their own name and picture, once I "
                    "have the Manage Webhooks permission in this channel.)")


class PersonaWebhooks:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._hooks: dict[tuple[int, str], discord.Webhook | None] = {}
        self.told: set[int] = set()
        """Servers told about the missing permission (once each)."""

    async def get(self, channel_id: int, persona: Persona) -> tuple[discord.Webhook | None,
                                                                    bool]:
        """The persona's webhook in the channel, and whether the permission is missing."""
        key = (channel_id, persona.name)
        if key in self._hooks:
            return self._hooks[key], False
        http = self.client.http
        name = persona.display_name[:80]
        try:
            found: Any = next((h for h in await http.channel_webhooks(channel_id)
                               if h.get("name") == name and h.get("token")
                               and str(h.get("application_id")) == str(
                                   self.client.application_id)), None)
            if found is None:
                avatar = persona.profile.avatar
                picture = (utils._bytes_to_base64_data(avatar.read_bytes())
                           if avatar is not None else None)
                found = await http.create_webhook(  # the data URI, as TextChannel passes it
                    channel_id, name=name, reason=f"Doppel persona {persona.name}",
                    avatar=picture)  # type: ignore[arg-type]
        except discord.Forbidden:
            log.warning("no Manage Webhooks in channel %s: %s answers as the bot",
                        channel_id, persona.display_name)
            self._hooks[key] = None
            return None, True
        except discord.HTTPException as exc:
            log.warning("no webhook in channel %s (%s): answering as the bot", channel_id, exc)
            self._hooks[key] = None
            return None, False
        hook = discord.Webhook.from_state(found, state=self.client._connection)
        self._hooks[key] = hook
        return hook, False
