"""Engine overhead on LLM chat: TTFT and tokens/s through ``Engine.chat`` vs raw llama-cpp-python.

Same model object, same messages, same greedy sampling, interleaved in one run so that
machine drift hits both sides alike. The engine path includes everything a user waits
for: database reads and writes, the scheduler queue, the worker thread, history fitting
and the hop of every token back to the event loop.

    .venv/bin/python bench/llm_overhead.py [--rounds 5] [--max-tokens 128] [--out FILE]

Prints a table and writes JSON (default ``bench/results/llm_overhead.json``).
Besides the means, it prints the median of the paired differences (each engine run against
the raw run of the same prompt beside it: the model's own prefill drifts by tens of ms
between runs on a busy machine) and the engine's own time (before the model is asked, and
from the model's first token to the first text handed on).
tok/s = (tokens - 1) / (time of last token - time of first token), as in
``shared/notes/embedded-stack.md``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from _common import MachineLoad, bench_parser, data_dir, write

from engine.config import load_config
from engine.engine import Engine, UserRef
from engine.llm.base import SamplingParams
from engine.llm.llama_cpp import LlamaCppBackend
from engine.memory.prompt import PRIVACY_RULES

PROMPTS = [
    "Can you tell me a story about a brave little turtle?",
    "Why is the sky blue, Grandma?",
    "What should I name my new puppy?",
]


class Recording(LlamaCppBackend):
    """The engine's backend, keeping what the model wrote before the engine cleaned it
    (the engine cuts a reply at its last whole sentence): the outputs are compared as
    token ids."""

    written: str = ""
    asked_at = first_at = 0.0
    """When the engine asked the model (its work before that is the engine's), and when the
    model's first token came (the engine's first text after it: held back by the cleaner
    until it cannot be a label or an address, and the hop to the event loop)."""

    def stream_chat(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        self.written = ""
        self.asked_at, self.first_at = time.perf_counter(), 0.0
        for piece in super().stream_chat(*args, **kwargs):
            if not self.written:
                self.first_at = time.perf_counter()
            self.written += piece
            yield piece


@dataclass
class Run:
    path: str
    prompt: int
    ttft_s: float
    tokens: int
    tok_s: float
    text: str
    written: str = ""
    """What the model wrote (the engine's reply is that, cleaned)."""
    before_model_s: float = 0.0
    """Engine runs: from the call to the model being asked (history, database, queue)..."""
    model_first_s: float = 0.0
    """...to the model's first token..."""
    after_model_s: float = 0.0
    """...to the first text the engine hands on."""


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies from /proc/stat, to report how loaded the machine was."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def raw_run(backend: LlamaCppBackend, messages: list[dict[str, str]],
            params: SamplingParams, idx: int) -> Run:
    t0 = time.perf_counter()
    first = last = 0.0
    pieces: list[str] = []
    for chunk in backend.llama.create_chat_completion(
        messages=messages, stream=True, max_tokens=params.max_tokens,
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
        min_p=params.min_p, repeat_penalty=params.repeat_penalty, seed=params.seed,
    ):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            last = time.perf_counter()
            if not pieces:
                first = last
            pieces.append(piece)
    text = "".join(pieces)
    return Run("raw", idx, first - t0, len(pieces), rate(len(pieces), first, last), text,
               text)


async def engine_run(engine: Engine, user: UserRef, prompt: str, params: SamplingParams,
                     idx: int) -> Run:
    # Same prompt as the raw path (system + this message): a fresh conversation, opened
    # before the clock starts, as an ongoing chat's conversation is already in memory.
    await engine.reset(user)
    persona = await engine.current_persona(user)
    await engine.conversations.open(user, persona.name, "")
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    reply = await engine.chat(user, prompt, params=params)
    async for _ in reply:
        last = time.perf_counter()
        if n == 0:
            first = last
        n += 1
    result = await reply.result()
    assert result.status in ("complete", "truncated"), result  # cut by max_tokens: fine
    backend = engine.llm
    assert isinstance(backend, Recording)
    # The engine hands on cleaned text in fewer, larger pieces than the model's tokens:
    # the rate counts the tokens the model wrote, between the first and the last piece.
    tokens = len(backend.llama.tokenize(backend.written.encode(), add_bos=False, special=True))
    return Run("engine", idx, first - t0, tokens, rate(tokens, first, last), result.text,
               backend.written, before_model_s=backend.asked_at - t0,
               model_first_s=backend.first_at - backend.asked_at,
               after_model_s=first - backend.first_at)


def summarise(runs: list[Run], path: str) -> dict[str, float]:
    mine = [r for r in runs if r.path == path]
    return {
        "ttft_ms_mean": 1000 * statistics.fmean(r.ttft_s for r in mine),
        "ttft_ms_median": 1000 * statistics.median(r.ttft_s for r in mine),
        "tok_s_mean": statistics.fmean(r.tok_s for r in mine),
        "tok_s_median": statistics.median(r.tok_s for r in mine),
        "tokens_mean": statistics.fmean(r.tokens for r in mine),
        "runs": len(mine),
    } | ({f"{k}_ms_mean": 1000 * statistics.fmean(getattr(r, k) for r in mine)
          for k in ("before_model_s", "model_first_s", "after_model_s")}
         if path == "engine" else {})


