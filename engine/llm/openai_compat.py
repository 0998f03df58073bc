"""An OpenAI-compatible server as the LLM (llama.cpp server, vLLM, ...): the scale-out path.

Blocking like the other backends (it runs on scheduler threads); several workers may share
it, because the server batches requests. The API key, if any, comes from the environment
variable named in ``[llm] api_key_env``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from engine.config import LLMConfig
from engine.errors import ModelError
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, SamplingParams

log = logging.getLogger(__name__)


class OpenAICompatBackend(LLMBackend):
    message_overhead_tokens = 8

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        self.base = cfg.api_base.rstrip("/")
        self.model = cfg.api_model
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base, headers=headers,
                                    timeout=httpx.Timeout(cfg.api_timeout_s, connect=10.0))

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    @property
    def description(self) -> str:
        return f"OpenAI-compatible server {self.base} ({self.model})"

    def load(self) -> None:
        """Check the server answers and pick its model when none is configured."""
        try:
            response = self._client.get("/models")
            response.raise_for_status()
            models = [m["id"] for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise ModelError(f"[llm] api_base {self.base} did not answer /models: {exc}"
                             ) from exc
        if not self.model:
            if not models:
                raise ModelError(f"{self.base} lists no models; set [llm] api_model")
            self.model = models[0]
        log.info("using %s", self.description)

    def close(self) -> None:
        self._client.close()

    def count_tokens(self, text: str) -> int:
        # The OpenAI API has no tokenizer endpoint; bytes / 3 over-counts for English, so
        # history trimming errs on the safe side of the context window.
        return math.ceil(len(text.encode("utf-8")) / 3)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if meter is not None:
            body["logprobs"] = True
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ModelError(f"{self.base} answered {response.status_code}: "
                                     f"{response.text[:200]}")
                for line in response.iter_lines():
                    if should_stop():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    choice = json.loads(data)["choices"][0]
                    if meter is not None:
                        for item in (choice.get("logprobs") or {}).get("content") or []:
                            meter.add(float(item["logprob"]))
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            raise ModelError(f"{self.base} failed mid-reply: {exc}") from exc
