"""``doppel run``, ``chat``, ``serve`` and ``worker``: the commands that run a process
until it is told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from dataclasses import replace
from pathlib import Path

from bot.console.logs import log_to_file
from bot.settings import Settings
from engine.config import Config
from engine.lifecycle import open_engine
from engine.profile import MODEL

log = logging.getLogger(__name__)


async def chat(settings: Settings, persona: str | None, message: str | None,
                voice: bool, voice_in: Path | None) -> int:
    from bot.app import CHAT, run_app
    from bot.console import ConsoleAdapter

    speak = True if voice else None
    if message is None and voice_in is None:
        log_to_file(settings.engine.storage.data_dir)
        return await run_app(settings, surface=CHAT, console=lambda e: ConsoleAdapter(
            e, persona=persona, voice=speak))
    # SIGTERM or SIGHUP mid-reply: it stops, and what was written of it is stored (as a
    # cancelled reply) before the process ends, never left pending and empty.
    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    assert me is not None
    stopped: list[int] = []

    def stop(signum: int) -> None:
        stopped.append(signum)
        me.cancel()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop, sig)
    try:
        async with open_engine(settings.engine, MODEL) as engine:
            return await ConsoleAdapter(engine, persona=persona, voice=speak).run_once(
                message, voice_in=voice_in)
    except asyncio.CancelledError:
        if not stopped:
            raise
        print(f"doppel: stopped by {signal.Signals(stopped[0]).name}; what was written is "
              "kept", file=sys.stderr)
        return 128 + stopped[0]
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def run(settings: Settings) -> int:
    from bot.app import bots_configured, run_app
    from bot.console import ConsoleAdapter

    if not bots_configured(settings):
        if _no_input():  # a container or a service: nobody could type into a console chat
            log.info("no bot token set and no input to chat on: serving the web app and "
                     "the API alone")
            return await run_app(settings, console=None)
        log_to_file(settings.engine.storage.data_dir)  # the terminal is the person's
    return await run_app(settings, console=lambda e: ConsoleAdapter(e))


def _no_input() -> bool:
    """Whether standard input is /dev/null (``docker run`` without ``-i``, compose, a
    systemd service): a console chat there would end at once, and the process with it."""
    try:
        stdin, null = os.fstat(0), os.stat(os.devnull)
    except OSError:
        return True  # no standard input at all
    return stat.S_ISCHR(stdin.st_mode) and stdin.st_rdev == null.st_rdev


async def serve(settings: Settings, host: str | None, port: int | None) -> int:
    """``doppel run`` with the HTTP adapter alone: the web app and the API."""
    from bot.app import SERVE, run_app

    return await run_app(settings, console=None,
                         surface=replace(SERVE, host=host, port=port))


def worker(config: Config, name: str) -> int:
    """``doppel worker``: this machine's model ([llm] model_path, n_gpu_layers, ...) serving
    the bot's Redis queue until SIGTERM/SIGINT (the job in hand is finished first)."""
    from engine.llm.llama_cpp import LlamaCppBackend
    from engine.llm.remote import run_worker

    if not config.llm.redis_url:
        print("doppel: [llm] redis_url is not set", file=sys.stderr)
        return 2
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    backend = LlamaCppBackend(config.llm)
    backend.load()
    try:
        served = run_worker(config.llm, backend, name=name, stop=lambda: bool(stopping))
    finally:
        backend.close()
    log.info("worker stopped after %d job(s)", served)
    return 0
