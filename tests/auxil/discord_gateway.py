"""Discord on loopback for a separate ``doppel run`` process: FakeDiscord's REST API and a
gateway WebSocket, served from a thread of the test process.

The gateway speaks what discord.py needs: HELLO with a heartbeat interval, READY after
IDENTIFY, heartbeat ACKs, then dispatches that tests push (``MESSAGE_CREATE``,
``INTERACTION_CREATE``: real payloads from shared/fixtures with other senders and texts).
Frames are plain JSON text (discord.py decompresses only binary frames).
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from aiohttp import WSMsgType, web

from tests.auxil.discord_api import APP_ID, BOT_USER, Call, FakeDiscord, fixture
from tests.auxil.servers import LoopbackServer

TOKEN = "MTQ1NzQ2OTQ4MzcyNjY2ODA0OA.stand-in.token"


class DiscordStandIn(LoopbackServer):
    """``with DiscordStandIn() as dc:``; ``dc.api_base``/``dc.gateway_url`` go in config."""

    def __init__(self) -> None:
        super().__init__()
        self.rest = FakeDiscord()
        self.rest.url = self.url
        self.api_base = f"{self.url}/api/v10"
        self.gateway_url = f"ws://127.0.0.1:{self.port}/gateway"
        self.identified = threading.Event()
        self._ws: web.WebSocketResponse | None = None
        self._seq = itertools.count(1)
        self._ids = itertools.count(1483300000000000000)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_route("*", "/{tail:.*}", self._rest)

    # -- what tests do ----------------------------------------------------------------------

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event to the connected bot."""
        assert self._ws is not None, "no bot connected"
        frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        self.run(self._ws.send_str(json.dumps(frame)))

    def dm(self, user: int, text: str, channel: int | None = None) -> None:
        """A direct message from ``user`` (a real DM payload with this sender and text) in
        ``channel``, by default the DM channel ``user + 1``."""
        data = fixture("constructed/discord/gateway_message_create_dm_text.json")
        data["author"] = {**data["author"], "id": str(user), "username": f"user{user}",
                          "global_name": f"User {user}"}
        data.update(id=str(next(self._ids)), channel_id=str(channel or user + 1), content=text,
                    timestamp="2026-11-27T10:00:00.000000+00:00")
        self.dispatch("MESSAGE_CREATE", data)

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self.rest.calls)

    def texts(self, channel: int) -> list[str]:
        """Every text the bot showed in a channel: messages and edits, in order."""
        prefix = f"/channels/{channel}/messages"
        return [str((c.json or {}).get("content") or "") for c in self.calls()
                if c.method in ("POST", "PATCH") and c.path.startswith(prefix)]

    # -- the protocol -----------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        response = await self.rest._handle(request)
        self.changed()
        return response

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return web.json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            if payload["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif payload["op"] == 2:  # identify
                self._ws = ws
                ready = {"v": 10, "user": BOT_USER, "guilds": [], "session_id": "stand-in",
                         "resume_gateway_url": self.gateway_url, "private_channels": [],
                         "application": {"id": APP_ID, "flags": 0}}
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._seq),
                                              "d": ready}))
                self.identified.set()
                self.changed()
        return ws
