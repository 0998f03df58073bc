"""A Telegram Bot API stand-in on loopback, for running the real ``doppel run`` process
against it (``[telegram] api_base``).

It speaks the Bot API's HTTP protocol as python-telegram-bot uses it: long-polling
``getUpdates`` with offset confirmation, ``sendMessage``/``editMessageText``/``deleteMessage``
/``sendChatAction``/``sendVoice``/``answerCallbackQuery`` and the rest answered as Telegram
answers them. Tests push updates (real payloads from shared/fixtures, with other texts and
senders) and wait for the calls the bot makes: every call is recorded with its time.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.auxil.servers import LoopbackServer
from tests.auxil.telegram import BOT, FIXTURES, sent_message

TOKEN = "123456:TEST-token-for-the-stand-in"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def chat(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value not in (None, "") else None

    @property
    def text(self) -> str:
        return str(self.params.get("text", ""))


class BotApi(LoopbackServer):
    """Start with ``with BotApi() as api:``; ``api.base`` goes into ``[telegram] api_base``."""

    def __init__(self) -> None:
        super().__init__()
        self.base = self.url
        self.calls: list[Call] = []
        self.delivered: dict[int, dict[str, Any]] = {}
        """Updates handed out by getUpdates, by update_id."""
        self.confirmed = 0
        """The highest offset the bot confirmed (all updates below it are gone)."""
        self._pending: list[dict[str, Any]] = []
        self._ids = itertools.count(1000)
        self._update_ids = itertools.count(500000)
        self._new_update: asyncio.Event | None = None

    def routes(self, app: web.Application) -> None:
        self._new_update = asyncio.Event()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)

    # -- what tests do ----------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update for the bot's next getUpdates; returns its update_id."""
        update = copy.deepcopy(update)
        update["update_id"] = next(self._update_ids)
        with self._lock:
            self._pending.append(update)
        assert self._loop is not None and self._new_update is not None
        self._loop.call_soon_threadsafe(self._new_update.set)
        return int(update["update_id"])

    def say(self, user: int, text: str, name: str = "") -> int:
        """A private text message (a real payload with this sender, chat and text)."""
        data = json.loads((FIXTURES / "private_text_minimal.json").read_text())
        msg = data["message"]
        person = {"id": user, "is_bot": False, "first_name": name or f"User{user}",
                  "language_code": "en"}
        msg.update({"from": person, "chat": {"id": user, "type": "private",
                                             "first_name": person["first_name"]},
                    "message_id": next(self._ids), "date": int(time.time()), "text": text})
        if text.startswith("/"):
            msg["entities"] = [{"offset": 0, "length": len(text.split()[0]),
                                "type": "bot_command"}]
        return self.push(data)

    def named(self, method: str, chat: int | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method
                    and (chat is None or c.chat == chat)]

    def texts(self, chat: int) -> list[str]:
        """Every text the bot showed in ``chat``: sent messages and edits, in order."""
        with self._lock:
            return [c.text for c in self.calls if c.chat == chat
                    and c.method in ("sendMessage", "editMessageText")]

    def unconfirmed(self) -> list[int]:
        """Updates delivered but not yet confirmed by a later getUpdates offset."""
        with self._lock:
            return [u for u in self.delivered if u >= self.confirmed]

    # -- the protocol -----------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                params[key] = (value if isinstance(value, str | bytes | bytearray)
                               else value.file.read())
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        params = await self._params(request)
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._updates(params)})
        with self._changed:
            self.calls.append(Call(method, params))
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": self._result(method, params)})

    async def _updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        assert self._new_update is not None
        deadline = time.monotonic() + min(timeout, 10)
        while True:
            with self._changed:
                if offset:
                    self.confirmed = max(self.confirmed, offset)
                    self._pending = [u for u in self._pending if u["update_id"] >= offset]
                ready = [u for u in self._pending if u["update_id"] >= offset]
                if ready:
                    for u in ready:
                        self.delivered[int(u["update_id"])] = u
                    self._changed.notify_all()
                    return ready
                self._new_update.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            try:
                await asyncio.wait_for(self._new_update.wait(), left)
            except TimeoutError:
                return []

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"")

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT
        return sent_message(method, params, self._ids) or True
