"""The process lifecycle: build the engine, start adapters, stop them in order on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
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


HEARTBEAT_S = 15
HEARTBEAT_FILE = "heartbeat.json"


async def heartbeat(engine: Engine, adapters: list[str]) -> None:
    """Write ``<data_dir>/heartbeat.json`` every 15 s from the event loop: ``doppel health``
    (the container's health check) reads it, so a stuck loop shows as unhealthy."""
    path = engine.config.storage.data_dir / HEARTBEAT_FILE
    while True:
        state = {"time": time.time(), "pid": os.getpid(), "adapters": adapters,
                 "queued": sum(s["queued"] for s in engine.scheduler.stats().values())}
        tmp = path.with_suffix(".tmp")
        try:
            await asyncio.to_thread(tmp.write_text, json.dumps(state))
            await asyncio.to_thread(tmp.replace, path)
        except OSError as exc:  # a full disk must not stop the bot; health will say so
            log.warning("could not write the heartbeat: %s", exc)
        await asyncio.sleep(HEARTBEAT_S)


def health(config: Config, max_age_s: float = 3 * HEARTBEAT_S) -> tuple[bool, str]:
    """Is a ``doppel run`` alive on this data dir (a fresh heartbeat)?"""
    path = config.storage.data_dir / HEARTBEAT_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"no heartbeat at {path}: doppel run is not running (yet)"
    age = time.time() - float(state.get("time", 0))
    if age > max_age_s:
        return False, f"last heartbeat {age:.0f} s ago: the event loop is stuck or gone"
    return True, (f"alive: pid {state.get('pid')}, adapters {', '.join(state['adapters'])}, "
                  f"{state.get('queued', 0)} job(s) queued, heartbeat {age:.0f} s ago")


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

    def on_signal(name: str) -> None:
        if stop.is_set():  # the second signal: no more waiting
            log.warning("%s again: exiting now", name)
            os._exit(128 + (signal.SIGINT if name == "SIGINT" else signal.SIGTERM))
        log.info("%s: shutting down (a second one exits at once)", name)
        stop.set()

    def on_sigint() -> None:
        if not stop.is_set() and any(a.interrupt() for a in adapters):
            return
        on_signal("SIGINT")

    with contextlib.suppress(NotImplementedError):  # not available on Windows loops
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_signal, "SIGTERM")
    try:
        await engine.start(background_ingest=True)
        if config.voice.preload:
            engine.warm_speech()
        adapters = platform_adapters(config, engine) or [console(engine)]
        for adapter in adapters:
            await adapter.start()
            log.info("%s adapter started", adapter.name)
        closed: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(a.wait_closed() for a in adapters)))
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        beat = asyncio.create_task(heartbeat(engine, [a.name for a in adapters]))
        await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (closed, stopping, beat):
            waiter.cancel()
        await asyncio.gather(closed, stopping, beat, return_exceptions=True)
    finally:
        # In order: take nothing new, let running replies finish within the grace (then
        # cancel them, keeping their text), let adapters send their last words, close.
        for adapter in adapters:
            try:
                await adapter.pause()
            except Exception:
                log.exception("pausing the %s adapter failed", adapter.name)
        await engine.drain()
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
