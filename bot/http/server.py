"""The HTTP adapter: the web app and the HTTP API served by uvicorn inside the process's
one event loop, beside the bots and on the same engine (``doppel run``; ``doppel serve``
is the same with no other adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import uvicorn

from bot.http.app import create_app
from bot.http.connections import AcceptFaults, guarded_http
from bot.http.settings import ApiConfig, http_url
from engine.api import ConfigError, Engine

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's lifecycle (``bot/app.py``)
    owns SIGINT/SIGTERM and stops this adapter in its turn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpAdapter:
    name = "http"
    ends_run = False

    def __init__(self, engine: Engine, config: ApiConfig, *, host: str | None = None,
                 port: int | None = None, api: bool = True, web: bool = True) -> None:
        self.engine = engine
        self.host = host or config.host
        self.port = config.port if port is None else port
        self.parts = [p for p, on in (("web app", web), ("API", api)) if on]
        app = create_app(engine, api=api, web=web,
                         api_key=os.environ.get(config.key_env, ""))
        self.server = _Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            http=guarded_http(config.request_head_s, config.max_connections),
            # Open calls and event streams are closed after the engine's grace, not awaited.
            timeout_graceful_shutdown=max(1, int(engine.grace_s))))
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._faults: AcceptFaults | None = None
        self.url = ""

    async def start(self) -> None:
        """Bind (a port in use says so and which key to change) and serve."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise ConfigError(f"[api] host/port: cannot listen on {self.host}:{self.port} "
                              f"({exc.strerror or exc}); choose another [api] port, or turn "
                              f"the web app and API off ([api] web_app, enabled)"
                              ) from None
        self._socket = sock
        loop = asyncio.get_running_loop()
        self._faults = AcceptFaults(loop)
        loop.set_exception_handler(self._faults)
        self.url = http_url(*sock.getsockname()[:2])
        self.engine.web.serving_at(self.url)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():  # failed during start-up: say why
                await self._task
                raise ConfigError(f"the HTTP server on {self.url} did not start")
            await asyncio.sleep(0.02)
        log.info("%s at %s (pid %d)", " and ".join(self.parts), self.engine.web.base_url,
                 os.getpid())

    async def pause(self) -> None:
        """No new connections; requests, event streams and calls already open go on."""
        for server in self.server.servers:
            server.close()

    async def stop(self) -> None:
        """Close open connections (after the grace) and end the server."""
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            self._socket.close()
        if self._faults is not None:
            self._faults.loop.set_exception_handler(self._faults.previous)

    async def wait_closed(self) -> None:
        """Returns if the server ended on its own (it does not, short of a fault)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def interrupt(self) -> bool:
        return False
