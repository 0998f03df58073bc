"""The process lifecycle: build the engine, start adapters, stop them in order on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from bot.base import Adapter
from engine.config import Config
from engine.engine import Engine

log = logging.getLogger(__name__)

AdapterFactory = Callable[[Engine], Adapter]


def platform_adapters(config: Config, engine: Engine) -> list[Adapter]:
    """Adapters whose token environment variable is set."""
    adapters: list[Adapter] = []
    token = os.environ.get(config.discord.token_env)
    if token:
        from bot.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(engine, config.discord, token))
    else:
        log.info("Discord adapter off: %s is not set", config.discord.token_env)
    token = os.environ.get(config.telegram.token_env)
    if token:
        from bot.telegram.adapter import TelegramAdapter

        adapters.append(TelegramAdapter(engine, config.telegram, token))
    else:
        log.info("Telegram adapter off: %s is not set", config.telegram.token_env)
    return adapters


async def run_app(
    config: Config,
    *,
    console: AdapterFactory,
    engine: Engine | None = None,
) -> int:
    """Run until a signal, or until every adapter has ended (the console user quit)."""
    engine = engine or Engine(config)
    adapters: list[Adapter] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        if any(a.interrupt() for a in adapters):
            return
        log.info("interrupted: shutting down")
        stop.set()

    def on_sigterm() -> None:
        log.info("SIGTERM: shutting down")
        stop.set()

    with contextlib.suppress(NotImplementedError):  # not available on Windows loops
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        await engine.start()
        adapters = platform_adapters(config, engine) or [console(engine)]
        for adapter in adapters:
            await adapter.start()
            log.info("%s adapter started", adapter.name)
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.gather(*(a.wait_closed() for a in adapters))),
            asyncio.ensure_future(stop.wait()),
        ]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    finally:
        for adapter in reversed(adapters):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping the %s adapter failed", adapter.name)
        await engine.stop()
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return 0
