"""The LLM on separate worker processes through a real Redis server (redis-server on
loopback, `doppel worker` processes with the bundled model)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.config import Config, load_config
from engine.engine import Engine, UserRef
from engine.llm.base import SamplingParams
from engine.llm.llama_cpp import LlamaCppBackend
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import introduced
from tests.auxil.servers import free_port, listening, wait_until
from tests.bot.test_console import doppel_env
from tests.conftest import ROOT, MakeConfig

pytestmark = pytest.mark.model
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_k=1, seed=1)



@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = Path(sys.executable).parent / "redis-server"
    proc = subprocess.Popen([str(server), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), proc, "redis-server", 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(HANG_S)


def remote_config(make_config: MakeConfig, redis_url: str, workers: int = 1,
                  idle_s: float = 30) -> Config:
    return make_config(llm={"backend": "redis", "redis_url": redis_url, "workers": workers,
                            "remote_idle_timeout_s": idle_s, "n_ctx": 1024})


def start_worker(config_path: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config_path),
                             "worker", "--name", name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=doppel_env(), cwd=ROOT)


@pytest.fixture
def worker_config(tmp_path: Path, redis_url: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(f'[llm]\nredis_url = "{redis_url}"\nn_ctx = 1024\nn_threads = 2\n'
                    f'[personas]\ndir = "{ROOT / "persona_data"}"\n')
    return path


@pytest.fixture
async def workers(worker_config: Path, request: pytest.FixtureRequest
                  ) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    count = getattr(request, "param", 1)
    procs = [start_worker(worker_config, f"w{i}") for i in range(count)]
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(HANG_S)
        except subprocess.TimeoutExpired:
            p.kill()


async def started(engine: Engine, count: int) -> None:
    """Wait until ``count`` workers have announced themselves."""
    deadline = time.monotonic() + HANG_S
    while len(engine.llm.live_workers()) < count:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "workers did not start"
        await asyncio.sleep(0.2)


async def test_a_worker_process_streams_the_same_reply_as_the_local_model(
        make_config: MakeConfig, redis_url: str, workers: list[subprocess.Popen[bytes]],
        worker_config: Path) -> None:
    user = UserRef("telegram", "1")
    remote = Engine(remote_config(make_config, redis_url))
    await remote.start()
    try:
        await started(remote, 1)
        await introduced(remote, user)
        reply = await remote.chat(user, "Tell me about your garden.", persona="storyteller",
                                  params=GREEDY)
        pieces = [p async for p in reply]
        result = await reply.result()
    finally:
        await remote.stop()
    # streamed piece by piece (a greedy 135M reply runs to max_tokens: cut at a sentence)
    assert result.status in ("complete", "truncated") and len(pieces) > 3
    # the same model, fresh (no KV cache from earlier prompts), as the worker has it
    local = Engine(make_config(), llm=LlamaCppBackend(load_config(worker_config).llm))
    await local.start()
    other = UserRef("telegram", "2")  # same data dir: a new user has no history either
    try:
        await introduced(local, other)
        same = await (await local.chat(other, "Tell me about your garden.",
                                       persona="storyteller", params=GREEDY)).result()
    finally:
        await local.stop()
    assert (result.text, result.status) == (same.text, same.status)


@pytest.mark.parametrize("workers", [2], indirect=True)
async def test_two_workers_serve_two_users_at_once_and_cancel_works(
        make_config: MakeConfig, redis_url: str, workers: list[subprocess.Popen[bytes]]
) -> None:
    engine = Engine(remote_config(make_config, redis_url, workers=2))
    await engine.start()
    try:
        await started(engine, 2)
        long = SamplingParams(max_tokens=200, temperature=0.8, seed=3)
        users = [UserRef("telegram", str(i)) for i in range(2)]
        windows: list[tuple[float, float]] = []

        async def talk(user: UserRef) -> None:
            reply = await engine.chat(user, "Tell me a long story about the sea.",
                                      persona="storyteller", params=long)
            first = None
            async for _ in reply:
                first = first or time.monotonic()
            await reply.result()
            windows.append((first or 0.0, time.monotonic()))

        await asyncio.gather(*(talk(u) for u in users))
        (_, first_end), (second_start, _) = sorted(windows)
        assert second_start < first_end  # both replies were being written at once

        # cancel mid-reply: the worker stops and is free for the next job at once
        reply = await engine.chat(users[0], "Another long story, please.",
                                  persona="storyteller", params=long)
        async for _ in reply:
            engine.cancel(users[0])
            break
        assert (await reply.result()).status == "cancelled"
        # The cancelled job freed its worker: the next request is served.
        quick = await (await engine.chat(users[0], "Hello!", persona="storyteller",
                                         params=GREEDY)).result()
        assert quick.status in ("complete", "truncated")
    finally:
        await engine.stop()


async def test_no_worker_or_a_dead_worker_gives_a_clear_message(
        make_config: MakeConfig, redis_url: str, worker_config: Path) -> None:
    # A worker silent for idle_s is taken for dead; a busy machine may delay a live one's
    # first words by seconds, so the window is wide enough for that, small enough to wait.
    engine = Engine(remote_config(make_config, redis_url, idle_s=20))
    await engine.start()
    user = UserRef("telegram", "1")
    try:
        lonely = await (await engine.chat(user, "Anyone there?")).result()
        assert lonely.status == "error" and lonely.error is not None
        assert "not answering right now" in lonely.error.user_message
        worker = start_worker(worker_config, "doomed")
        await started(engine, 1)
        reply = await engine.chat(user, "Tell me a long story.", params=SamplingParams(
            max_tokens=400, temperature=0.8, seed=2))
        writing = False
        async for _ in reply:
            writing = True  # the worker is writing the reply
            break
        worker.kill()  # kill -9 in the middle of the job
        worker.wait(HANG_S)
        assert writing
        dead = await asyncio.wait_for(reply.result(), HANG_S)
        assert dead.status == "error" and dead.error is not None
        assert "not answering right now" in dead.error.user_message
    finally:
        await engine.stop()
