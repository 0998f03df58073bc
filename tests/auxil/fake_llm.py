"""FakeLLM: a deterministic stand-in at the LLM backend boundary (for scheduler/engine tests).

It "tokenizes" by whitespace, streams scripted replies word by word and records every
prompt it receives. A ``gate`` (threading.Event) holds generation until a test opens it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, LoraView, SamplingParams


class FakeLLM(LLMBackend):
    message_overhead_tokens = 2
    HANG = "<hang until cancelled>"
    """A scripted reply that produces nothing until the job is cancelled or times out;
    after words ("Once upon a time. <hang ...>"), those words first."""

    def __init__(
        self,
        replies: Sequence[str] = (),
        *,
        default: str = "Hello from the fake model.",
        n_ctx: int = 2048,
        token_delay_s: float = 0.0,
    ) -> None:
        self.replies: deque[str] = deque(replies)
        self.default = default
        self._n_ctx = n_ctx
        self.token_delay_s = token_delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        """Set when a generation begins (before the gate)."""
        self.prompts: list[list[ChatMessage]] = []
        self.threads: set[int] = set()
        self.loaded = False
        self.closed = False
        self.adapters: list[Path | None] = []
        """The LoRA of each generation (None: the bare model), in order."""
        self.loras_loaded: list[Path] = []
        self._lora: Path | None = None

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def load(self) -> None:
        self.loaded = True

    def close(self) -> None:
        self.closed = True

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def with_lora(self, path: Path, scale: float = 1.0) -> LLMBackend:
        return _FakeLora(self, path)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        self.adapters.append(self._lora)
        self._lora = None
        self.threads.add(threading.get_ident())
        self.prompts.append(list(messages))
        self.started.set()
        while not self.gate.wait(0.01):
            if should_stop():
                return
        text = self.replies.popleft() if self.replies else self.default
        text, hang, _ = text.partition(self.HANG)  # "words <hang ...>": the words, then hang
        for i, word in enumerate(text.split(" ")[: params.max_tokens] if text else []):
            if should_stop():
                return
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            if meter is not None:  # a fake score: longer words are less likely
                meter.add(-len(word) / 10)
            yield word if i == 0 else " " + word
        while hang and not should_stop():
            time.sleep(0.005)


class _FakeLora(LoraView):
    """The fake model "with a LoRA": the same scripted replies, the adapter recorded."""

    base: FakeLLM

    def load(self) -> None:
        self.base.loras_loaded.append(self.lora[0])

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        self.base._lora = self.lora[0]  # the fake and its view are one unit
        yield from self.base.stream_chat(messages, params, should_stop, meter)


async def introduced(engine: Any, *users: Any) -> None:
    """Mark the users as already told that each persona is an AI (the first reply of a
    persona carries that disclosure), for tests that compare reply texts exactly."""
    for user in users:
        for persona in engine.personas.all():
            await engine.conversations.set_setting(user, f"disclosed:{persona.name}", "test")
