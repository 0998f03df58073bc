"""FakeDiscord: Discord's REST API on a loopback port, for the Discord adapter's tests.

discord.py runs unchanged (its HTTP client, rate-limit handling, multipart encoding and
webhook follow-ups); only ``Route.BASE`` points here. Every request is recorded with its JSON
body or its multipart ``payload_json`` and files, and answered with a realistic object in the
shape of the captured responses in ``shared/fixtures/discord`` (message objects, interaction
callback responses, the application, a DM channel). Attachment URLs in fed gateway payloads
are rewritten to this server, which serves the bytes registered with :meth:`serve`.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures"

BOT_ID = "1457469483726668048"
"""The bot mentioned in the captured guild fixture (a live test bot), so it mentions us."""
APP_ID = BOT_ID
BOT_USER = {"id": BOT_ID, "username": "Doppel", "global_name": None, "avatar": None,
            "discriminator": "0", "public_flags": 0, "flags": 0, "bot": True,
            "banner": None, "accent_color": None, "avatar_decoration_data": None,
            "primary_guild": None, "collectibles": None, "display_name_styles": None,
            "clan": None, "mfa_enabled": False, "locale": "en-US", "verified": True,
            "email": None}
APPLICATION: dict[str, Any] = {
    "id": APP_ID, "name": "Doppel", "icon": None, "description": "Persona chatbot",
    "type": None, "bot_public": False, "bot_require_code_grant": False,
    "verify_key": "c0ffee" * 10 + "c0ff", "flags": 0, "hook": True, "summary": "",
    "is_monetized": False, "is_verified": False, "is_discoverable": False,
    "owner": {"id": "614024381422914001", "username": "nightowl.reads", "avatar": None,
              "discriminator": "0", "global_name": "Priya S.", "public_flags": 0,
              "flags": 0},
    "team": None, "bot": BOT_USER, "redirect_uris": [], "interactions_endpoint_url": None,
    "approximate_guild_count": 1, "tags": [],
}


@dataclass
class Call:
    method: str
    path: str
    """Without the ``/api/v10`` prefix, e.g. ``/channels/123/messages``."""
    query: dict[str, str]
    json: Any = None
    """The JSON body, or a multipart request's ``payload_json``."""
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    """Multipart file fields: name -> (filename, content type, bytes)."""
    reason: str = ""
    authorization: str = ""
    at: float = field(default_factory=time.monotonic)


