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

from bot.actions import HistoryPage
from bot.turn import Button, IdeasFor
from bot.web.wording import in_app
from engine.api import Picture, VoiceNote

END = object()


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def buttons_json(buttons: Sequence[Button]) -> list[dict[str, str]]:
    return [{"label": b.label, "action": b.action, "value": b.value} for b in buttons]


UPLOADS = ("/web/api/voice", "/web/api/voices/clone/clips")
"""Routes whose body is a recording: up to ``[voice] max_input_mb`` (``bot.http.guard``
cuts a longer one off while it is read, 413)."""


async def recording(request: Request) -> bytes:
    """An audio upload's body (its size is checked while it is read)."""
    return await request.body()


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
        self.notices: list[str] = []
        self.voices: list[dict[str, Any]] = []
        """What a press showed, for the routes that answer with JSON instead of events."""

    def send(self, event: str, data: Any) -> None:
        if isinstance(data, dict):
            data = {k: in_app(v) if k in ("text", "message") and isinstance(v, str) else v
                    for k, v in data.items()}
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
        kept = keep_audio(self.files, note)
        self.voices.append(kept)
        self.send("voice", {**kept, "buttons": buttons_json(buttons)})

    async def notice(self, text: str) -> None:
        self.notices.append(in_app(text))
        self.send("notice", {"text": text})

    async def settle(self, text: str) -> None:
        await self.notice(text)

    async def ideas(self, about: IdeasFor, ideas: Sequence[str]) -> None:
        self.send("ideas", {"heading": about.heading(), "ideas": list(ideas),
                            "buttons": buttons_json(about.buttons(ideas))})

    async def history(self, page: HistoryPage) -> None:
        self.send("history", {"page": page.page, "pages": page.pages, "total": page.total,
                              "stories": [{"id": r.id, "title": r.title, "date": label}
                                          for label, r in page.entries],
                              "buttons": buttons_json(page.nav())})

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
