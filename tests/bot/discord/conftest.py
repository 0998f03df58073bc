"""The fake Discord API every Discord test talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.auxil.discord_api import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    api = FakeDiscord()
    await api.start()
    yield api
    await api.close()
