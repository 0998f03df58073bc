"""Plain values that cross the engine's boundary to adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine.errors import DoppelError
from engine.memory.retrieve import Hit
from engine.scheduler import KindMetrics


@dataclass(frozen=True)
class UserRef:
    """Who is talking, as the adapter knows them."""

    platform: str
    user_id: str
    display_name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"

    @classmethod
    def parse(cls, text: str, platform: str = "api") -> UserRef:
        """``telegram:42`` is that Telegram user; a bare id is one of ``platform``."""
        name, sep, user_id = text.partition(":")
        return cls(name, user_id) if sep and name and user_id else cls(platform, text)


@dataclass(frozen=True)
class SourceCard:
    """A source a reply drew on, as shown beside it: ``[n]``, its date and title, and
    the start of what memory gave the model."""

    n: int
    date: str
    title: str
    kind: str
    excerpt: str

    @classmethod
    def of(cls, hit: Hit, n: int) -> SourceCard:
        return cls(n, hit.date, hit.title(), hit.kind, hit.text[:600])

    @classmethod
    def all_of(cls, hits: list[Hit]) -> tuple[SourceCard, ...]:
        return tuple(cls.of(h, n) for n, h in enumerate(hits, 1))


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str
    content: str
    status: str
    created_at: datetime
    disclosure: str = ""
    """What was shown before the reply (the AI disclosure on a persona's first reply)."""
    sources: tuple[SourceCard, ...] = ()


@dataclass(frozen=True)
class ChatResult:
    """How a reply ended. ``error`` is set unless ``status`` is ``complete``."""

    status: str
    text: str
    message_id: int | None
    tokens: int
    error: DoppelError | None = None
    wait_s: float | None = None
    first_token_s: float | None = None
    run_s: float | None = None
    sources: list[Hit] = field(default_factory=list)
    """Memory the reply was grounded on; empty when memory had nothing."""

    @property
    def grounded(self) -> bool:
        return bool(self.sources)

    @property
    def truncated(self) -> bool:
        """The model ran out of room; the text ends at its last whole sentence."""
        return self.status == "truncated"


@dataclass(frozen=True)
class AskResult:
    question: str
    answer: str
    grounded: bool
    sources: list[Hit]


@dataclass(frozen=True)
class EngineStatus:
    """The engine now, for operators (``/health``, ``/metrics``, the web app's admin page)."""

    started: bool
    queues: dict[str, dict[str, int]]
    """Per resource (llm, tts, ...): jobs ``queued`` and ``running``."""
    kinds: dict[str, KindMetrics]
    """Finished jobs per kind: counts by outcome, summed wait and run seconds."""
    queued: int
    model: str
    building: dict[str, int]
    """Personas whose memory is being built, and how far (percent)."""
    generated_tokens: int
    tokens_per_s: float
    problem: str = ""
    """What is wrong with the engine's storage ("" when nothing): e.g. the database file
    deleted under it."""
