"""What a process needs of the engine: the profile ``open_engine`` starts it with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """What a process needs of the engine."""

    load_llm: bool = True
    """Load the chat model (tools that only read memory or records do not)."""
    exclusive: bool = True
    """Hold the data dir: recover unfinished work, open the embedded vector store. A
    shared engine reads and changes records only, beside a running server."""
    background_ingest: bool = False
    """Build a persona's missing memory while people already talk (a server)."""


SERVER = Profile(background_ingest=True)
"""``doppel run``/``serve``: everything, memory built in the background."""
MODEL = Profile()
"""One-shot commands that ask the model (``chat``, ``ask``, ``story create``)."""
MEMORY = Profile(load_llm=False)
"""Commands that read or change memory without the model (``ingest``, ``recall``)."""
RECORDS = Profile(load_llm=False, exclusive=False)
"""Commands on records only (history, users, keys), beside a running server."""
