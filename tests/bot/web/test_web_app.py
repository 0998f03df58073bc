"""The web app as a person meets it: the real ``doppel serve`` process, the fake
OpenAI-compatible model server at the model boundary (everything else real: SQLite,
Piper, Whisper), and Debian's Chromium driven by Playwright. Chromium's fake microphone
plays a WAV spoken by Piper.

Every step waits for what the page shows (Playwright's waits, the HANG_S limit only for
a hang); screenshots go to tests/screenshots/.
"""

from __future__ import annotations

import re
from typing import Any

from tests.auxil.llm_api import CALM, STORY, FakeLLMServer
from tests.auxil.speech import speech_seconds, words_heard
from tests.bot.web.browser import (
    SPOKEN,
    Doppel,
    last_reply,
    page_of,
    shot,
    sign_in,
    write_and_favourite,
)

TITLE = STORY.split("\n", 1)[0]


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

    write_and_favourite(page, TITLE)
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
    voices = page.locator("#voices")  # she manages the personas: their voices, and why
    voices.get_by_role("heading", name="Voices").wait_for()  # cloning is not set up here
    voices.get_by_text("Voice cloning needs the XTTS-v2 voice model").wait_for()
    page.get_by_role("button", name="Forget me…").click()
    page.get_by_role("button", name="Yes, forget me").click()
    page.get_by_role("heading", name="Sign in to Doppel").wait_for()
    assert server.db("SELECT count(*) FROM users") == [(0,)]
    assert server.db("SELECT count(*) FROM web_sessions") == [(0,)]
    assert page.evaluate("() => caches.has('doppel-data')") is False
    assert page.request.get(f"{server.url}/web/api/me").status == 401


def test_a_message_sent_before_the_history_arrives_is_kept(
        chromium: Any, served: tuple[Doppel, FakeLLMServer]) -> None:
    """Someone who writes the moment the page opens: the history that arrives later does
    not wipe their message or its reply (it did, now and then, on a busy machine)."""
    server, _ = served
    page = page_of(chromium)
    held: list[Any] = []
    page.route("**/web/api/history", lambda route: held.append(route))  # slow to come
    sign_in(page, server, "telegram:7010")
    page.get_by_label("Message").fill("Is the rent roll in yet?")
    page.get_by_role("button", name="Send").click()
    for route in held:
        route.continue_()
    assert last_reply(page).locator(".text").inner_text().endswith(CALM)
    assert page.locator(".msg.user").all_inner_texts() == ["Is the rent roll in yet?"]


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
