"""The web app's live call, ``/web/api/call``: a WebSocket between the page and one
``LiveCall``. Adapter only: it turns frames into ``feed`` and events into frames.

In: binary frames of 16 kHz mono 16-bit little-endian PCM (the page's AudioWorklet sends
20 ms at a time); text frames ``{"type": "played"}`` (playback ran out) and
``{"type": "hangup"}``. Out: a text frame per event (``{"type": kind, ...}``, see
``CallEvent``); an ``audio`` event is followed by one binary frame, the sentence's audio:
its sample rate as a little-endian uint32, then 16-bit PCM.

Why a WebSocket and not WebRTC: see README ("Live calls"); measured by ``bench/live.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bot.waiting import until_first
from engine.api import CallEvent, DoppelError, Engine, LiveCall

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
"""Bytes in one frame from the page, at most (2 s of audio; it sends 20 ms)."""
SORRY = "Sorry, the call failed on my side. Please call again."


def _same_origin(ws: WebSocket, engine: Engine) -> bool:
    """A page on another site cannot open a call with this browser's cookie."""
    origin, host = ws.headers.get("origin"), ws.headers.get("host")
    if origin is not None and host is not None and origin.split("://", 1)[-1] == host:
        return True
    return engine.web.trusted(origin, "")  # [web] public_url, behind a proxy


def install(app: FastAPI, engine: Engine, cookie: str) -> None:
    """Add ``/web/api/call``; ``cookie`` holds the web session (see routes.py)."""
    calls: dict[str, tuple[WebSocket, LiveCall]] = {}
    """The call each user is on: a second one (another tab) ends the first."""

    @app.websocket("/web/api/call")
    async def call(ws: WebSocket) -> None:
        session = ws.cookies.get(cookie, "")
        user = await engine.web.user(session)
        if user is None or not _same_origin(ws, engine):
            await ws.close(code=1008, reason="Sign in first: send /web to the bot.")
            return
        await ws.accept()
        ended = engine.web.watch(session, user)
        if (earlier := calls.pop(user.key, None)) is not None:
            await earlier[1].close()
            with contextlib.suppress(Exception):
                await earlier[0].close(code=4000, reason="You answered in another window.")
        send = asyncio.Lock()

        async def emit(event: CallEvent) -> None:
            async with send:  # the JSON and its audio frame stay together
                await ws.send_text(json.dumps(_event_json(event), ensure_ascii=False))
                if event.pcm is not None:
                    await ws.send_bytes(struct.pack("<I", event.rate) + event.pcm.tobytes())

        live = LiveCall(engine, user, emit)
        calls[user.key] = (ws, live)
        try:
            await live.start()
            persona = await engine.current_persona(user)
            async with send:
                await ws.send_text(json.dumps({"type": "ready", "text": persona.display_name,
                                               "caption": engine.voice_caption}))
            await until_first(_listen(ws, live), ended.wait())
            if ended.is_set():  # signed out, or forgotten: nothing more is heard or said
                await _goodbye(ws, "This browser is signed out now, so the call ended.")
        except WebSocketDisconnect:  # the page closed: a normal end of a call
            log.debug("the page of %s went away", user.key)
        except DoppelError as exc:
            await _goodbye(ws, exc.user_message)
        except Exception:
            log.exception("live call of %s failed", user.key)
            await _goodbye(ws, SORRY)
        finally:
            await live.close()
            engine.web.unwatch(ended)
            if calls.get(user.key, (None, None))[1] is live:
                del calls[user.key]
            log.info("live call of %s ended", user.key)


async def _listen(ws: WebSocket, live: LiveCall) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if (data := message.get("bytes")) is not None:
            if len(data) > MAX_FRAME:
                await _goodbye(ws, "The call sent more audio at once than a microphone can.")
                return
            await live.feed(data)
        elif (text := message.get("text")) is not None:
            try:
                kind = json.loads(text).get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "hangup":
                await ws.close()
                return
            if kind == "played":
                live.played()


def _event_json(event: CallEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event.kind, "text": event.text}
    if event.message_id is not None:
        out["message_id"] = event.message_id
    if event.latency_s is not None:
        out["latency_s"] = round(event.latency_s, 3)
    if event.stages is not None:
        out["stages"] = event.stages
    if event.pcm is not None:
        out["seconds"] = round(len(event.pcm) / event.rate, 3)
    return out


async def _goodbye(ws: WebSocket, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"type": "notice", "text": message}))
        await ws.close(code=1011)

