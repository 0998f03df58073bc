"""``/web/api/call`` on the wire: uvicorn on loopback serving the real app over a real
engine (FakeLLM), a real WebSocket client. Who may call, what a bad client is told, and
the frames of an answered question."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed

from bot.http.app import create_app
from engine.engine import Engine, UserRef
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.speech import call_audio, call_silence, words_heard

QUESTION = "Tell me about the rent roll for the property."


@pytest.fixture
async def port(engine: Engine) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    engine.web.serving_at(f"http://127.0.0.1:{sock.getsockname()[1]}")
    yield sock.getsockname()[1]
    server.should_exit = True
    await serving


async def session(engine: Engine, user: UserRef) -> str:
    signed = await engine.web.redeem((await engine.web.link(user)).rsplit("/", 1)[-1])
    assert signed is not None
    return signed.session


def connect(port: int, cookie: str | None, origin: str | None = None) -> Any:
    headers = {"Origin": origin or f"http://127.0.0.1:{port}"}
    if cookie is not None:
        headers["Cookie"] = f"doppel_session={cookie}"
    return websockets.connect(f"ws://127.0.0.1:{port}/web/api/call", max_size=None,
                              additional_headers=headers, open_timeout=HANG_S)


async def refused(port: int, cookie: str | None, origin: str | None = None) -> int | None:
    """The close code of a call that is not let in."""
    try:
        async with connect(port, cookie, origin) as ws:
            await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except websockets.InvalidStatus as exc:  # refused at the handshake
        return exc.response.status_code
    raise AssertionError("the call was let in")


async def test_only_a_signed_in_page_of_this_site_may_call(engine: Engine, port: int) -> None:
    cookie = await session(engine, UserRef("telegram", "42", "Ann"))
    assert await refused(port, None) in (1008, 403)
    assert await refused(port, "not-a-session") in (1008, 403)
    assert await refused(port, cookie, origin="https://evil.example") in (1008, 403)
    async with connect(port, cookie) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["text"] == "Phillip Allen"
        assert ready["caption"] == engine.voice_caption


async def test_a_question_gets_its_sentences_as_audio_frames(
        engine: Engine, port: int, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("The rent roll came on Friday. The tenants paid in full.")
    user = UserRef("telegram", "43", "Bo")
    async with connect(port, await session(engine, user)) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        audio = call_audio(QUESTION) + call_silence(1.0)
        for i in range(0, len(audio), 640):  # 20 ms frames
            await ws.send(audio[i:i + 640])
        seen: list[Any] = []
        while not (seen and isinstance(seen[-1], dict) and seen[-1]["type"] == "done"):
            message = await ws.recv()
            seen.append(json.loads(message) if isinstance(message, str) else message)
        kinds = [m["type"] if isinstance(m, dict) else "pcm" for m in seen]
        heard = next(m for m in seen if isinstance(m, dict) and m["type"] == "heard")
        assert words_heard(QUESTION, heard["text"]) >= 0.8
        # each sentence: its event, then its audio (rate, then 16-bit PCM)
        assert kinds[kinds.index("heard"):] == [
            "heard", "disclosure", "audio", "pcm", "audio", "pcm", "done"], kinds
        frames = [m for m in seen if isinstance(m, bytes)]
        for frame in frames:
            (rate,) = struct.unpack("<I", frame[:4])
            assert rate == 22050 and len(frame[4:]) % 2 == 0 and len(frame) > rate
        first = next(m for m in seen if isinstance(m, dict) and m["type"] == "audio")
        assert first["latency_s"] > 0 and first["seconds"] > 0.5
        await ws.send(json.dumps({"type": "hangup"}))
    history = await engine.history(user)
    assert [m.role for m in history] == ["user", "assistant"]


async def test_a_flood_is_refused_with_a_message(engine: Engine, port: int) -> None:
    async with connect(port, await session(engine, UserRef("telegram", "44"))) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(bytes(1024 * 1024))
        notice = json.loads(await ws.recv())
        assert notice["type"] == "notice" and "more audio at once" in notice["text"]
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_a_second_window_takes_the_call(engine: Engine, port: int) -> None:
    cookie = await session(engine, UserRef("telegram", "45"))
    async with connect(port, cookie) as first:
        assert json.loads(await first.recv())["type"] == "ready"
        async with connect(port, cookie) as second:
            assert json.loads(await second.recv())["type"] == "ready"
            with pytest.raises(ConnectionClosed) as closed:
                await first.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_two_people_call_at_once_and_each_hears_their_own_answer(
        engine: Engine, port: int) -> None:
    questions = {UserRef("telegram", "46", "Cy"): "Tell me about the rent roll for the property.",
                 UserRef("telegram", "47", "Di"): "What is the weather like in Houston today?"}

    async def call(user: UserRef, question: str) -> tuple[str, list[Any]]:
        async with connect(port, await session(engine, user)) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            audio = call_audio(question) + call_silence(1.0)
            for i in range(0, len(audio), 640):
                await ws.send(audio[i:i + 640])
            seen: list[Any] = []
            while not seen or seen[-1].get("type") != "done":
                message = await ws.recv()
                if isinstance(message, str):
                    seen.append(json.loads(message))
            return next(m["text"] for m in seen if m["type"] == "heard"), seen

    both = await asyncio.gather(*(call(u, q) for u, q in questions.items()))
    for (user, question), (heard, seen) in zip(questions.items(), both, strict=True):
        assert words_heard(question, heard) >= 0.8  # their own words, not the other's
        assert any(m["type"] == "audio" for m in seen)
        history = await engine.history(user)
        assert [m.role for m in history] == ["user", "assistant"]
        assert history[0].content == heard


async def users(engine: Engine) -> int:
    async with engine.db.session() as s:
        return int(await s.scalar(text("SELECT count(*) FROM users")) or 0)


@pytest.mark.parametrize("how", ["forget", "sign out"])
async def test_an_open_call_ends_with_its_session(engine: Engine, port: int, how: str) -> None:
    """Forgetting the user (from any platform) or signing this browser out ends a call on
    it at once: what is said afterwards is never heard, answered or stored."""
    user = UserRef("telegram", "46", "Cy")
    cookie = await session(engine, user)
    async with connect(port, cookie) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        if how == "forget":
            assert await engine.forget(user)
        else:
            await engine.web.sign_out(cookie)
        async with asyncio.timeout(HANG_S):  # before the fix: the call went on
            notice = json.loads(await ws.recv())
        assert notice == {"type": "notice",
                          "text": "This browser is signed out now, so the call ended."}
        with pytest.raises(ConnectionClosed):
            audio = call_audio(QUESTION) + call_silence(1.0)
            for i in range(0, len(audio), 640):
                await ws.send(audio[i:i + 640])
            await ws.recv()
    await engine.settled()
    assert await users(engine) == (0 if how == "forget" else 1)
    assert await engine.history(user) == []
