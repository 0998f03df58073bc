"""Several people's replies decoded together on the embedded model.

One llama.cpp context holds a sequence per slot. One thread steps every reply being
written by a token per ``llama_decode``, and reads a newcomer's prompt in pieces between
those steps (the batch's room left over), so a long prompt never stalls the replies under
way. A slot keeps its sequence when its reply ends, and a new prompt starts from the
longest beginning any sequence holds (the persona's system prompt, shared by every slot
that needs it; the person's own conversation): only the rest is read.

The prompt, its stop strings and the sampler chain are llama-cpp-python's own (the chat
handler is asked for them), so a greedy reply is the one the one-at-a-time path writes.
Order, fairness, queue positions and cancel stay the scheduler's: each of its
``[llm] workers`` jobs waits here on its own reply.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ModelError
from engine.llm.base import ChatMessage, SamplingParams

log = logging.getLogger(__name__)

PENALTY_LAST_N = 64
"""Tokens the repeat penalty looks back over (llama-cpp-python's ``last_n_tokens_size``)."""
SHARE_AT_LEAST = 32
"""Tokens of a prompt being read that a newcomer waits to share rather than read too."""
_POLL_S = 0.1
"""How often a waiting reply checks whether its job was cancelled."""


@dataclass(eq=False)
class _Reply:
    tokens: list[int]
    params: SamplingParams
    stops: list[str]
    max_tokens: int
    lora: tuple[Any, float] | None = None
    """The adapter (llama.cpp's) and its scale the reply is written with; None: none."""
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    slot: int = -1
    pending: list[int] = field(default_factory=list)
    """Prompt tokens not read yet."""
    pos: int = 0
    """The position of the next token fed to its sequence."""
    last: int = -1
    """The token sampled last, fed at the next step."""
    written: int = 0
    text: str = ""
    shown: int = 0
    sampler: Any = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("ignore"))