class FakeDiscord:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.files: dict[str, bytes] = {}
        self.refuse_voice_messages = False
        """Answer 400 to a message with the voice flag, as Discord would to a bot it does
        not let send voice messages (the adapter must fall back to a plain attachment)."""
        self.refuse_webhooks = False
        """Answer 403 to managing channel webhooks, as Discord does without the Manage
        Webhooks permission."""
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.refuse_threads = False
        """Answer 403 to opening a thread, as Discord does without Create Public Threads."""
        self.threads: dict[str, dict[str, Any]] = {}
        """Threads opened from messages, by id."""
        """Channel webhooks made through the API, by id (with the avatar sent)."""
        self._ids = itertools.count(1482500000000000000)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def serve(self, name: str, data: bytes) -> str:
        """Make ``data`` downloadable; returns its URL (for attachment payloads)."""
        self.files[name] = data
        return f"{self.url}/cdn/{name}"

    # -- queries for tests -----------------------------------------------------------------

    def named(self, method: str, pattern: str) -> list[Call]:
        """Calls like ``("POST", "/channels/*/messages")`` (``*`` matches one segment)."""
        want = pattern.strip("/").split("/")
        out = []
        for c in self.calls:
            got = c.path.strip("/").split("/")
            if c.method == method and len(got) == len(want) and all(
                    w in ("*", g) for w, g in zip(want, got, strict=True)):
                out.append(c)
        return out

    # -- the API ---------------------------------------------------------------------------

    def _id(self) -> str:
        return str(next(self._ids))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/cdn/"):
            data = self.files.get(path[5:])
            return web.Response(body=data) if data is not None else web.Response(status=404)
        path = path.removeprefix("/api/v10")
        call = Call(request.method, path, dict(request.query),
                    reason=request.headers.get("X-Audit-Log-Reason", ""),
                    authorization=request.headers.get("Authorization", ""))
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                if part.name == "payload_json":
                    call.json = json.loads(await part.text())
                elif part.name:
                    call.files[part.name] = (part.filename or "",
                                             part.headers.get("Content-Type", ""),
                                             bytes(await part.read()))
        elif request.can_read_body:
            call.json = await request.json()
        self.calls.append(call)
        return self._answer(call)

    def _answer(self, c: Call) -> web.StreamResponse:
        seg = c.path.strip("/").split("/")
        body = c.json if isinstance(c.json, dict) else {}
        if c.method == "GET" and c.path == "/users/@me":
            return _json(BOT_USER)
        if c.method == "GET" and c.path == "/oauth2/applications/@me":
            return _json(APPLICATION)
        if c.method == "PUT" and seg[0] == "applications" and seg[-1] == "commands":
            return _json([{**cmd, "id": self._id(), "application_id": APP_ID,
                                       "version": self._id(), "type": cmd.get("type", 1)}
                                      for cmd in (c.json or [])])
        if c.method == "POST" and c.path == "/users/@me/channels":
            return _json({"id": self._id(), "type": 1, "last_message_id": None,
                                      "flags": 0, "recipients": [{
                                          "id": body.get("recipient_id"), "username": "user",
                                          "discriminator": "0", "avatar": None}]})
        if seg[0] == "channels" and seg[-1] == "typing":
            return web.Response(status=204)
        if seg[0] == "interactions" and seg[-1] == "callback":
            kind = body.get("type", 5)
            data = body.get("data") or {}
            resource: dict[str, Any] = {"type": kind}
            if kind == 4:
                resource["message"] = self._message(seg[1], data, c)
            return _json({
                "interaction": {"id": seg[1], "type": 2, "response_message_id": self._id(),
                                "response_message_loading": kind == 5,
                                "response_message_ephemeral": bool(data.get("flags", 0) & 64)},
                "resource": resource})
        if c.method == "POST" and seg[0] == "channels" and seg[2:3] == ["messages"] \
                and seg[-1] == "threads":
            if self.refuse_threads:
                return _json({"code": 50013, "message": "Missing Permissions"}, status=403)
            thread_id = seg[3]  # a thread from a message has the message's id
            self.threads[thread_id] = {
                "id": thread_id, "type": 11, "parent_id": seg[1], "guild_id": None,
                "name": body.get("name"), "owner_id": BOT_ID, "flags": 0,
                "last_message_id": None, "rate_limit_per_user": 0, "message_count": 0,
                "member_count": 1, "thread_metadata": {
                    "archived": False, "locked": False, "archive_timestamp":
                    "2026-03-14T18:45:02.512000+00:00",
                    "auto_archive_duration": body.get("auto_archive_duration", 1440)}}
            return _json(self.threads[thread_id])
        if seg[0] == "channels" and seg[2:3] == ["webhooks"]:
            if self.refuse_webhooks:
                return _json({"code": 50013, "message": "Missing Permissions"}, status=403)
            if c.method == "GET":
                return _json([h for h in self.webhooks.values() if h["channel_id"] == seg[1]])
            hook_id = self._id()
            self.webhooks[hook_id] = {
                "id": hook_id, "type": 1, "channel_id": seg[1], "guild_id": None,
                "name": body.get("name"), "avatar": "a1" if body.get("avatar") else None,
                "token": f"token-{hook_id}", "application_id": APP_ID,
                "user": {k: BOT_USER[k] for k in ("id", "username", "avatar",
                                                   "discriminator")},
                "sent_avatar": body.get("avatar")}
            return _json(self.webhooks[hook_id])
        if c.method in ("POST", "PATCH") and seg[0] == "webhooks" and seg[1] in self.webhooks:
            hook = self.webhooks[seg[1]]  # a persona's webhook: posts under its name
            message = self._message(c.query.get("thread_id", hook["channel_id"]), body, c,
                                    seg[-1] if c.method == "PATCH" else None)
            message["author"] = {"id": hook["id"], "username": hook["name"], "avatar":
                                 hook["avatar"], "discriminator": "0000", "bot": True}
            message["webhook_id"] = hook["id"]
            return _json(message)
        if c.method in ("POST", "PATCH") and (
                (seg[0] == "channels" and seg[2:3] == ["messages"])
                or seg[0] == "webhooks"):
            if self.refuse_voice_messages and body.get("flags", 0) & 8192:
                return _json({"code": 50035, "message": "Invalid Form Body",
                                          "errors": {"flags": {"_errors": [{
                                              "code": "MESSAGE_FLAGS_INVALID",
                                              "message": "Cannot send voice messages"}]}}},
                                         status=400)
            channel = seg[1] if seg[0] == "channels" else "1464011821823801768"
            message_id = seg[-1] if c.method == "PATCH" else None
            return _json(self._message(channel, body, c, message_id))
        if c.method == "DELETE":
            return web.Response(status=204)
        return _json({"code": 0, "message": f"404: Not Found ({c.path})"},
                                 status=404)

    def _message(self, channel: str, body: dict[str, Any], c: Call,
                 message_id: str | None = None) -> dict[str, Any]:
        mid = message_id if message_id and message_id.isdigit() else self._id()
        attachments = []
        for i, meta in enumerate(body.get("attachments") or []):
            name, ctype, data = c.files.get(f"files[{meta.get('id', i)}]", ("", "", b""))
            attachments.append({
                "id": self._id(), "filename": meta.get("filename") or name,
                "size": len(data), "url": f"{self.url}/cdn/{mid}-{i}",
                "proxy_url": f"{self.url}/cdn/{mid}-{i}", "content_type": "audio/ogg"
                if name.endswith(".ogg") else ctype,
                **({"duration_secs": meta["duration_secs"], "waveform": meta["waveform"]}
                   if "waveform" in meta else {})})
        return {
            "id": mid, "type": 0, "content": body.get("content") or "", "channel_id": channel,
            "author": {k: BOT_USER[k] for k in ("id", "username", "avatar", "discriminator",
                                                 "bot", "global_name")},
            "attachments": attachments, "embeds": body.get("embeds") or [],
            "components": body.get("components") or [], "mentions": [], "mention_roles": [],
            "pinned": False, "mention_everyone": False, "tts": False,
            "timestamp": "2026-03-14T18:45:02.512000+00:00",
            "edited_timestamp": "2026-03-14T18:45:03.100000+00:00" if message_id else None,
            "flags": body.get("flags", 0), "nonce": None,
        }


