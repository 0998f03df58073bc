"""One ``doppel run`` process hosts every adapter on one engine: Telegram (the Bot API
stand-in), Discord (the gateway stand-in) and the web app (in Chromium) at once. A person
talks in Telegram, asks ``/web``, opens the link while the bot keeps running and finds that
conversation in the web app; a story favourited in the browser is listed by
``/favourites`` in Telegram; SIGTERM stops it all, in order."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.auxil.bot_api import TOKEN as TELEGRAM_TOKEN
from tests.auxil.bot_api import BotApi
from tests.auxil.discord_gateway import TOKEN as DISCORD_TOKEN
from tests.auxil.discord_gateway import DiscordStandIn
from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import CALM, STORY, FakeLLMServer
from tests.auxil.servers import free_port
from tests.bot.discord.test_process import finished as discord_finished
from tests.bot.telegram.test_process import finished, polling
from tests.bot.test_console import doppel, doppel_env
from tests.bot.web.browser import (
    chromium_hearing,
    last_reply,
    page_of,
    shot,
    write_and_favourite,
)
from tests.conftest import ROOT

ANN, BOB = 7001, 7100
TITLE = STORY.split("\n", 1)[0]


@pytest.fixture
def stand_ins() -> Iterator[tuple[BotApi, DiscordStandIn, FakeLLMServer]]:
    with BotApi() as tg, DiscordStandIn() as dc, FakeLLMServer(token_delay_s=0.01) as llm:
        yield tg, dc, llm


def start(tmp: Path, tg: BotApi, dc: DiscordStandIn, llm: FakeLLMServer,
          port: int) -> subprocess.Popen[bytes]:
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'[storage]\ndata_dir = "{tmp / "data"}"\n'
        f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
        f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\nmax_tokens = 60\n'
        '[engine]\nshutdown_grace_s = 2\n'
        '[memory]\nauto_ingest = false\n'
        f'[api]\nport = {port}\n'
        f'[telegram]\napi_base = "{tg.base}"\nedit_interval_s = 0.3\n'
        f'[discord]\napi_base = "{dc.api_base}"\ngateway_url = "{dc.gateway_url}"\n'
        'edit_interval_s = 0.3\n')
    log = (tmp / "run.log").open("wb")  # a file: a pipe nobody reads would fill and stall it
    return subprocess.Popen(doppel("--config", str(cfg), "run"), cwd=ROOT,
                            env=doppel_env(TELEGRAM_TOKEN=TELEGRAM_TOKEN,
                                           DISCORD_TOKEN=DISCORD_TOKEN),
                            stdout=subprocess.DEVNULL, stderr=log)


def link_in(tg: BotApi, chat: int) -> str | None:
    found = [m for t in tg.texts(chat) if (m := re.search(r"http://\S+/login/\S+", t))]
    return found[-1].group(0) if found else None


def test_telegram_discord_and_the_web_app_in_one_process(
        tmp_path: Path, stand_ins: tuple[BotApi, DiscordStandIn, FakeLLMServer]) -> None:
    tg, dc, llm = stand_ins
    port = free_port()
    proc = start(tmp_path, tg, dc, llm, port)
    log = tmp_path / "run.log"
    try:
        polling(tg, proc)
        dc.wait_for(lambda: dc.identified.is_set())
        tg.say(ANN, "How is the rent roll looking?", name="Ann")
        dc.dm(BOB, "Tell me about your week")  # at the same time, on the other platform
        tg.wait_for(partial(finished, tg, ANN))
        assert CALM in dc.wait_for(partial(discord_finished, dc, BOB + 1))[-1]
        tg.say(ANN, "/web", name="Ann")
        link = tg.wait_for(partial(link_in, tg, ANN))
        assert link is not None and link.startswith(f"http://127.0.0.1:{port}/login/")

        with chromium_hearing(b"", tmp_path) as chromium:
            page: Any = page_of(chromium, viewport={"width": 1100, "height": 800})
            page.goto(link)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Chat").wait_for()
            # The conversation held in Telegram is the web app's history.
            messages = page.locator("#messages")
            messages.get_by_text("How is the rent roll looking?").wait_for()
            messages.get_by_text(CALM).first.wait_for()
            shot(page, "one_process_history")

            write_and_favourite(page, TITLE)
            last = len(tg.texts(ANN))
            tg.say(ANN, "/favourites", name="Ann")
            tg.wait_for(lambda: any(TITLE in t for t in tg.texts(ANN)[last:]))
            # The bot is still answering while the browser is open.
            page.get_by_role("tab", name="Chat").click()
            page.get_by_label("Message").fill("And the bridge?")
            page.get_by_role("button", name="Send").click()
            assert CALM in last_reply(page).locator(".text").inner_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=HANG_S)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    # Stopped in order: the bots before the web app they link to, then the engine.
    order = [m.group(1) or "engine" for m in re.finditer(
        r"(\w+) adapter stopped|engine stopped", text)]
    assert order == ["telegram", "discord", "http", "engine"], text
