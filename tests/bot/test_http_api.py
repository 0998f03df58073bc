"""The HTTP API: the real FastAPI app over a real engine (FakeLLM), driven with httpx."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.http.app import create_app
from engine.engine import Engine
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import doppel, doppel_env, write_config
from tests.conftest import ROOT

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, api_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://doppel") as c:
        yield c


def events(body: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in body.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


async def test_interact_streams_sse_and_stores(client: httpx.AsyncClient, engine: Engine,
                                               fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("Hello from Phillip. The rent roll is in, talk soon.")
    r = await client.post("/v1/interact", json={"user": "u1", "text": "hi", "voice": True},
                          headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    kinds = [k for k, _ in evs[:-1]]  # in pieces as it is written (a word may wait for
    assert len(kinds) >= 3 and set(kinds) == {"chunk"}  # the next: an address is whole)
    kind, done = evs[-1]
    assert kind == "done" and done["status"] == "complete"
    assert done["text"] == "Hello from Phillip. The rent roll is in, talk soon."
    audio = await client.get(str(done["audio_url"]), headers=AUTH)
    assert audio.status_code == 200 and audio.content[:4] == b"OggS"
    assert (await client.get("/v1/audio/../../etc/passwd", headers=AUTH)).status_code == 404


async def test_auth_errors_and_limits(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/interact", json={"user": "u", "text": "hi"})).status_code \
        == 401
    r = await client.post("/v1/interact", json={"user": "u", "text": "hi"},
                          headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await client.post("/v1/interact", json={"user": "u", "text": "hi", "persona": "bob"},
                          headers=AUTH)
    assert r.status_code == 400 and "no persona called 'bob'" in r.json()["error"]
    r = await client.post("/v1/interact", json={"user": "", "text": "hi"}, headers=AUTH)
    assert r.status_code == 422
    health = await client.get("/health")
    assert health.json()["ok"] is True and "llm" in health.json()["queues"]


async def test_stories_favourites_and_metrics(client: httpx.AsyncClient,
                                              fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("Moon Boat\nA boat sailed to the moon.")
    r = await client.post("/v1/stories", json={"user": "kid", "genre": "fantasy"},
                          headers=AUTH)
    story = r.json()
    assert r.status_code == 200 and story["title"] == "Moon Boat"
    [cover] = story["pictures"]  # no image model: the neutral cover card
    assert (cover["source"], cover["caption"]) == ("card", "Moon Boat")
    got = await client.get(cover["url"], headers=AUTH)
    assert got.headers["content-type"] == "image/png" and got.content.startswith(b"\x89PNG")
    listed = await client.get(f"/v1/stories/{story['id']}/pictures", params={"user": "kid"},
                              headers=AUTH)
    assert listed.json()["pictures"] == [cover]
    theirs = await client.get(f"/v1/stories/{story['id']}/pictures/0",
                              params={"user": "stranger"}, headers=AUTH)
    assert theirs.status_code == 404
    r = await client.post(f"/v1/stories/{story['id']}/favourite", params={"user": "kid"},
                          headers=AUTH)
    assert r.json()["favourite"] is True
    history = (await client.get("/v1/stories", params={"user": "kid"}, headers=AUTH)).json()
    assert history["groups"][0]["label"] == "Today"
    favs = (await client.get("/v1/favourites", params={"user": "kid"}, headers=AUTH)).json()
    assert [s["id"] for s in favs["stories"]] == [story["id"]]
    other = await client.post(f"/v1/stories/{story['id']}/favourite",
                              params={"user": "stranger"}, headers=AUTH)
    assert other.status_code == 400
    for photo, said in (("not base64!", "photo_base64 is not base64."),
                        (base64.b64encode(b"\x89PNG broken").decode(), "vision model")):
        r = await client.post("/v1/stories", json={"user": "kid", "photo_base64": photo},
                              headers=AUTH)
        assert r.status_code >= 400 and said in r.json()["error"], r.json()
    bad = await client.post("/v1/stories", json={"user": "kid", "prompt": "a gun fight"},
                            headers=AUTH)
    assert bad.status_code == 400 and "children's story" in bad.json()["error"]
    text = (await client.get("/metrics", headers=AUTH)).text
    assert 'doppel_queue_depth{resource="llm"} 0' in text
    assert 'doppel_jobs_total{kind="story",state="done"} 1' in text
    assert "doppel_job_wait_seconds_sum" in text and "doppel_tokens_per_second" in text


async def test_openapi_schema_lists_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/v1/interact", "/v1/stories", "/v1/favourites", "/health", "/metrics"} <= set(paths)


@pytest.mark.model
def test_doppel_serve_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(doppel("--config", str(cfg), "serve", "--port", str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=doppel_env(DOPPEL_API_KEY=KEY), cwd=ROOT)
    try:
        deadline = time.monotonic() + HANG_S
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert health.json()["ok"] is True
        r = httpx.post(f"http://127.0.0.1:{port}/v1/interact", headers=AUTH, timeout=HANG_S,
                       json={"user": "u", "text": "Hello!", "persona": "storyteller"})
        assert events(r.text)[-1][1]["status"] in ("complete", "truncated")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "engine stopped" in err and KEY not in err


async def test_export_then_forget_over_http(client: httpx.AsyncClient, engine: Engine,
                                            fake_llm: FakeLLM) -> None:
    import io
    import zipfile

    fake_llm.replies.append("Noted, Ann.")
    await client.post("/v1/interact", json={"user": "ann", "text": "my note zq-77"},
                      headers=AUTH)
    r = await client.get("/v1/export", params={"user": "ann"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    data = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("doppel-export.json"))
    assert data["conversations"][0]["messages"][0]["content"] == "my note zq-77"
    assert (await client.delete("/v1/users/ann", headers=AUTH)).status_code == 400
    r = await client.delete("/v1/users/ann", params={"confirm": "true"}, headers=AUTH)
    assert r.json() == {"forgotten": True}
    r = await client.get("/v1/export", params={"user": "ann"}, headers=AUTH)
    assert (r.status_code, r.json()) == (404, {"error": "nothing is stored about this user"})
    assert (await client.get("/v1/export", params={"user": "ann"})).status_code == 401


async def test_invalid_input_is_named_never_echoed(client: httpx.AsyncClient,
                                                   engine: Engine) -> None:
    huge = "z" * 100_000
    r = await client.post("/v1/interact", json={"user": "ann", "text": huge}, headers=AUTH)
    assert r.status_code == 400 and "4000" in r.json()["error"]  # the engine's own limit
    assert huge[:50] not in r.text
    r = await client.post("/v1/interact", json={"user": "u" * 500, "text": huge}, headers=AUTH)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.user"
    assert huge[:50] not in r.text and "u" * 100 not in r.text


async def test_a_users_key_acts_only_for_that_user(client: httpx.AsyncClient, engine: Engine,
                                                   fake_llm: FakeLLM) -> None:
    async def key_for(user: str, *scopes: str) -> tuple[int, dict[str, str]]:
        r = await client.post("/v1/tokens", json={"user": user, "scopes": list(scopes),
                                                  "name": f"{user}'s app"}, headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()["id"], {"Authorization": f"Bearer {r.json()['secret']}"}

    ann_id, ann = await key_for("ann", "chat", "account")
    _, bob = await key_for("telegram:42", "chat")
    fake_llm.replies.extend(["Noted, Ann.", "Hi Bob."])
    r = await client.post("/v1/interact", json={"text": "my note zq-88", "voice": True},
                          headers=ann)
    done = events(r.text)[-1][1]
    assert r.status_code == 200 and done["text"] == "Noted, Ann."
    await client.post("/v1/interact", json={"text": "hello"}, headers=bob)

    # Ann's key reads and deletes Ann, and no one else.
    assert (await client.get("/v1/export", headers=ann)).status_code == 200
    for method, url, params in (("GET", "/v1/export", {"user": "telegram:42"}),
                                ("GET", "/v1/stories", {"user": "telegram:42"}),
                                ("DELETE", "/v1/users/telegram:42", {"confirm": "true"})):
        r = await client.request(method, url, params=params, headers=ann)
        assert r.status_code == 403 and "its own user" in r.json()["detail"]
    r = await client.post("/v1/interact", json={"user": "telegram:42", "text": "hi"},
                          headers=ann)
    assert r.status_code == 403
    their_audio = await client.get(str(done["audio_url"]), headers=bob)
    assert their_audio.status_code == 404  # Ann's voice note is not Bob's to fetch
    assert (await client.get(str(done["audio_url"]), headers=ann)).status_code == 200
    # Scopes: Bob's key may chat but not export; neither may do the operator's work.
    r = await client.get("/v1/export", headers=bob)
    assert r.status_code == 403 and "'account' scope" in r.json()["detail"]
    for url in ("/metrics", "/v1/tokens"):
        assert (await client.get(url, headers=ann)).status_code == 403
    # The operator key reaches anyone; the bot's Telegram user is the same person.
    r = await client.get("/v1/export", params={"user": "telegram:42"}, headers=AUTH)
    assert r.status_code == 200
    listed = (await client.get("/v1/tokens", headers=AUTH)).json()["tokens"]
    assert [(t["user"], t["scopes"]) for t in listed] == [("api:ann", ["account", "chat"]),
                                                          ("telegram:42", ["chat"])]
    assert listed[0]["last_used_at"] is not None and "secret" not in listed[0]
    # Ann deletes herself; her key goes with her.
    r = await client.delete("/v1/users/ann", params={"confirm": "true"}, headers=ann)
    assert r.json() == {"forgotten": True}
    assert (await client.get("/v1/stories", headers=ann)).status_code == 401
    assert ann_id not in [t["id"] for t in
                          (await client.get("/v1/tokens", headers=AUTH)).json()["tokens"]]
    # Revoked keys stop working at once.
    bob_id = listed[1]["id"]
    assert (await client.delete(f"/v1/tokens/{bob_id}", headers=AUTH)).status_code == 200
    assert (await client.get("/v1/stories", headers=bob)).status_code == 401
    r = await client.post("/v1/tokens", json={"user": "x", "scopes": ["root"]}, headers=AUTH)
    assert r.status_code == 400 and "not root" in r.json()["error"]
    r = await client.get("/v1/stories", headers=AUTH)  # the operator must name the user
    assert r.status_code == 422
