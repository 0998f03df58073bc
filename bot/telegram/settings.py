"""``[telegram]`` in config.toml: the Telegram adapter's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.api import ConfigError, bounded


@dataclass(frozen=True)
class TelegramConfig:
    token_env: str = "TELEGRAM_TOKEN"
    allowed_chats: tuple[int, ...] = ()
    allowed_users: tuple[int, ...] = ()
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    """Public HTTPS URL Telegram posts to, in webhook mode."""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = bounded(8443, min=1, max=65535)
    edit_interval_s: float = bounded(1.2, min=0.3)
    """Streaming replies are edited at most this often (Telegram rate limits)."""
    api_base: str = ""
    """A self-hosted Bot API server, e.g. ``http://127.0.0.1:8081``; empty: Telegram's own."""
    local_mode: bool = False
    """The self-hosted server runs with ``--local``: files up to 2 GB, read from its disk."""

    @property
    def max_download_mb(self) -> float:
        """The Bot API's getFile limit: 20 MB on Telegram's server, 2 GB on a local one."""
        return 2000.0 if self.local_mode else 20.0


def check_telegram(cfg: TelegramConfig, name: str) -> None:
    if cfg.api_base and not cfg.api_base.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: [telegram] api_base must be an http(s) URL, got "
                          f"{cfg.api_base!r}")
    if cfg.local_mode and not cfg.api_base:
        raise ConfigError(f"{name}: [telegram] local_mode needs api_base (your own Bot API "
                          "server started with --local)")
