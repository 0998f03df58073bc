"""The same memory tests against a real Chroma server (`chroma run` on loopback), as a
deployment with ``[memory] chroma_url`` uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.memory.embed import Embedder
from engine.memory.ingest import Ingestor
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.servers import answers, free_port, wait_until
from tests.conftest import MakeConfig
from tests.engine.memory import test_ingest, test_retrieval


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path_factory.mktemp("chroma")), "--host",
         "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/api/v2/heartbeat"), proc, "chroma run", 30)
        yield url
    finally:
        proc.terminate()
        proc.wait(HANG_S)


@pytest.fixture
async def server_engine(make_config: MakeConfig, personas_dir: Path, fake_llm: FakeLLM,
                        embedder: Embedder, chroma_url: str,
                        request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    eng = Engine(make_config(personas={"dir": str(personas_dir)},
                             memory={"chroma_url": chroma_url}), llm=fake_llm,
                 embedder=embedder)
    await eng.start()
    client = eng.memory.store.client
    for name in [c.name for c in client.list_collections()]:
        client.delete_collection(name)  # one server for the module: each test starts empty
    yield eng
    await eng.stop()
    # everything went to the server: no embedded store was made in the data dir
    assert not (eng.config.storage.data_dir / "chroma").exists()


async def test_ingest_then_rerun_adds_nothing(server_engine: Engine) -> None:
    await test_ingest.test_ingest_persona_sources_then_rerun_adds_nothing(server_engine)


async def test_changed_file_reindexed_and_pruned(server_engine: Engine, tmp_path: Path) -> None:
    await test_ingest.test_changed_file_is_reindexed_and_removed_file_pruned(server_engine,
                                                                              tmp_path)


async def test_recall_and_grounded_chat(server_engine: Engine, fake_llm: FakeLLM) -> None:
    persona = server_engine.personas.get("allen")
    await Ingestor(server_engine.memory, persona).run(persona.source_files())
    await test_retrieval.test_recall_finds_the_mail_with_a_citation(server_engine)
    await test_retrieval.test_grounded_chat_quotes_fenced_sources(server_engine, fake_llm)
