"""The ``served`` fixture: a ``doppel serve`` process over the fake model server; and
``chromium``, a browser whose microphone says ``SPOKEN`` (one for a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auxil.llm_api import FakeLLMServer
from tests.auxil.speech import speech_wav
from tests.bot.web.browser import SPOKEN, Doppel, chromium_hearing


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Doppel, FakeLLMServer]]:
    with FakeLLMServer(token_delay_s=0.05) as llm:
        server = Doppel(tmp_path, llm)
        server.start()
        try:
            yield server, llm
        finally:
            if server.proc is not None:
                server.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium_hearing(speech_wav(SPOKEN), tmp_path_factory.mktemp("mic")) as browser:
        yield browser
