"""The web app's test rig: the real ``doppel serve`` process on a free port and Debian's
Chromium (driven by Playwright) whose fake microphone plays a WAV."""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright import sync_api as playwright

from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import FakeLLMServer
from tests.auxil.servers import answers, free_port, wait_until
from tests.bot.test_console import doppel, doppel_env
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium: ``.ci/setup --dev`` installs it (as root; else ``apt-get install
chromium``). Without it these tests fail, saying so: they are how the web app is tested."""
SHOTS = ROOT / "tests" / "screenshots"
SPOKEN = "Please tell me about the rent roll for the apartments."
"""What the browser's fake microphone says (the ``chromium`` fixture)."""
WAIT_MS = HANG_S * 1000


class Doppel:
    """A ``doppel serve`` process on a free port, over one data dir (restartable)."""

    def __init__(self, tmp: Path, llm: FakeLLMServer, extra: str = "") -> None:
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[storage]\ndata_dir = "{tmp / "data"}"\n'
            f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
            f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\nmax_tokens = 60\n'
            '[memory]\nauto_ingest = false\n'
            '[engine]\nadmins = ["telegram:7001"]\n'
            f'[api]\nport = {self.port}\n' + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.tmp / "serve.log"  # a file: a pipe nobody reads would fill and stall it
        with log.open("ab") as out:
            self.proc = subprocess.Popen(doppel("--config", str(self.config), "serve"),
                                         cwd=ROOT, env=doppel_env(),
                                         stdout=subprocess.DEVNULL, stderr=out)
        proc = self.proc

        def up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            return answers(f"{self.url}/health")

        wait_until(up, proc, "doppel serve")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=HANG_S)
        self.proc = None

    def link(self, user: str) -> str:
        """A sign-in link made the operator's way (``doppel web-login``), beside the server."""
        out = subprocess.run(doppel("--config", str(self.config), "web-login", user),
                             cwd=ROOT, env=doppel_env(), capture_output=True, text=True,
                             timeout=HANG_S, check=True).stdout
        found = re.search(r"http://\S+/login/\S+", out)
        assert found, out
        return found.group(0).replace("http://127.0.0.1:8000", self.url)

    def db(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.tmp / "data" / "doppel.db") as conn:
            return conn.execute(sql).fetchall()


@contextlib.contextmanager
def chromium_hearing(wav: bytes, folder: Path) -> Iterator[Any]:
    """Debian's Chromium, headless, whose microphone plays ``wav`` over and over."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    microphone = folder / "microphone.wav"
    microphone.write_bytes(wav)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}"])
        yield browser
        browser.close()


def page_of(chromium: Any, **options: Any) -> Any:
    context = chromium.new_context(**options)
    context.grant_permissions(["microphone"])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, server: Doppel, user: str) -> None:
    page.goto(server.link(user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/")
    page.get_by_role("tab", name="Chat").wait_for()


def write_and_favourite(page: Any, title: str, idea: str = "a kite that wants to fly") -> None:
    """Write a story in the Stories tab and favourite it, waiting for each step to show."""
    page.get_by_role("tab", name="Stories").click()
    page.get_by_label("What happens").fill(idea)
    page.get_by_role("button", name="Write the story").click()
    story = page.locator("#story-output")
    story.get_by_role("heading", name=title).wait_for()
    story.get_by_role("button", name="Favourite").click()
    story.locator('button[aria-pressed="true"]', has_text="Favourite").wait_for()


def last_reply(page: Any) -> Any:
    """The newest reply, once finished: the conversation's last message, no longer being
    written, with its buttons (replies from the history have theirs too)."""
    newest = page.locator("#messages > li.msg.assistant:last-child:not([aria-busy])")
    newest.locator(".actions").wait_for()
    return newest
