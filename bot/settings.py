"""config.toml for a whole process: the engine's tables (read by the engine's own loader) and the
adapters' own (``[telegram]``, ``[discord]``, ``[api]``), each validated at start with a
message that names the key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.discord.settings import DiscordConfig, check_discord
from bot.http.settings import ApiConfig
from bot.telegram.settings import TelegramConfig, check_telegram
from engine.api import Config, build_dataclass, config_from_dict, read_toml

SECTIONS: Mapping[str, type] = {"telegram": TelegramConfig, "discord": DiscordConfig,
                                "api": ApiConfig}
"""The adapters' tables; every other one is the engine's."""


@dataclass(frozen=True)
class Settings:
    engine: Config
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    api: ApiConfig = field(default_factory=ApiConfig)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a config file; ConfigError with one line."""
    p = Path(path)
    return settings_from_dict(read_toml(p), base_dir=p.resolve().parent, name=str(p),
                              source=p.resolve())


def settings_from_dict(raw: Mapping[str, Any], *, base_dir: Path, name: str = "config.toml",
                       source: Path | None = None) -> Settings:
    engine = config_from_dict(raw, base_dir=base_dir, name=name, source=source,
                              adapter_sections=SECTIONS)
    settings = Settings(engine, **{
        key: build_dataclass(cls, raw.get(key, {}), where=f"{name}: [{key}]",
                             base_dir=base_dir) for key, cls in SECTIONS.items()})
    check_telegram(settings.telegram, name)
    check_discord(settings.discord, name)
    return settings
