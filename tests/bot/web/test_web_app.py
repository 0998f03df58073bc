"""The web app as a person meets it: the real ``doppel serve`` process, the fake
OpenAI-compatible model server at the model boundary (everything else real: SQLite,
Piper, Whisper), and Debian's Chromium driven by Playwright. Chromium's fake microphone
plays a WAV spoken by Piper.

Every step waits for what the page shows (Playwright's waits, the HANG_S limit only for
a hang); screenshots go to tests/screenshots/.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright

from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import CALM, STORY, FakeLLMServer
from tests.auxil.servers import answers, free_port, wait_until
from tests.auxil.speech import speech_seconds, speech_wav, words_heard
from tests.bot.test_console import doppel, doppel_env
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium: ``.ci/setup --dev`` installs it (as root; else ``apt-get install
chromium``). Without it these tests fail, saying so: they are how the web app is tested."""
SHOTS = ROOT / "tests" / "screenshots"
WAIT_MS = HANG_S * 1000
SPOKEN = "Please tell me about the rent roll for the apartments."
TITLE = STORY.split("\n", 1)[0]


class Doppel:
    """A ``doppel serve`` process on a free port, over one data dir (restartable)."""

    def __init__(self, tmp: Path, llm: FakeLLMServer) -> None:
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[storage]\ndata_dir = "{tmp / "data"}"\n'
            f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
            f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\nmax_tokens = 60\n'
            '[memory]\nauto_ingest = false\n'
            '[engine]\nadmins = ["telegram:7001"]\n'
            f'[api]\nport = {self.port}\n')
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


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wav = tmp_path_factory.mktemp("mic") / "question.wav"
    wav.write_bytes(speech_wav(SPOKEN))
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"])
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Doppel, FakeLLMServer]]:
    with FakeLLMServer(token_delay_s=0.05) as llm:
        server = Doppel(tmp_path, llm)
        server.start()
        try:
            yield server, llm
        finally:
            if server.proc is not None:
                server.stop()


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


def last_reply(page: Any) -> Any:
    """The newest finished reply (it has its buttons)."""
    page.locator(".msg.assistant .actions").last.wait_for()
    return page.locator(".msg.assistant").last


def test_sign_in_chat_story_favourite_offline_then_forget(
        chromium: Any, served: tuple[Doppel, FakeLLMServer]) -> None:
    server, _ = served
    stranger = page_of(chromium)
    stranger.goto(server.url)
    stranger.get_by_role("heading", name="Sign in to Doppel").wait_for()

    page = page_of(chromium, viewport={"width": 1100, "height": 800})
    sign_in(page, server, "telegram:7001")
    # The reply streams: the bubble shows the reply growing before it is finished.
    page.evaluate("""() => { window.seen = [];
        new MutationObserver(() => { const t = document.querySelector(
            '.msg.assistant:last-child .text'); if (t) window.seen.push(t.textContent); })
          .observe(document.querySelector('#messages'),
                   {childList: true, subtree: true, characterData: true}); }""")
    page.get_by_label("Message").fill("How is the rent roll looking?")
    page.get_by_role("button", name="Send").click()
    reply = last_reply(page)
    text = reply.locator(".text").inner_text()
    assert text.endswith(CALM)  # after the AI disclosure, on the first reply
    growing = [t for t in page.evaluate("window.seen")
               if t not in ("…", text) and "in line" not in t]
    assert growing and all(CALM.startswith(t.split("\n\n")[-1]) for t in growing)
    reply.get_by_role("button", name="Good").click()
    page.get_by_text("Thanks: noted.").wait_for()
    assert server.db("SELECT good FROM ratings") == [(1,)]
    shot(page, "web_chat")

    page.get_by_role("tab", name="Stories").click()
    page.get_by_label("What happens").fill("a kite that wants to fly")
    page.get_by_role("button", name="Write the story").click()
    story = page.locator("#story-output")
    story.get_by_role("heading", name=TITLE).wait_for()
    story.get_by_role("button", name="Favourite").click()
    story.locator('button[aria-pressed="true"]', has_text="Favourite").wait_for()
    history = page.locator("#history")
    history.get_by_role("heading", name="Today").wait_for()
    history.get_by_role("button", name=f"Open {TITLE}").wait_for()
    page.get_by_label("Search your stories").fill("no such words")
    history.get_by_text("No story matches.").wait_for()
    page.get_by_label("Search your stories").fill("Rosa")
    history.get_by_role("button", name=f"Open {TITLE}").wait_for()
    shot(page, "web_stories")

    page.get_by_role("tab", name="Dashboard").click()
    earned = page.locator("#achievements li.earned")
    earned.filter(has_text="First story").wait_for()
    earned.filter(has_text="Keeper").wait_for()
    assert "Stories written1" in page.locator("#figures").inner_text().replace("\n", "")
    assert page.locator("#achievements li:not(.earned)").filter(
        has_text="7-day streak").count() == 1
    shot(page, "web_dashboard")

    page.get_by_role("tab", name="Favourites").click()
    page.get_by_role("button", name=f"Open {TITLE}").wait_for()
    story_id = server.db("SELECT id FROM stories")[0][0]
    page.wait_for_function(  # the service worker keeps the favourite for offline reading
        "id => navigator.serviceWorker.controller && caches.match('/web/api/stories/' + id)"
        ".then(Boolean)", arg=story_id, polling=50)
    for kept in ("/web/api/favourites", "/web/api/me"):
        page.wait_for_function("url => caches.match(url).then(Boolean)", arg=kept,
                               polling=50)

    server.stop()  # offline: the server is gone
    page.reload()
    page.get_by_role("tab", name="Favourites").click()
    page.get_by_role("button", name=f"Open {TITLE}").click()
    view = page.locator("#story-view")
    view.get_by_role("heading", name=TITLE).wait_for()
    assert "Rosa laughed all the way home." in view.inner_text()
    shot(page, "web_offline_favourite")

    server.start()
    page.reload()
    page.get_by_role("tab", name="Settings").click()
    operator = page.locator("#admin")  # Ann is the operator here
    operator.get_by_text("Model: OpenAI-compatible server").wait_for()
    operator.get_by_role("heading", name="Phillip Allen (allen)").wait_for()
    operator.get_by_role("cell", name="llm").wait_for()
    page.get_by_role("button", name="Forget me…").click()
    page.get_by_role("button", name="Yes, forget me").click()
    page.get_by_role("heading", name="Sign in to Doppel").wait_for()
    assert server.db("SELECT count(*) FROM users") == [(0,)]
    assert server.db("SELECT count(*) FROM web_sessions") == [(0,)]
    assert page.evaluate("() => caches.has('doppel-data')") is False
    assert page.request.get(f"{server.url}/web/api/me").status == 401


