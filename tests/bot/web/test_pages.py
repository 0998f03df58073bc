"""What a person sees of the web app (issue 32, items 8-12): the real ``doppel serve`` over
a persona whose memory holds one mail, the fake model server at the model boundary, and
Debian's Chromium on a phone (390x844) and a desktop, in light and dark mode. Every view
is audited with axe-core (vendored in tests/data/axe/) in the page; the screenshots the
README shows are taken here (tests/screenshots/readme-*.png).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import CALM, STORY, FakeLLMServer
from tests.auxil.speech import speech_seconds
from tests.bot.test_console import doppel, doppel_env
from tests.bot.web.browser import (
    SPOKEN,
    Doppel,
    last_reply,
    page_of,
    shot,
    sign_in,
)
from tests.conftest import ROOT

AXE = (ROOT / "tests" / "data" / "axe" / "axe.min.js").read_text()
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
RENT = ("From: Phillip Allen <pallen@enron.com>\nTo: Jacques <jacques@example.com>\n"
        "Subject: Rent roll for the apartments\nDate: Mon, 23 Apr 2001 10:00:00 -0500\n"
        "Message-ID: <rent-roll-1@enron.com>\n\nThe rent roll for the apartments looks good: "
        "all twelve units paid in April, and the vacant unit on the second floor is leased "
        "from May.\n\nPhillip\n")
"""A mail in the style of the corpus (written for this test): what the reply cites."""
ASKED = "How is the rent roll for the apartments looking?"
TITLE = STORY.split("\n", 1)[0]


@pytest.fixture
def remembering(tmp_path: Path) -> Iterator[Doppel]:
    """``doppel serve`` for a persona whose memory holds the rent-roll mail."""
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "rent.eml").write_text(RENT)
    with FakeLLMServer(token_delay_s=0.01) as llm:
        server = Doppel(tmp_path, llm)
        subprocess.run(doppel("--config", str(server.config), "ingest", "allen", str(mail)),
                       cwd=ROOT, env=doppel_env(), check=True, capture_output=True,
                       timeout=HANG_S)
        server.start()
        try:
            yield server
        finally:
            if server.proc is not None:
                server.stop()


def ask(page: Any, text: str) -> Any:
    """Send ``text``; the reply once it is finished (it has its buttons)."""
    before = page.locator(".msg.assistant").count()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.locator(".msg.assistant").nth(before).locator(".actions").wait_for()
    return page.locator(".msg.assistant").nth(before)


def reply_as_shown(reply: Any) -> tuple[str, list[str], list[str]]:
    return (reply.locator(".text").inner_text(),
            reply.locator(".source summary").all_inner_texts(),
            [b.get_attribute("aria-label") for b in reply.locator(".actions button").all()])


def serious(page: Any) -> list[str]:
    """axe-core's serious and critical findings on what the page shows now (the page's
    context bypasses its CSP, which keeps any script but its own out)."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(content=AXE)
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => ['serious', 'critical'].includes(v.impact))
        .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))""")
    return list(found)


def in_sight(page: Any, selector: str) -> bool:
    """Whether the element is wholly between the header and the composer."""
    return bool(page.evaluate("""sel => {
        const r = [...document.querySelectorAll(sel)].pop().getBoundingClientRect();
        const top = document.querySelector('.top').getBoundingClientRect().bottom;
        const bottom = document.querySelector('#chat-form').getBoundingClientRect().top;
        return r.top >= top - 1 && r.bottom <= bottom + 1;
    }""", selector))


def test_a_reply_keeps_its_sources_disclosure_and_buttons_after_a_reload(
        chromium: Any, remembering: Doppel) -> None:
    page = page_of(chromium, **DESKTOP)
    sign_in(page, remembering, "telegram:7101")
    page.locator("#messages .greeting").wait_for()  # an empty chat says who answers here
    first = reply_as_shown(ask(page, ASKED))
    text, sources, buttons = first
    assert text.startswith("🤖 I'm an AI persona of Phillip Allen") and text.endswith(CALM)
    assert "/forget" not in text and "Forget me in Settings" in text  # the app's own words
    assert sources == ["[1] 2001-04-23 · Rent roll for the apartments"]  # not doubled
    assert buttons == ["Favourite", "Again", "Read aloud", "Good", "Bad"]
    second = reply_as_shown(ask(page, "And the vacant unit?"))
    older = page.locator(".msg.assistant").first
    assert reply_as_shown(older)[2] == ["Favourite", "Good", "Bad"]  # 🔁 🔊 act on the newest

    page.reload()
    page.locator(".msg.assistant .actions").nth(1).wait_for()
    replies = page.locator(".msg.assistant")
    assert [reply_as_shown(replies.nth(0)), reply_as_shown(replies.nth(1))] == [
        (text, sources, ["Favourite", "Good", "Bad"]), second]
    assert page.locator("#messages .greeting").count() == 0


def test_a_new_story_shows_its_cover_at_once(chromium: Any, remembering: Doppel) -> None:
    page = page_of(chromium, **PHONE)
    sign_in(page, remembering, "telegram:7102")
    page.get_by_role("tab", name="Stories").click()
    page.get_by_role("button", name="Write the story").click()
    story = page.locator("#story-output")
    story.get_by_role("heading", name=TITLE).wait_for()
    cover = story.locator("figure img").first
    cover.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#story-output img')].some(i => i.naturalWidth)",
        polling=50)
    assert cover.get_attribute("alt")


def test_a_voice_note_then_the_server_gone(chromium: Any, remembering: Doppel) -> None:
    """"Recording…" goes once the note is sent; the player is in sight; with the server
    gone the banner says so and the message waits in the composer, not as a reply."""
    page = page_of(chromium, color_scheme="dark", **PHONE)
    sign_in(page, remembering, "telegram:7103")
    page.get_by_role("button", name="Record a voice note").click()
    page.get_by_role("button", name="Stop and send the voice note").wait_for()
    assert "Recording" in page.locator("#status").inner_text()
    page.wait_for_function("s => { window.t0 ??= performance.now(); "
                           "return performance.now() - window.t0 > s * 1000 + 800; }",
                           arg=speech_seconds(SPOKEN), polling=100)
    page.get_by_role("button", name="Stop and send the voice note").click()
    reply = last_reply(page)
    reply.locator(".player").wait_for()
    assert "Recording" not in page.locator("#status").inner_text()
    assert in_sight(page, ".msg.assistant .player")
    assert in_sight(page, ".msg.assistant:last-child .actions")

    remembering.stop()
    ask_failed = "Is anyone there?"
    page.get_by_label("Message").fill(ask_failed)
    page.get_by_role("button", name="Send").click()
    page.locator("#offline").wait_for()
    failed = page.locator(".msg.assistant.failed")
    failed.wait_for()
    assert failed.inner_text().startswith("Not sent.")
    assert page.get_by_label("Message").input_value() == ask_failed
    shot(page, "web_offline_phone")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_view_on_a_phone_and_a_desktop_passes_the_audit(
        chromium: Any, remembering: Doppel, scheme: str) -> None:
    for name, device in (("phone", PHONE), ("desktop", DESKTOP)):
        page = page_of(chromium, color_scheme=scheme, bypass_csp=True, **device)
        page.goto(remembering.url)
        page.get_by_role("heading", name="Sign in to Doppel").wait_for()
        assert serious(page) == [], "sign-in page"
        sign_in(page, remembering, f"telegram:72{len(name)}{len(scheme)}")
        ask(page, ASKED)
        tabs = page.locator(".tabs")
        assert tabs.evaluate("t => t.scrollWidth <= t.clientWidth"), "the tabs fit one row"
        assert len({round(b.bounding_box()["y"]) for b in tabs.get_by_role("tab").all()}) == 1
        assert page.get_by_label("Message").evaluate("""t => {
            const g = document.createElement('canvas').getContext('2d');
            const s = getComputedStyle(t);
            g.font = s.font;
            return g.measureText(t.placeholder).width <= t.clientWidth
                - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
        }"""), "the composer's placeholder fits"
        assert in_sight(page, ".msg.assistant:last-child"), "the newest reply is in sight"
        assert serious(page) == [], f"chat, {name}, {scheme}"
        shot(page, f"readme-{name}-{scheme}")
        page.get_by_role("button", name="Call the persona").click()
        page.locator("#call-panel").wait_for()
        assert page.evaluate("""() => {
            const bar = document.querySelector('#call-panel').getBoundingClientRect();
            const form = document.querySelector('#chat-form').getBoundingClientRect();
            return bar.bottom <= form.top + 1 && bar.top >= 0;
        }"""), "the call bar is above the composer"
        page.get_by_role("button", name="Hang up").click()
        page.locator("#call-panel").wait_for(state="hidden")
        for tab in ("Stories", "Favourites", "Dashboard", "Settings"):
            page.get_by_role("tab", name=tab).click()
            page.locator(f"#view-{tab.lower()}").wait_for()
            if tab == "Dashboard":  # audited once its figures are drawn, not before
                page.locator("#achievements li").first.wait_for()
            assert serious(page) == [], f"{tab}, {name}, {scheme}"
        if name == "phone":
            continue
        page.get_by_role("tab", name="Settings").focus()  # keys move along the tabs
        page.keyboard.press("Home")
        assert page.get_by_role("tab", name="Chat").get_attribute("aria-selected") == "true"
        page.keyboard.press("End")
        assert page.get_by_role("tab", name="Settings").get_attribute("aria-selected") == "true"
        assert page.evaluate("document.activeElement.id") == "tab-settings"
