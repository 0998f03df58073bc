"""GPU work in separate worker processes through Redis: several GPU boxes serve one bot.

The bot keeps its scheduler (fairness, queue positions, caps and timeouts stay where they
were); only the generation itself moves. ``RedisLLM`` is the bot's backend: it pushes a job
onto a Redis list and reads the reply as it is written from a Redis stream. ``run_worker``
(``doppel worker`` on each GPU box) pops jobs, generates with the local model and appends
the pieces to the job's stream, checking a cancel key between pieces.

Why plain Redis (redis-py, lists + streams) and not arq or taskiq: both are good job queues,
but both deliver a result when the job ends. A chat reply must stream token by token and
stop mid-generation when the user cancels; with either library that needs a side channel
in Redis all the same, so the library would only add a layer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from engine.config import LLMConfig
from engine.errors import ModelError
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, SamplingParams

log = logging.getLogger(__name__)

STREAM_TTL_S = 600
HEARTBEAT_S = 5


def _keys(queue: str, job_id: str = "") -> dict[str, str]:
    return {"jobs": f"{queue}:jobs", "out": f"{queue}:out:{job_id}",
            "cancel": f"{queue}:cancel:{job_id}", "workers": f"{queue}:worker:"}


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30,
                                socket_connect_timeout=10)


class RedisLLM(LLMBackend):
    """The bot's side: generation happens on whichever worker pops the job first."""

    message_overhead_tokens = 8

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        self.queue = cfg.redis_queue
        self._redis: Any = None

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    @property
    def description(self) -> str:
        return f"Redis workers on {self.cfg.redis_url} (queue {self.queue})"

    def load(self) -> None:
        import redis

        self._redis = _client(self.cfg.redis_url)
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise ModelError(f"[llm] redis_url {self.cfg.redis_url}: {exc}") from exc
        workers = self.live_workers()
        if workers:
            log.info("%d LLM worker(s) on %s: %s", len(workers), self.queue, ", ".join(workers))
        else:
            log.warning("no LLM worker is serving %s yet: replies wait until one starts "
                        "(`doppel worker`)", self.queue)

    def live_workers(self) -> list[str]:
        prefix = _keys(self.queue)["workers"]
        return sorted(k.removeprefix(prefix) for k in self._redis.scan_iter(f"{prefix}*"))

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def count_tokens(self, text: str) -> int:
        # The tokenizer lives on the workers; bytes / 3 over-counts, so history trimming
        # stays inside the context window.
        return math.ceil(len(text.encode("utf-8")) / 3)

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    should_stop: Callable[[], bool],
                    meter: LogprobMeter | None = None) -> Iterator[str]:
        if self._redis is None:
            self.load()
        r = self._redis
        job_id = uuid.uuid4().hex
        keys = _keys(self.queue, job_id)
        job = json.dumps({"id": job_id, "messages": [[m.role, m.content] for m in messages],
                          "params": asdict(params), "queued_at": time.time()})
        r.rpush(keys["jobs"], job)
        last, started = "0-0", False
        idle_since = time.monotonic()
        try:
            while True:
                if should_stop():
                    self._cancel(keys, job)
                    return
                entries = r.xread({keys["out"]: last}, count=64, block=250)
                if not entries:
                    if time.monotonic() - idle_since > self.cfg.remote_idle_timeout_s:
                        self._cancel(keys, job)
                        raise ModelError(
                            f"job {job_id}: " + ("the worker stopped answering" if started
                                                 else "no worker took it"),
                            user_message="The model servers are not answering right now. "
                                         "Please try again in a minute.")
                    continue
                idle_since = time.monotonic()
                for entry_id, fields in entries[0][1]:
                    last = entry_id
                    if "s" in fields:
                        started = True
                    elif "t" in fields:
                        yield fields["t"]
                    elif "end" in fields:
                        if fields["end"] == "error":
                            raise ModelError(f"worker: {fields.get('error', '')}")
                        return
        finally:
            r.delete(keys["out"])

    def _cancel(self, keys: dict[str, str], job: str) -> None:
        """Take the job back if no worker has it yet, else tell its worker to stop."""
        if not self._redis.lrem(keys["jobs"], 1, job):
            self._redis.set(keys["cancel"], "1", ex=STREAM_TTL_S)


def run_worker(cfg: LLMConfig, backend: LLMBackend, *, name: str = "",
               stop: Callable[[], bool] = lambda: False) -> int:
    """Serve ``cfg.redis_queue`` with ``backend`` until ``stop()``; returns jobs served."""
    r = _client(cfg.redis_url)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    keys = _keys(cfg.redis_queue)
    served = 0
    beat = 0.0
    log.info("worker %s serving %s with %s", name, cfg.redis_queue, backend.description)
    try:
        while not stop():
            if time.monotonic() - beat > HEARTBEAT_S:
                r.set(keys["workers"] + name, str(served), ex=HEARTBEAT_S * 3)
                beat = time.monotonic()
            popped = r.blpop([keys["jobs"]], timeout=1)
            if popped is None:
                continue
            _serve(r, cfg.redis_queue, backend, json.loads(popped[1]), name)
            served += 1
    finally:
        r.delete(keys["workers"] + name)
        r.close()
    return served


def _serve(r: Any, queue: str, backend: LLMBackend, job: dict[str, Any], name: str) -> None:
    keys = _keys(queue, job["id"])
    out = keys["out"]

    def add(**fields: str) -> None:
        r.xadd(out, fields)
        r.expire(out, STREAM_TTL_S)

    add(s=name)
    messages = [ChatMessage(role, content) for role, content in job["messages"]]
    params = SamplingParams(**{**job["params"], "stop": tuple(job["params"].get("stop", ()))})

    def cancelled() -> bool:
        return bool(r.exists(keys["cancel"]))

    try:
        for piece in backend.stream_chat(messages, params, cancelled):
            add(t=piece)
    except Exception as exc:  # the bot gets a short error; this worker keeps serving
        log.exception("job %s failed", job["id"])
        add(end="error", error=f"{type(exc).__name__}: {exc}"[:500])
        return
    add(end="cancelled" if cancelled() else "done")
    r.delete(keys["cancel"])