def test_two_people_never_see_each_other(
        chromium: Any, served: tuple[Doppel, FakeLLMServer]) -> None:
    server, _ = served
    ann, bob = page_of(chromium), page_of(chromium)
    link = server.link("telegram:7001")
    assert bob.request.get(link).status == 200  # a link preview: it does not use it up
    forged = bob.request.post(link, headers={"Origin": "http://elsewhere.example"},
                              max_redirects=0)
    assert forged.status == 403  # another site cannot sign a browser in
    ann.goto(link)
    ann.get_by_role("button", name="Sign in").click()
    ann.get_by_role("tab", name="Chat").wait_for()
    bob.goto(link)  # a link works once
    bob.get_by_role("heading", name=re.compile("expired or was already used")).wait_for()
    sign_in(bob, server, "discord:7002")

    ann.get_by_label("Message").fill("My daughter Mia is five.")
    ann.get_by_role("button", name="Send").click()
    last_reply(ann)
    ann.get_by_role("tab", name="Stories").click()
    ann.get_by_role("button", name="Write the story").click()
    ann.locator("#story-output").get_by_role("heading", name=TITLE).wait_for()
    story_id = server.db("SELECT id FROM stories")[0][0]
    ann.locator("#story-output").get_by_role("button", name="Read aloud").click()
    ann.locator("#story-output audio").first.wait_for(state="attached")
    audio = ann.locator("#story-output audio").first.get_attribute("src")

    bob.reload()
    bob.get_by_role("tab", name="Chat").wait_for()
    assert bob.locator(".msg").count() == 0
    bob.get_by_role("tab", name="Stories").click()
    bob.locator("#history").get_by_text("No stories yet.").wait_for()
    assert bob.request.get(f"{server.url}/web/api/stories/{story_id}").status == 400
    assert bob.request.get(f"{server.url}/web/api/admin").status == 403
    assert bob.locator("#admin").is_hidden()
    assert bob.request.get(f"{server.url}{audio}").status == 404
    assert ann.request.get(f"{server.url}{audio}").status == 200
    assert "Mia" not in bob.request.get(f"{server.url}/web/api/history").text()
    # A request that changes something needs the app's header (no cross-site forms).
    forged = bob.request.post(f"{server.url}/web/api/forget", data={"confirm": True})
    assert forged.status == 403
    assert server.db("SELECT count(*) FROM users") == [(2,)]


def test_a_voice_note_recorded_in_the_browser_is_answered_in_voice(
        chromium: Any, served: tuple[Doppel, FakeLLMServer]) -> None:
    server, _ = served
    page = page_of(chromium, color_scheme="dark", viewport={"width": 400, "height": 820},
                   is_mobile=True, has_touch=True)
    sign_in(page, server, "telegram:7003")
    page.get_by_role("button", name="Record a voice note").click()
    page.get_by_role("button", name="Stop and send the voice note").wait_for()
    # The fake microphone plays the question from its start: record until it has played.
    page.wait_for_function("s => { window.t0 ??= performance.now(); "
                           "return performance.now() - window.t0 > s * 1000 + 800; }",
                           arg=speech_seconds(SPOKEN), polling=100)
    page.get_by_role("button", name="Stop and send the voice note").click()
    heard = page.locator(".msg.user").first
    heard.wait_for()
    assert heard.inner_text().startswith("🎙")
    assert words_heard(SPOKEN, heard.inner_text()) >= 0.8
    reply = last_reply(page)
    player = reply.locator(".player audio")
    player.wait_for(state="attached")
    ogg = page.request.get(f"{server.url}{player.get_attribute('src')}")
    assert ogg.status == 200 and ogg.body()[:4] == b"OggS"
    shot(page, "web_voice_mobile_dark")
