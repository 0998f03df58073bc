"""The one composition root: ``async with open_engine(config, MEMORY) as engine``
builds the engine and its backends once, starts it for what the command needs, and stops
it however the block ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from engine.profile import MODEL, Profile

if TYPE_CHECKING:  # imported when an engine is opened: the CLI starts fast without it
    from engine.config import Config
    from engine.engine import Engine
    from engine.llm.base import LLMBackend
    from engine.memory.embed import Embedder


@asynccontextmanager
async def open_engine(config: Config, profile: Profile = MODEL, *,
                      llm: LLMBackend | None = None,
                      embedder: Embedder | None = None) -> AsyncIterator[Engine]:
    """A started engine, stopped when the block ends."""
    from engine.engine import Engine

    engine = Engine(config, llm=llm, embedder=embedder)
    await engine.start(profile)
    try:
        yield engine
    finally:
        await engine.stop()