def _json(data: Any, status: int = 200) -> web.Response:
    """Discord answers ``Content-Type: application/json`` exactly (discord.py checks it)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def fixture(name: str) -> dict[str, Any]:
    """The dispatch ``d`` of a gateway payload in shared/fixtures (``discord/...`` captured,
    ``constructed/discord/...`` written from the API docs), as a fresh copy."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(data.get("d", data) if "op" in data else data)


def command(name: str, options: list[dict[str, Any]] | None = None, *, guild: bool = False,
            kind: int = 2, interaction_id: str = "1483183131092422191") -> dict[str, Any]:
    """A slash-command (type 2) or autocomplete (type 4) interaction: the captured DM story
    interaction, or the constructed guild one, with another command and options."""
    d = fixture("constructed/discord/gateway_interaction_create_type4_autocomplete_story_genre"
                ".json" if guild else
                "constructed/discord/gateway_interaction_create_type2_dm_story_options.json")
    d["type"], d["id"] = kind, interaction_id
    d["data"] = {"id": d["data"]["id"], "name": name, "type": 1, "options": options or []}
    return d


def component(custom_id: str, *, values: list[str] | None = None, guild: bool = False,
              interaction_id: str = "1483183131092499999") -> dict[str, Any]:
    """A button click (or, with ``values``, a string select) from the same user and channel
    as :func:`command`."""
    d = command("x", guild=guild, kind=3, interaction_id=interaction_id)
    d["data"] = {"custom_id": custom_id, "component_type": 3 if values is not None else 2}
    if values is not None:
        d["data"]["values"] = values
    return d
