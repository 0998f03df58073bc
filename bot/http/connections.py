"""Connections that hold a seat and say nothing: every new connection (and every kept-alive
one between requests) has ``[api] request_head_s`` to send a whole request head, or it is
closed; past ``[api] max_connections`` the connection that has waited longest without a
request is closed to make room. A request being served, an event stream or a live call is
never closed for that. Thousands of idle or slow-header connections (a slowloris) then cost
a few seconds each, never the file descriptors the real users need.

A guard around uvicorn's httptools protocol (``uvicorn.Config(http=...)``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def guarded_http(request_head_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with a deadline for each request head and a cap on idle
    connections."""

    class GuardedHttp(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _waiting_since: float | None = None
        """Since when it waits for a request head (None: serving one, or upgraded)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()
            if len(self.connections) > max_connections:
                self._make_room()

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()  # kept alive: the next request head has its deadline too

        def handle_websocket_upgrade(self) -> None:
            self._stop_waiting()
            super().handle_websocket_upgrade()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            self._stop_waiting()
            self._waiting_since = time.monotonic()
            self._head_timer = self.loop.call_later(request_head_s, self._too_slow)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer, self._waiting_since = None, None

        def _too_slow(self) -> None:
            self._head_timer = None
            if self._waiting_since is not None and not self.transport.is_closing():
                self.transport.close()

        def _make_room(self) -> None:
            waiting = [c for c in self.connections
                       if isinstance(c, GuardedHttp) and c._waiting_since is not None
                       and not c.transport.is_closing()]
            if waiting:
                oldest = min(waiting, key=lambda c: c._waiting_since or 0.0)
                oldest._stop_waiting()
                oldest.transport.close()

    return GuardedHttp


class AcceptFaults:
    """The event loop's handler for accept() failures (out of file descriptors): one log
    line a minute with the count, not a traceback per attempt."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.previous = loop.get_exception_handler()
        self.count = 0
        self.logged_at = 0.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" not in str(context.get("message", "")):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= 60:
            log.error("cannot accept connections: %s (%d times since the last report); "
                      "raise the open-file limit or lower [api] max_connections",
                      context.get("exception"), self.count)
            self.logged_at, self.count = now, 0