class _Capture:
    """Stands in for the ``Llama`` a chat handler is given: it records the prompt tokens and
    stop strings the handler would complete, and completes nothing."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.prompt: list[int] = []
        self.stop: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, prompt: Any, stop: Any = None, **_: Any) -> Iterator[Any]:
        self.prompt = list(prompt)
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        return iter(())


class BatchDecoder:
    """``slots`` replies written at once by ``llama``'s model in a context of its own."""

    def __init__(self, llama: Any, slots: int, n_ctx: int, n_threads: int,
                 n_batch: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._cpp: Any = llama_cpp
        self._internals: Any = _internals
        self.llama = llama
        self.slots = slots
        self.n_ctx = n_ctx
        self.n_batch = max(n_batch, slots)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * slots
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = slots
        params.kv_unified = True  # one cell may belong to several sequences: shared prefixes
        params.n_threads = params.n_threads_batch = n_threads
        try:
            self.ctx: Any = _internals.LlamaContext(model=llama._model, params=params,
                                                    verbose=False)
        except ValueError as exc:
            raise ModelError(f"llama.cpp could not make a context for {slots} replies at "
                             f"once: {exc}") from exc
        self._vocab = llama_cpp.llama_model_get_vocab(llama._model.model)
        # Known once, so a step makes no foreign call per token but the sampler's (each
        # call gives up the interpreter, and a busy process may keep it a while).
        self._ends = {t for t in range(llama.n_vocab())
                      if llama_cpp.llama_vocab_is_eog(self._vocab, t)}
        self._pieces: dict[int, bytes] = {}
        self._lora: tuple[Any, float] | None = None
        """The adapter the context applies now: every reply under way is written with it."""
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._cached: list[list[int]] = [[] for _ in range(slots)]
        """The tokens each slot's sequence holds (read, or fed back as written)."""
        self._busy: list[_Reply | None] = [None] * slots
        self._waiting: deque[_Reply] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.prompt_tokens_read = 0
        """Prompt tokens evaluated so far (what a slot already held is not read again)."""
        self._thread = threading.Thread(target=self._run, name="doppel-llm-batch",
                                        daemon=True)
        self._thread.start()

    def prompt(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        """The tokens and stop strings llama-cpp-python's chat handler makes of ``messages``."""
        from llama_cpp import llama_chat_format

        llama = self.llama
        handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
                   or llama_chat_format.get_chat_completion_handler(llama.chat_format))
        capture: Any = _Capture(llama)
        chat: Any = [{"role": m.role, "content": m.content} for m in messages]
        handler(llama=capture, messages=chat, stream=True)
        return capture.prompt, capture.stop

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
               should_stop: Callable[[], bool], max_tokens: int | None = None,
               lora: tuple[Any, float] | None = None) -> Iterator[str]:
        """The reply's text as it is written; closing it (or ``should_stop``) ends it.
        ``lora``: a LoRA adapter of the model and its scale (replies with the same one are
        written together; another waits until they are done)."""
        tokens, stops = self.prompt(messages)
        reply = _Reply(tokens, params, stops + list(params.stop),
                       params.max_tokens if max_tokens is None else max_tokens, lora)
        with self._cv:
            if self._closed:
                raise ModelError("the model is closed")
            self._waiting.append(reply)
            self._cv.notify()
        try:
            while True:
                try:
                    item = reply.out.get(timeout=_POLL_S)
                except queue.Empty:
                    if should_stop():
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if should_stop():
                    return
                yield item
        finally:
            reply.cancelled = True
            with self._cv:
                self._cv.notify()

    def in_use(self) -> int:
        """Slots writing or reading a reply now."""
        with self._cv:
            return sum(r is not None for r in self._busy)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        self._cpp.llama_batch_free(self._batch)
        self.ctx.close()

    # Everything below runs on the decoding thread.

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not any(self._busy):
                    self._cv.wait()
                if self._closed:
                    break
                for reply in [r for r in self._waiting if r.cancelled]:
                    self._waiting.remove(reply)
                    reply.out.put(None)
                while (self._waiting and None in self._busy
                       and not self._worth_waiting(self._waiting[0])
                       and self._adapter_for(self._waiting[0])):
                    self._admit(self._waiting.popleft())
            for reply in [r for r in self._busy if r is not None and r.cancelled]:
                self._finish(reply)
            if any(self._busy):
                try:
                    self._step()
                except Exception as exc:  # every reply under way is told, none is lost
                    log.exception("batched decoding failed")
                    for reply in [r for r in self._busy if r is not None]:
                        self._finish(reply, ModelError(f"the model failed: {exc}"))
                    self._cpp.llama_memory_clear(self.ctx.memory, True)
                    self._cached = [[] for _ in range(self.slots)]
        for reply in [r for r in self._busy if r is not None] + list(self._waiting):
            reply.out.put(ModelError("the model was closed while it wrote"))

    def _adapter_for(self, reply: _Reply) -> bool:
        """Whether ``reply`` can be written now: the context applies its LoRA, or nothing is
        under way and the context switches to it (what the slots hold was computed with
        other weights: dropped). First come, first served: the others wait behind it."""
        if reply.lora == self._lora:
            return True
        if any(self._busy):
            return False
        set_lora(self.ctx.ctx, reply.lora)
        self._cpp.llama_memory_clear(self.ctx.memory, True)
        self._cached = [[] for _ in range(self.slots)]
        self._lora = reply.lora
        return True

    def _worth_waiting(self, reply: _Reply) -> bool:
        """Whether a prompt being read now shares a long beginning with ``reply``'s that no
        slot holds yet: then ``reply`` waits a step or two and shares it, rather than
        reading it again (twenty people greeted by one persona read its prompt once)."""
        held = max(_common(self._cached[s], reply.tokens) for s in range(self.slots))
        return any(r is not None and r.pending
                   and _common(r.tokens, reply.tokens) >= held + SHARE_AT_LEAST
                   for r in self._busy)

    def _admit(self, reply: _Reply) -> None:
        """Give ``reply`` a free slot, holding as much of its prompt as any slot does: its
        own beginning kept, or another sequence's beginning shared (the same persona's
        system prompt is read once for everyone)."""
        shared = [_common(cached, reply.tokens) for cached in self._cached]
        free = [s for s in range(self.slots) if self._busy[s] is None]
        slot = max(free, key=shared.__getitem__)
        source = max(range(self.slots), key=shared.__getitem__)
        most = len(reply.tokens) - 1  # read one at least: its logits
        keep, best = min(shared[slot], most), min(shared[source], most)
        memory = self.ctx.memory
        if best > keep:
            self._cpp.llama_memory_seq_rm(memory, slot, 0, -1)
            self._cpp.llama_memory_seq_cp(memory, source, slot, 0, best)
            self._cached[slot] = reply.tokens[:best]
            keep = best
        else:
            self._cpp.llama_memory_seq_rm(memory, slot, keep, -1)
            del self._cached[slot][keep:]
        reply.slot, reply.pos, reply.pending = slot, keep, reply.tokens[keep:]
        reply.sampler = self._sampler(reply.params)
        self._busy[slot] = reply

    def _sampler(self, params: SamplingParams) -> Any:
        """llama-cpp-python's chain (``Llama._init_sampler``) for these settings."""
        sampler = self._internals.LlamaSampler()
        sampler.add_penalties(n_vocab=self.llama.n_vocab(), penalty_last_n=PENALTY_LAST_N,
                              penalty_repeat=params.repeat_penalty, penalty_freq=0.0,
                              penalty_present=0.0)
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        if params.temperature < 0:
            sampler.add_dist(seed)
        elif params.temperature == 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(params.top_k)
            sampler.add_typical(1.0, 1)
            sampler.add_top_p(params.top_p, 1)
            sampler.add_min_p(params.min_p, 1)
            sampler.add_temp(params.temperature)
            sampler.add_dist(seed)
        return sampler

    def _step(self) -> None:
        """One ``llama_decode``: a token of every reply being written, then what room is
        left for prompts being read; then a token sampled for each reply with logits."""
        batch = self._batch
        n = 0
        sampled: list[tuple[_Reply, int]] = []

        def add(reply: _Reply, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = reply.pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = reply.slot
            batch.logits[n] = logits
            reply.pos += 1
            self._cached[reply.slot].append(token)
            n += 1

        active = [r for r in self._busy if r is not None]
        for reply in active:
            if not reply.pending:
                add(reply, reply.last, True)
                sampled.append((reply, n - 1))
        for reply in active:
            if reply.pending and n < self.n_batch:
                take = reply.pending[:self.n_batch - n]
                del reply.pending[:len(take)]
                self.prompt_tokens_read += len(take)
                for j, token in enumerate(take):
                    add(reply, token, not reply.pending and j == len(take) - 1)
                if not reply.pending:
                    sampled.append((reply, n - 1))
        batch.n_tokens = n
        status = self._cpp.llama_decode(self.ctx.ctx, batch)
        if status != 0:
            raise ModelError(f"llama_decode returned {status} (the context is full?)")
        for reply, index in sampled:
            if reply.written >= reply.max_tokens:  # a prompt read ahead (max_tokens 0)
                self._finish(reply)
                continue
            token = reply.sampler.sample(self.ctx, index)
            if token in self._ends:
                self._finish(reply)
                continue
            reply.last = token
            reply.written += 1
            reply.text += reply.decoder.decode(self._piece(token))
            if self._show(reply) or reply.written >= reply.max_tokens:
                self._finish(reply)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._token_bytes(token)
        return piece

    def _token_bytes(self, token: int) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, False)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _show(self, reply: _Reply) -> bool:
        """Hand on what is safe to show (nothing that may begin a stop string); True at a
        stop string."""
        end = len(reply.text)
        stopped = False
        for stop in reply.stops:
            at = reply.text.find(stop, max(0, reply.shown - len(stop)))
            if at >= 0 and at < end:
                end, stopped = at, True
        if not stopped:
            for stop in reply.stops:
                for k in range(min(len(stop) - 1, end - reply.shown), 0, -1):
                    if reply.text.endswith(stop[:k]):
                        end = min(end, len(reply.text) - k)
                        break
        if end > reply.shown:
            reply.out.put(reply.text[reply.shown:end])
            reply.shown = end
        return stopped

    def _finish(self, reply: _Reply, error: BaseException | None = None) -> None:
        """End ``reply``: its slot is free (keeping what its sequence holds) before its
        reader hears the end."""
        if reply.sampler is not None:
            reply.sampler.close()
            reply.sampler = None
        self._busy[reply.slot] = None
        if not error and reply.shown < len(reply.text) and not reply.cancelled:
            tail = reply.text[reply.shown:]
            if not any(s and s in tail for s in reply.stops):
                reply.out.put(tail)
        reply.out.put(error)


def set_lora(ctx: Any, lora: tuple[Any, float] | None) -> None:
    """Apply a llama.cpp LoRA adapter at ``scale`` to the context ``ctx`` (None: none)."""
    import llama_cpp

    if lora is None:
        failed = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
    else:
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora[0])
        scales = (ctypes.c_float * 1)(lora[1])
        failed = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
    if failed:
        raise ModelError("llama.cpp could not apply the LoRA")


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the beginning ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