async def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: config)")
    args = ap.parse_args()
    load = MachineLoad()

    cfg = load_config(args.config)
    with data_dir(args.data_dir) as tmp:
        from dataclasses import replace

        llm_cfg = replace(cfg.llm, n_threads=args.threads or cfg.llm.n_threads)
        # A persona without memory, so both paths send the very same prompt: retrieval is a
        # feature with its own cost, measured by bench/retrieval.py.
        cfg = replace(cfg, llm=llm_cfg,
                      storage=replace(cfg.storage, data_dir=tmp, database_url=""),
                      personas=replace(cfg.personas, default="storyteller"),
                      memory=replace(cfg.memory, auto_ingest=False))
        backend = Recording(cfg.llm)
        engine = Engine(cfg, llm=backend)
        await engine.start()
        user = UserRef("bench", "1")
        persona = await engine.current_persona(user)
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, top_k=1, seed=1)
        system = f"{persona.system_message()}\n\n{PRIVACY_RULES}"  # as the engine sends it
        messages = [[{"role": "system", "content": system}, {"role": "user", "content": p}]
                    for p in PROMPTS]

        # warm-up both paths (and fill the engine's conversation cache, as in a live chat)
        raw_run(backend, messages[0], params, 0)
        await engine_run(engine, user, PROMPTS[0], params, 0)

        runs: list[Run] = []
        busy0, total0 = cpu_busy()
        t_start = time.perf_counter()
        for r in range(args.rounds):
            for i, prompt in enumerate(PROMPTS):
                order = ("raw", "engine") if (r + i) % 2 == 0 else ("engine", "raw")
                for path in order:
                    # Each run evaluates its whole prompt: no KV-cache prefix left by the
                    # previous run (the engine is idle here, so this thread may touch it).
                    backend.llama.reset()
                    if path == "raw":
                        runs.append(raw_run(backend, messages[i], params, i))
                    else:
                        runs.append(await engine_run(engine, user, prompt, params, i))
        wall = time.perf_counter() - t_start
        busy1, total1 = cpu_busy()

        def ids(text: str) -> list[int]:
            return list(backend.llama.tokenize(text.encode(), add_bos=False, special=True))

        mismatched = sum(
            1 for a, b in zip(
                [r for r in runs if r.path == "raw"], [r for r in runs if r.path == "engine"],
                strict=True,
            ) if ids(a.written) != ids(b.written)
        )
        await engine.stop()

    raw, eng = summarise(runs, "raw"), summarise(runs, "engine")
    ttft_overhead = eng["ttft_ms_mean"] / raw["ttft_ms_mean"] - 1
    # Each engine run against the raw run of the same prompt in the same round (back to
    # back): the median of those differences is what the engine adds, little moved by the
    # machine's drift, which moves the model's own prefill by tens of ms between runs.
    paired = [1000 * (e.ttft_s - r.ttft_s) for r, e in zip(
        [r for r in runs if r.path == "raw"], [r for r in runs if r.path == "engine"],
        strict=True)]
    paired_ms = statistics.median(paired)
    own_ms = eng["before_model_s_ms_mean"] + eng["after_model_s_ms_mean"]
    tps_overhead = 1 - eng["tok_s_mean"] / raw["tok_s_mean"]
    ncpu = os.cpu_count() or 1
    report: dict[str, Any] = {
        "bench": "llm_overhead",
        "model": backend.model_path.name,
        "n_threads": cfg.llm.n_threads or ncpu,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "prompts": len(PROMPTS),
        "raw": raw,
        "engine": eng,
        "ttft_overhead": ttft_overhead,
        "ttft_overhead_ms": eng["ttft_ms_mean"] - raw["ttft_ms_mean"],
        "ttft_paired_median_ms": paired_ms,
        "ttft_paired_overhead": paired_ms / raw["ttft_ms_median"],
        "engine_own_ms": own_ms,
        "engine_own_overhead": own_ms / raw["ttft_ms_median"],
        "tok_s_overhead": tps_overhead,
        "target_overhead": 0.03,
        "outputs_identical": mismatched == 0,
        "outputs_compared": "token ids of what the model wrote",
        "machine": {"cpus": ncpu, "platform": platform.platform(),
                    "cpu_busy_fraction": (busy1 - busy0) / max(total1 - total0, 1)},
        "wall_s": wall,
        "runs": [asdict(r) | {"text": r.text[:80]} for r in runs],
    }
    print(f"model {report['model']}, {report['n_threads']} threads, greedy, "
          f"max_tokens {args.max_tokens}, {args.rounds} rounds x {len(PROMPTS)} prompts")
    print(f"{'':8} {'TTFT ms (mean/median)':>24} {'tok/s (mean/median)':>22} {'tokens':>7}")
    for name, s in (("raw", raw), ("engine", eng)):
        print(f"{name:8} {s['ttft_ms_mean']:11.1f} / {s['ttft_ms_median']:8.1f} "
              f"{s['tok_s_mean']:10.1f} / {s['tok_s_median']:8.1f} {s['tokens_mean']:7.1f}")
    print(f"engine TTFT = {eng['before_model_s_ms_mean']:.1f} ms before the model is asked "
          f"+ {eng['model_first_s_ms_mean']:.1f} ms to its first token + "
          f"{eng['after_model_s_ms_mean']:.1f} ms to the first text handed on")
    print(f"TTFT, each engine run against the raw run beside it: median {paired_ms:+.1f} ms "
          f"({paired_ms / raw['ttft_ms_median']:+.1%} of the raw median); the engine's own "
          f"time (before the model + to the first text) {own_ms:.1f} ms "
          f"({own_ms / raw['ttft_ms_median']:.1%})")
    print(f"engine overhead (means): TTFT {ttft_overhead:+.1%} "
          f"({eng['ttft_ms_mean'] - raw['ttft_ms_mean']:+.1f} ms), tok/s {tps_overhead:+.1%} "
          f"(target <= 3%); identical token ids: {mismatched == 0}; "
          f"CPU busy over the run: {report['machine']['cpu_busy_fraction']:.0%}")
    print(f"wrote {write('llm_overhead', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
