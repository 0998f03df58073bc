"""The OpenAI-compatible backend against a real llama_cpp.server on loopback, serving the
bundled GGUF (llama-cpp-python's [server] extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from engine.engine import Engine, UserRef
from engine.errors import ConfigError, ModelError
from engine.llm.base import ChatMessage, SamplingParams
from engine.llm.llama_cpp import bundled_model_path
from engine.llm.openai_compat import OpenAICompatBackend
from tests.auxil.eventually import HANG_S
from tests.auxil.servers import answers, free_port, wait_until
from tests.conftest import MakeConfig

pytestmark = pytest.mark.model




@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "2048",
         "--interrupt_requests", "False"],  # its default: a new request aborts a running one
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until(lambda: answers(f"{base}/models"), proc, "llama_cpp.server")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_S)


def test_streams_and_stops_on_request(server: str, make_config: MakeConfig) -> None:
    backend = OpenAICompatBackend(make_config(llm={"backend": "openai",
                                                   "api_base": server}).llm)
    backend.load()
    assert backend.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    messages = [ChatMessage("user", "Count from one to twenty.")]
    params = SamplingParams(max_tokens=32, temperature=0.0, seed=1)
    pieces = list(backend.stream_chat(messages, params, lambda: False))
    assert len(pieces) > 3 and "".join(pieces).strip()
    assert pieces == list(backend.stream_chat(messages, params, lambda: False))  # greedy
    stopped: list[str] = []
    for piece in backend.stream_chat(messages, params, lambda: len(stopped) >= 2):
        stopped.append(piece)
    assert len(stopped) == 2
    backend.close()


async def test_engine_chat_through_the_server_with_parallel_workers(
    server: str, make_config: MakeConfig
) -> None:
    engine = Engine(make_config(llm={"backend": "openai", "api_base": server, "workers": 2,
                                     "max_tokens": 16, "temperature": 0.0}))
    await engine.start()
    try:
        replies = [await engine.chat(UserRef("api", str(i)), "Hello, who are you?")
                   for i in range(2)]
        results = [await r.result() for r in replies]
        assert all(r.status in ("complete", "truncated") and r.text.strip() for r in results)
        assert engine.scheduler.stats()["llm"] == {"queued": 0, "running": 0}
        assert results[0].first_token_s is not None
        stored = await engine.history(UserRef("api", "0"))
        assert [m.role for m in stored] == ["user", "assistant"]
    finally:
        await engine.stop()


def test_unreachable_server_and_bad_config_are_clear(make_config: MakeConfig) -> None:
    backend = OpenAICompatBackend(make_config(llm={
        "backend": "openai", "api_base": f"http://127.0.0.1:{free_port()}/v1"}).llm)
    with pytest.raises(ModelError, match="did not answer /models"):
        backend.load()
    assert make_config(llm={"workers": 4}).llm.workers == 4  # llama.cpp: batched decoding
    with pytest.raises(ConfigError, match=r"\[llm\] api_base must be an http\(s\) URL"):
        make_config(llm={"backend": "openai"})
