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
from dataclasses import dataclass

from bot.base import Adapter
from bot.settings import Settings
from bot.waiting import until_first
from engine.api import SERVER, Config, Engine, LLMBackend, open_engine

log = logging.getLogger(__name__)

AdapterFactory = Callable[[Engine], Adapter]


def bots_configured(config: Settings) -> bool:
    """Whether a bot's token is set (else ``doppel run`` opens the console chat)."""
    return any(os.environ.get(env) for env in (config.discord.token_env,
                                                config.telegram.token_env))


def platform_adapters(config: Settings, engine: Engine) -> list[Adapter]:
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


@dataclass(frozen=True)
class Surface:
    """Which adapters a process runs: ``doppel run`` every one that config.toml turns on
    (the console when no bot token is set); ``doppel serve`` the HTTP ones alone;
    ``doppel chat`` the console alone."""

    bots: bool = True
    """Telegram and Discord, where their tokens are set."""
    http: bool = True
    """The web app and the API, as ``[api]`` says..."""
    api: bool = False
    """...the API even where ``[api] enabled`` is off (``doppel serve``)."""
    host: str | None = None
    port: int | None = None


CHAT = Surface(bots=False, http=False)
SERVE = Surface(bots=False, api=True)


def adapters_for(config: Settings, engine: Engine, console: AdapterFactory | None,
                 surface: Surface = Surface()) -> list[Adapter]:
    """The HTTP adapter first (a bot's /web link works from its first answer), then the
    bots, or the console when there is none."""
    adapters: list[Adapter] = []
    api = config.api.enabled or surface.api
    if surface.http and (api or config.api.web_app):
        from bot.http.server import HttpAdapter

        adapters.append(HttpAdapter(engine, config.api, host=surface.host, port=surface.port,
                                    api=api, web=config.api.web_app))
    if surface.api and not os.environ.get(config.api.key_env):
        log.warning("%s is not set: the web app, /health and user keys (`doppel "
                    "api-token create`) are served; metrics and key management need it",
                    config.api.key_env)
    bots = platform_adapters(config, engine) if surface.bots else []
    if not bots and console is not None:
        bots = [console(engine)]
    return adapters + bots


HEARTBEAT_S = 15
HEARTBEAT_FILE = "heartbeat.json"


async def heartbeat(engine: Engine, adapters: list[str]) -> None:
    """Write ``<data_dir>/heartbeat.json`` every 15 s from the event loop: ``doppel health``
    (the container's health check) reads it, so a stuck loop shows as unhealthy."""
    path = engine.data_dir / HEARTBEAT_FILE
    while True:
        state = {"time": time.time(), "pid": os.getpid(), "adapters": adapters,
                 "queued": engine.status().queued}
        tmp = path.with_suffix(".tmp")
        try:
            await asyncio.to_thread(tmp.write_text, json.dumps(state))
            await asyncio.to_thread(tmp.replace, path)
        except OSError as exc:  # a full disk must not stop the bot; health will say so
            log.warning("could not write the heartbeat: %s", exc)
        await asyncio.sleep(HEARTBEAT_S)


STORAGE_CHECK_S = 2


async def storage_lost(engine: Engine) -> str:
    """Returns (what is wrong) once the engine's storage cannot be trusted (the database
    file deleted or replaced under the process): the process ends then, non-zero, rather
    than take in what it would lose."""
    while True:  # a file's state has no event to wait for: it is looked at
        if problem := engine.status().problem:
            return problem
        await asyncio.sleep(STORAGE_CHECK_S)


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


async def _until_ended(adapters: list[Adapter]) -> None:
    """Returns when an adapter that ends the run ended (the console user quit), or when
    every adapter ended on its own."""
    waiters = {asyncio.ensure_future(a.wait_closed()): a for a in adapters}
    try:
        pending = set(waiters)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(waiters[w].ends_run for w in done):
                return
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def run_app(
    config: Settings,
    *,
    console: AdapterFactory | None,
    surface: Surface = Surface(),
    llm: LLMBackend | None = None,
) -> int:
    """Run until a signal, or until the console user quit (or every adapter ended);
    ``llm``: a backend instead of the configured one (tests)."""
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
        # The terminal closed under the console chat: as SIGTERM (what was written stays).
        loop.add_signal_handler(signal.SIGHUP, on_signal, "SIGHUP")
    try:
        async with open_engine(config.engine, SERVER, llm=llm) as engine:
            try:
                code = await _serve(config, engine, adapters, console, surface, stop)
            finally:
                await _shut_down(engine, adapters)
    finally:
        with contextlib.suppress(NotImplementedError):
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    return code


async def _serve(config: Settings, engine: Engine, adapters: list[Adapter],
                 console: AdapterFactory | None, surface: Surface, stop: asyncio.Event) -> int:
    """Start the adapters (into ``adapters``, as each starts) and wait for the end: 0, or
    1 when the engine's storage was lost meanwhile."""
    if engine.preloads_speech:
        engine.warm_speech()
    for adapter in adapters_for(config, engine, console, surface):
        await adapter.start()
        adapters.append(adapter)
        log.info("%s adapter started", adapter.name)
    beat = asyncio.create_task(heartbeat(engine, [a.name for a in adapters]))
    lost = asyncio.create_task(storage_lost(engine))
    try:
        await until_first(_until_ended(adapters), stop.wait(), lost)
    finally:
        for task in (beat, lost):
            task.cancel()
        await asyncio.gather(beat, lost, return_exceptions=True)
    if lost.done() and not lost.cancelled():
        log.critical("stopping: %s", lost.result())
        return 1
    return 0


async def _shut_down(engine: Engine, adapters: list[Adapter]) -> None:
    """In order: take nothing new, let running replies finish within the grace (then
    cancel them, keeping their text), let adapters send their last words, close (the
    engine stops after this)."""
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
        else:
            log.info("%s adapter stopped", adapter.name)
