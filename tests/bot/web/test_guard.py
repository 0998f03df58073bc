"""Request-level checks of the web app's defences through the real ``doppel serve``
process: security headers on every page, nothing private kept by the browser's HTTP
cache, and request bodies cut off at their limit while they are read, chunked or not."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import aiohttp
import httpx
import pytest
import websockets
from aiohttp import web
from multidict import CIMultiDict

from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import FakeLLMServer
from tests.auxil.servers import LoopbackServer, wait_until
from tests.bot.test_console import doppel, doppel_env
from tests.bot.web.browser import Doppel
from tests.conftest import ROOT

WEB = {"x-doppel": "web"}


def signed_in(server: Doppel, user: str = "telegram:7001") -> httpx.Client:
    """A client with the session cookie a sign-in link gives (the browser's way)."""
    client = httpx.Client(base_url=server.url, timeout=HANG_S, headers=WEB)
    token = server.link(user).rsplit("/", 1)[-1]
    assert client.post(f"/login/{token}").status_code == 303
    assert "doppel_session" in client.cookies
    return client


def test_every_page_has_the_security_headers_and_private_ones_are_not_kept(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    server, _ = served
    page = httpx.get(server.url)
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    with closing(signed_in(server)) as client:
        for path in ("/web/api/me", "/web/api/history", "/web/api/favourites"):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
        r = client.post("/web/api/stories", json={"prompt": "a kite that wants to fly"})
        story = int(re.findall(r'"id": (\d+)', r.text)[-1])
        for path in (f"/web/api/stories/{story}", f"/web/api/stories/{story}/pictures/0"):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
    assert httpx.get(f"{server.url}/web/api/me").headers["cache-control"] == "no-store"


def test_bodies_are_cut_off_at_their_limit_while_read(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    server, _ = served
    sent = [0]

    def chunks(mb: int) -> Iterator[bytes]:
        for _ in range(mb):
            sent[0] += 1
            yield bytes(1024 * 1024)

    with closing(signed_in(server)) as client:
        # A voice note over [voice] max_input_mb (20 MB), chunked: no length to go by.
        try:
            r = client.post("/web/api/voice", content=chunks(300))
            status, said = r.status_code, r.json()["error"]
        except httpx.TransportError:  # closed on us while still sending: cut off too
            status, said = 413, "That is more than 20 MB."
        assert (status, said) == (413, "That is more than 20 MB.")
        assert sent[0] < 300  # not read whole before the answer
        # A declared length over the limit is refused before anything is read.
        r = client.post("/web/api/voice", content=bytes(21 * 1024 * 1024))
        assert r.status_code == 413
        # JSON routes take 1 MB, chunked or not.
        sent[0] = 0
        try:
            r = client.post("/web/api/chat", content=chunks(50),
                            headers={"content-type": "application/json"})
            status = r.status_code
        except httpx.TransportError:
            status = 413
        assert status == 413 and sent[0] < 50
        assert client.get("/web/api/me").status_code == 200  # the server is fine


def test_bad_input_gets_a_4xx_with_one_short_line(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    """Never a 500 and never the input sent back: a huge time zone or persona name, an id
    past the database's integers, cloning a voice where XTTS is not set up."""
    server, _ = served
    with closing(signed_in(server)) as client:
        r = client.post("/web/api/settings", json={"timezone": "Europe/" + "x" * 5000})
        assert r.status_code == 400 and len(r.text) < 300, r.text
        assert "I don't know the timezone" in r.json()["error"]
        r = client.post("/web/api/settings", json={"persona": "p" * 500_000})
        assert r.status_code == 400 and len(r.text) < 300, r.text
        assert r.json()["error"].endswith("Available: allen, storyteller.")
        for path in ("/web/api/stories/99999999999999999999999",
                     "/web/api/stories/99999999999999999999999/pictures/0"):
            r = client.get(path)
            assert r.status_code == 422 and len(r.text) < 500, (path, r.text)
        r = client.post("/web/api/messages/99999999999999999999999/favourite")
        assert r.status_code == 422
        r = client.post("/web/api/voices/clone", json={"persona": "allen", "name": "Al"})
        assert r.status_code in (400, 403) and "XTTS" in r.json()["error"], r.text


class Proxy(LoopbackServer):
    """A reverse proxy on loopback as operators put one in front (TLS ended there): it
    rewrites Host to the upstream's and says the client came over https."""

    upstream = ""

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers["X-Forwarded-Proto"] = "https"
        async with aiohttp.ClientSession() as s, s.request(
                request.method, self.upstream + request.path_qs, headers=headers,
                data=await request.read(), allow_redirects=False) as r:
            body = await r.read()
            kept = [(k, v) for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            return web.Response(status=r.status, body=body, headers=CIMultiDict(kept))


async def _call_opens(port: int, cookie: str, origin: str) -> str:
    async with websockets.connect(
            f"ws://127.0.0.1:{port}/web/api/call", open_timeout=HANG_S,
            additional_headers={"Origin": origin, "Cookie": f"doppel_session={cookie}"}) as ws:
        return str(json.loads(await ws.recv())["type"])


def test_sign_in_and_calls_behind_a_reverse_proxy(tmp_path: Path) -> None:
    """Behind a proxy that rewrites Host, the page's origin is ``[web] public_url``'s:
    signing in and calling work there, and any other origin is still refused."""
    with Proxy() as proxy, FakeLLMServer() as llm:
        server = Doppel(tmp_path, llm, f'[web]\npublic_url = "{proxy.url}"\n')
        proxy.upstream = server.url
        server.start()
        try:
            link = server.link("telegram:7001")  # names the public address
            assert link.startswith(f"{proxy.url}/login/")
            with httpx.Client(timeout=HANG_S) as browser:
                evil = browser.post(link, headers={"Origin": "http://evil.example"})
                assert evil.status_code == 403
                r = browser.post(link, headers={"Origin": proxy.url})
                assert r.status_code == 303, r.text
                cookie = browser.cookies["doppel_session"]
                assert browser.get(f"{proxy.url}/web/api/me").status_code == 200
            assert asyncio.run(_call_opens(server.port, cookie, proxy.url)) == "ready"
            with pytest.raises(websockets.InvalidStatus):
                asyncio.run(_call_opens(server.port, cookie, "http://evil.example"))
        finally:
            server.stop()


def api_key(server: Doppel, user: str) -> str:
    """A user's API key, made the operator's way (``doppel api-token create``)."""
    made = subprocess.run(doppel("--config", str(server.config), "api-token", "create", user),
                          cwd=ROOT, env=doppel_env(), capture_output=True, text=True,
                          timeout=HANG_S, check=True)
    found = re.search(r"dpl_\S+", made.stdout)
    assert found, made.stdout
    return found.group(0)


def test_the_api_key_is_checked_before_the_body_is_read(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    """Issue 33: a 400 MB unauthenticated POST to /v1/interact was read whole (2.13 GB)
    before the 401. Here the body is never sent at all: the answer comes without it."""
    server, _ = served
    key = api_key(server, "telegram:7001")

    def status(authorization: str | None, length: int = 400 * 1024 * 1024) -> int:
        head = (f"POST /v1/interact HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n")
        if authorization is not None:
            head += f"Authorization: {authorization}\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=HANG_S) as s:
            s.sendall((head + "\r\n").encode())  # and not a byte of the body
            answer = s.recv(4096).decode(errors="replace")
        return int(answer.split(" ", 2)[1])

    assert status(None) == 401
    assert status("Bearer dpl_not_a_key") == 401
    # A key is taken only as "Bearer KEY": not bare, not with space around it.
    for sloppy in (key, f"Bearer {key} ", f"Bearer  {key}",
                   f"Basic {key}"):
        assert status(sloppy) == 401, sloppy
    assert status(f"Bearer {key}") == 413  # a good key: then the body's limit
    r = httpx.post(f"{server.url}/v1/interact", json={"text": "hello"},
                   headers={"Authorization": f"Bearer {key}"}, timeout=HANG_S)
    assert r.status_code == 200


def test_a_dropped_api_stream_stops_its_reply_and_cancel_is_a_route(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    """Issue 33: a /v1/interact stream the client dropped ran to its end and filled the
    user's share ("... or /cancel them", and the API had no cancel)."""
    server, llm = served
    key = api_key(server, "api:drop")
    with httpx.Client(base_url=server.url, timeout=HANG_S,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        with client.stream("POST", "/v1/interact",
                           json={"text": "Please hold on and think it over"}) as r:
            assert r.status_code == 200
            next(line for line in r.iter_lines() if line.startswith("event: chunk"))
        # The client went away while the reply was being written: the model's stream is
        # closed (the job stopped) and what was written is kept, as cancelled.
        assert server.proc is not None
        wait_until(lambda: llm.abandoned == 1, server.proc, "the model's stream closed")
        wait_until(lambda: server.db("SELECT status FROM messages WHERE role = "
                                     "'assistant'") == [("cancelled",)], server.proc,
                   "the reply stored as cancelled")
        with client.stream("POST", "/v1/interact", json={"text": "Please hold on"}) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("event: chunk"))
            assert client.post("/v1/cancel").json() == {"cancelled": 1}
            rest = list(lines)  # and it ends at once, saying so
        assert rest.count("event: done") == 1
        done = json.loads(rest[rest.index("event: done") + 1].removeprefix("data: "))
        assert done["status"] == "cancelled"


def test_idle_and_slow_connections_never_crowd_out_real_users(tmp_path: Path) -> None:
    """Issue 33: ~22k idle TCP connections took every file descriptor (/health and real
    users timed out) and half-sent headers were kept past 65 s. Each connection has
    [api] request_head_s for a request head; past [api] max_connections the one waiting
    longest goes; real requests are answered throughout."""
    with FakeLLMServer() as llm:
        server = Doppel(tmp_path, llm, extra="max_connections = 20\nrequest_head_s = 1\n")
        server.start()
        try:
            idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
            slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
            for s in slow:  # a request head begun, never finished
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            with httpx.Client(base_url=server.url, timeout=HANG_S) as client:
                for _ in range(20):
                    assert client.get("/health").status_code == 200
            for s in idle + slow:  # each is closed by the server (recv: b"" at its end)
                s.settimeout(HANG_S)
                assert s.recv(1024) == b""
                s.close()
            assert httpx.get(f"{server.url}/health", timeout=HANG_S).status_code == 200
        finally:
            server.stop()


def test_a_deleted_database_stops_the_server_saying_why(
        served: tuple[Doppel, FakeLLMServer]) -> None:
    """Issue 33: the database deleted under `doppel serve`/`run` went unnoticed; now the
    process says so (log, /health) and ends non-zero rather than take in what it would
    lose at its next start."""
    server, _ = served
    assert httpx.get(f"{server.url}/health", timeout=HANG_S).json()["ok"] is True
    db = server.tmp / "data" / "doppel.db"
    for path in (db, db.with_name("doppel.db-wal"), db.with_name("doppel.db-shm")):
        path.unlink(missing_ok=True)
    assert server.proc is not None
    assert server.proc.wait(HANG_S) == 1
    server.proc = None
    log = (server.tmp / "serve.log").read_text()
    assert f"{db} was deleted while Doppel ran" in log and "Traceback" not in log
