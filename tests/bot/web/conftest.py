"""The ``served`` fixture: a ``doppel serve`` process over the fake model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auxil.llm_api import FakeLLMServer
from tests.bot.web.browser import Doppel


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
