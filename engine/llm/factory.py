"""The LLM backend that ``[llm] backend`` names, imported only when chosen."""

from __future__ import annotations

from engine.config import LLMConfig
from engine.llm.base import LLMBackend


def make_backend(cfg: LLMConfig) -> LLMBackend:
    if cfg.backend == "redis":
        from engine.llm.remote import RedisLLM

        return RedisLLM(cfg)
    if cfg.backend == "openai":
        from engine.llm.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(cfg)
    from engine.llm.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(cfg)
