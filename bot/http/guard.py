"""What every HTTP response and request body goes through (an ASGI middleware around the
web app and the API):

- security headers on every response: a strict Content-Security-Policy (scripts, styles
  and connections from this origin only, no inline script, never framed), nosniff, a
  referrer policy; private responses (the web app's API, sign-in, the HTTP API) are
  ``no-store``: after sign-out or "forget me" the browser's HTTP cache holds nothing;
- a body limit per route, counted while the body is read, whatever the transfer encoding
  (a chunked upload is cut off at the limit with 413, never read whole first);
- the API's key checked before a byte of the body is read (401 at once, not after a
  400 MB upload).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Path
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; worker-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
PRIVATE = ("/web/api/", "/login/", "/v1/", "/metrics")
"""Responses about a person (or for the operator): never kept by a browser or a proxy."""
MB = 1024 * 1024
DEFAULT_LIMIT = 1 * MB
"""A request body (JSON) at most, where the route takes no upload."""


RowId = Annotated[int, Path(ge=0, le=2**63 - 1)]
"""An id in a URL: a stored row's, so within SQLite's integers (a larger one is a 422 that
says so, not an overflow deep in the database driver)."""


class BodyTooLarge(Exception):
    """A body read past its limit (``HttpGuard`` answers 413)."""


KEYED = ("/v1/", "/metrics")
"""Routes that take only requests with an API key."""


def bearer(header: str) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header, exactly so (no other scheme, no
    space around the key; the scheme's case is free, as HTTP has it), else None."""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key or key != key.strip() or " " in key:
        return None
    return key


class HttpGuard:
    """``limit(path)``: the most bytes a request body to ``path`` may have; ``identify(key)``:
    who an API key is (None: nobody), asked before the body of a request to the API is
    read; the answer is kept in the request's state as ``caller`` for the route."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], int],
                 identify: Callable[[str], Awaitable[object | None]] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit(path)
        private = path.startswith(PRIVATE)
        started = exceeded = False

        async def headed_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if private:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        async def guarded_send(message: Message) -> None:
            # Over the limit: whatever the app makes of the cut-off body (a framework may
            # call it a parse error) is replaced by the 413.
            if exceeded:
                if not started:
                    await _too_large(headed_send, limit)
                return
            await headed_send(message)

        if (self.identify is not None and path.startswith(KEYED)
                and scope["method"] in ("POST", "PUT", "PATCH")):
            key = bearer(_header(scope, b"authorization"))
            who = await self.identify(key) if key is not None else None
            if who is None:
                await _refuse(headed_send, 401, "missing or wrong API key")
                return
            scope.setdefault("state", {})["caller"] = who
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(headed_send, limit)
            return
        read = 0

        async def counted_receive() -> Message:
            nonlocal read, exceeded
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    exceeded = True
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        with contextlib.suppress(BodyTooLarge):  # told below, or by guarded_send
            await self.app(scope, counted_receive, guarded_send)
        if exceeded and not started:
            await _too_large(headed_send, limit)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _content_length(scope: Scope) -> int | None:
    try:
        return int(_header(scope, b"content-length"))
    except ValueError:
        return None


async def _too_large(send: Send, limit: int) -> None:
    await _refuse(send, 413, f"That is more than {limit / MB:g} MB.")


async def _refuse(send: Send, status: int, error: str) -> None:
    """Answer ``status`` with one line, the body left unread (the connection closes)."""
    body = json.dumps({"error": error}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode()),
                          (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
