"""The LLM backend interface. Implementations are blocking and run on a scheduler thread."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from engine.config import LLMConfig
from engine.errors import ConfigError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    """None draws a random seed."""
    stop: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> SamplingParams:
        return cls(
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            min_p=cfg.min_p,
            repeat_penalty=cfg.repeat_penalty,
            seed=None if cfg.seed < 0 else cfg.seed,
        )

    def with_(self, **changes: object) -> SamplingParams:
        return replace(self, **changes)  # type: ignore[arg-type]


class LogprobMeter:
    """Sums the model's log-probability of the tokens it sampled (for best-of-N)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.tokens = 0

    def add(self, logprob: float) -> None:
        self.total += logprob
        self.tokens += 1

    @property
    def mean(self) -> float:
        return self.total / self.tokens if self.tokens else float("-inf")


@dataclass(frozen=True)
class Completion:
    """A finished generation."""

    text: str
    tokens: int
    """Generated tokens (stream pieces)."""
    first_token_s: float | None
    """Seconds from the start of the call to the first piece."""
    total_s: float
    truncated: bool = False
    """The model ran out of ``max_tokens``; ``text`` was trimmed to its last sentence."""


class LLMBackend(abc.ABC):
    """One loaded model. Not thread-safe: the scheduler calls it from one thread."""

    #: Tokens the chat template adds around each message (role markers, separators).
    message_overhead_tokens: int = 8

    @property
    @abc.abstractmethod
    def n_ctx(self) -> int:
        """Context window in tokens."""

    @property
    def description(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model (blocking; called once on the backend's thread)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release the model."""

    def with_lora(self, path: Path, scale: float = 1.0) -> LLMBackend:
        """This model with a LoRA applied, for one persona's replies (loaded by the view's
        ``load``, after this model's). Backends that serve a model elsewhere cannot."""
        raise ConfigError(f"{self.description} cannot apply a LoRA (only [llm] backend "
                          "\"llama_cpp\" can)")

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary."""

    def prefill(self, messages: Sequence[ChatMessage]) -> bool:
        """Read ``messages`` into the prompt cache now, so that a prompt that begins with
        them starts sooner. False (nothing done) for backends without such a cache."""
        return False

    @abc.abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        """Generate the assistant's reply, yielding text pieces as they are sampled.

        Must check ``should_stop()`` between pieces and end early when it returns True.
        With ``meter``, adds the log-probability of each sampled token to it.
        """


class LoraView(LLMBackend):
    """A loaded model seen with one LoRA applied (for one persona's turns): the model's
    own weights and context, shared; a backend that can apply adapters subclasses this
    with ``load`` (read the adapter) and ``stream_chat`` (generate with it on)."""

    def __init__(self, base: LLMBackend, path: Path, scale: float = 1.0) -> None:
        self.base, self.lora = base, (path, scale)
        self.message_overhead_tokens = base.message_overhead_tokens

    @property
    def n_ctx(self) -> int:
        return self.base.n_ctx

    @property
    def description(self) -> str:
        return f"{self.base.description} + LoRA {self.lora[0].name}"

    def count_tokens(self, text: str) -> int:
        return self.base.count_tokens(text)
