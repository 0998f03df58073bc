"""A turn rendered for the browser: every step of the shared turn driver becomes one
server-sent event (``queued``, ``typing``, ``text``, ``done``, ``voice``, ``pictures``), so
the web app shows a turn exactly as the bots do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request

from bot.turn import Button
from engine.errors import InputError
from engine.images.service import Picture
from engine.voice.audio import VoiceNote

END = object()


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def buttons_json(buttons: Sequence[Button]) -> list[dict[str, str]]:
    return [{"label": b.label, "action": b.action, "value": b.value} for b in buttons]


async def recording(request: Request, limit_mb: float) -> bytes:
    """An audio upload's body; InputError, before reading it when the size is declared,
    if it is over ``limit_mb``."""
    limit = limit_mb * 1024 * 1024
    too_large = InputError("too large", user_message=f"That recording is over {limit_mb:g} MB.")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    audio = await request.body()
    if len(audio) > limit:
        raise too_large
    return audio


def keep_audio(files: Path, note: VoiceNote) -> dict[str, Any]:
    """Store a voice note among the user's files; its URL (only its owner may fetch it)."""
    files.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.ogg"
    (files / name).write_bytes(note.ogg)
    return {"url": f"/web/api/audio/{name}", "duration_s": round(note.duration_s, 2)}


class WebTurnView:
    """``TurnView`` for one streamed HTTP response. Voice notes are kept in the user's
    files and named by URL; pictures by their story's picture URLs."""

    interval_s = 0.25

    def __init__(self, files: Path) -> None:
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.files = files

    def send(self, event: str, data: Any) -> None:
        self.events.put_nowait(sse(event, data))

    async def queued(self, position: int) -> None:
        self.send("queued", {"position": position})

    async def dequeued(self) -> None:
        self.send("dequeued", {})

    @contextlib.asynccontextmanager
    async def activity(self, voice: bool) -> AsyncIterator[None]:
        self.send("typing", {"voice": voice})
        yield

    async def show(self, text: str) -> None:
        self.send("text", {"text": text})

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        self.send("done", {"text": text, "buttons": buttons_json(buttons)})

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        self.send("voice", {**keep_audio(self.files, note), "buttons": buttons_json(buttons)})

    def title(self, text: str) -> str:
        return text

    async def pictures(self, pictures: Sequence[Picture]) -> None:
        self.send("pictures", {"pictures": [
            {"url": f"/web/api/stories/{p.story_id}/pictures/{p.position}",
             "caption": p.caption} for p in pictures]})

    def close(self) -> None:
        self.events.put_nowait(END)

    async def stream(self) -> AsyncIterator[str]:
        while (item := await self.events.get()) is not END:
            assert isinstance(item, str)
            yield item
