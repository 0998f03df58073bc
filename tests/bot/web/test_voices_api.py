"""Cloning a voice from the web app (``/web/api/voices``): the real app and engine over
httpx, real clip checks and storage; the cloned-voice backend is FakeCloneTTS (XTTS's
weights are the user's to bring; its real flow: tests/engine/xtts/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.http.app import create_app
from engine.config import Config
from engine.engine import Engine, UserRef
from engine.voice.cloning import CLONING_NEEDS_XTTS
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.fake_tts import FakeCloneTTS
from tests.auxil.speech import speech_wav
from tests.conftest import MakeConfig

ADMIN = UserRef("telegram", "7001", "Op")
WEB = {"X-Doppel": "web"}


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config(engine={"rate_per_minute": 0, "admins": [ADMIN.key]})


async def browser(engine: Engine, user: UserRef) -> httpx.AsyncClient:
    engine.web.serving_at("http://doppel")
    signed = await engine.web.redeem((await engine.web.link(user)).rsplit("/", 1)[-1])
    assert signed is not None
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                             base_url="http://doppel", headers=WEB,
                             cookies={"doppel_session": signed.session})


@pytest.fixture
async def admin(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with await browser(engine, ADMIN) as c:
        yield c


async def test_without_xtts_the_page_says_what_cloning_needs(
        engine: Engine, admin: httpx.AsyncClient) -> None:
    v = (await admin.get("/web/api/voices")).json()
    assert v["available"] is False and v["why"] == CLONING_NEEDS_XTTS
    r = await admin.post("/web/api/voices/clone", json={"persona": "allen", "name": "studio"})
    assert r.status_code >= 400 and r.json()["error"] == CLONING_NEEDS_XTTS


async def test_clone_a_voice_with_consent_then_use_and_delete_it(
        engine: Engine, admin: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    engine.voice.xtts = fake = FakeCloneTTS()
    v = (await admin.get("/web/api/voices")).json()
    assert v["available"] and {p["name"] for p in v["personas"]} == {"allen", "storyteller"}
    r = await admin.post("/web/api/voices/clone", json={"persona": "allen", "name": "studio"})
    assert r.json() == {"persona": "allen", "name": "studio", "clips": 0}
    short = await admin.post("/web/api/voices/clone/clips", content=speech_wav(seconds=2.0))
    assert short.status_code == 400 and "6" in short.json()["error"]
    clip = await admin.post("/web/api/voices/clone/clips", content=speech_wav())
    assert clip.json()["clips"] == 1 and clip.json()["seconds"] >= 6
    unconsented = await admin.post("/web/api/voices/clone/finish",
                                   json={"speaker": "Phillip Allen", "agreed": False})
    assert unconsented.status_code == 400 and "agreed" in unconsented.json()["error"]
    done = (await admin.post("/web/api/voices/clone/finish",
                             json={"speaker": "Phillip Allen", "agreed": True})).json()
    voice = done["voice"]
    assert voice["name"] == "studio" and voice["consent"] == "Phillip Allen" and voice["active"]
    sample = await admin.get(done["sample"]["url"])
    assert sample.status_code == 200 and sample.content[:4] == b"OggS"
    assert fake.spoken and fake.spoken[-1][1] == voice["id"]  # the sample, in the new voice
    listed: Any = (await admin.get("/web/api/voices")).json()
    allen = next(p for p in listed["personas"] if p["name"] == "allen")
    assert [x["id"] for x in allen["voices"]] == [voice["id"]]
    assert (await admin.delete(f"/web/api/voices/{voice['id']}")).status_code == 200
    listed = (await admin.get("/web/api/voices")).json()
    assert next(p for p in listed["personas"] if p["name"] == "allen")["voices"] == []


async def test_only_a_personas_managers_may_clone_its_voice(engine: Engine) -> None:
    engine.voice.xtts = FakeCloneTTS()
    async with await browser(engine, UserRef("telegram", "99", "Guest")) as guest:
        assert (await guest.get("/web/api/voices")).json()["personas"] == []
        r = await guest.post("/web/api/voices/clone", json={"persona": "allen", "name": "x"})
        assert r.status_code >= 400 and "owner can manage" in r.json()["error"]
        no_header = await guest.post("/web/api/voices/clone", headers={"X-Doppel": ""},
                                     json={"persona": "allen", "name": "x"})
        assert no_header.status_code == 403
