"""``[discord]`` in config.toml: the Discord adapter's settings."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api import ConfigError, bounded


@dataclass(frozen=True)
class DiscordConfig:
    token_env: str = "DISCORD_TOKEN"
    allowed_guilds: tuple[int, ...] = ()
    """Servers the bot answers in; empty: every server it is in."""
    allowed_channels: tuple[int, ...] = ()
    """Channels (and their threads) where mentioning the bot chats; empty: all channels."""
    allowed_users: tuple[int, ...] = ()
    """Users the bot answers at all; empty: everyone."""
    admin_role: str = ""
    """Name or id of the role that may run admin commands (server persona, voices);
    members with the Manage Server permission always may."""
    edit_interval_s: float = bounded(1.0, min=0.2)
    """Streaming replies are edited at most this often."""
    sharded: bool = False
    """Use AutoShardedClient (for bots in very many servers)."""
    sync_commands: bool = True
    """Register the slash commands with Discord at start."""
    api_base: str = ""
    """REST API base URL; empty: Discord's own. Set it to route calls through a proxy
    (e.g. ``http://127.0.0.1:3000/api/v10`` for a twilight-http-proxy)."""
    gateway_url: str = ""
    """Gateway WebSocket URL; empty: Discord's own. Set it for a gateway proxy."""
    message_content: bool = False
    """Ask for the privileged Message Content intent (enable it in the Developer Portal
    first). Not needed for DMs, mentions and replies to the bot."""
    persona_webhooks: bool = True
    """In server channels, reply under the persona's own name and avatar through a channel
    webhook (needs the Manage Webhooks permission; without it, the bot's own identity)."""
    thread_after: int = bounded(4, min=0)
    """In a server channel, the persona takes a person's conversation into a thread of its
    own at their this-many-th message (where everything they say is for the persona, no
    mention needed); 0: never. Needs the Create Public Threads permission; without it the
    conversation stays in the channel."""


def check_discord(cfg: DiscordConfig, name: str) -> None:
    if cfg.gateway_url and not cfg.gateway_url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{name}: [discord] gateway_url must be a ws(s):// URL, got "
                          f"{cfg.gateway_url!r}")
