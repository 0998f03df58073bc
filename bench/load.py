"""Load through the real engine and scheduler: many users at once, nothing lost, fair turns.

1. 50 simulated users send 5 messages each (10 "heavy" users with no pause between
   messages, 40 "light" ones who read for 0.5-2 s first), against a deterministic stand-in
   model with realistic token timing (``EchoLLM``) and, with ``--real``, the bundled model.
   Checked afterwards in SQLite: every message has exactly one reply, none lost or doubled.
   Reported: queue-wait p50/p95 for light and heavy users (fairness: light p95 <= 2 x
   heavy p95), refusals (queue full, per-user caps, rate limit), peak memory.
2. 200 jobs queued behind a closed gate: memory held, and how long cancelling all of one
   user's jobs takes.

    .venv/bin/python bench/load.py [--real] [--users 50] [--messages 5] [--out FILE]
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    MachineLoad,
    bench_parser,
    cpu_count,
    data_dir,
    pct,
    peak_rss_mb,
    temp_config,
    write,
)
from sqlalchemy import select

from engine.engine import Engine, UserRef
from engine.errors import DoppelError
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, SamplingParams
from engine.storage.models import Message
from tests.auxil.fake_llm import FakeLLM

TAG = re.compile(r"\[m(\d+)-(\d+)\]")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class EchoLLM(FakeLLM):
    """A deterministic stand-in at the LLM boundary: answers ``re:[mU-N]`` (the tag of the
    message it answers, so a lost or doubled reply shows) plus filler, one token every
    ``token_delay_s``, after a prompt-processing delay."""

    def __init__(self, tokens: int = 20, token_delay_s: float = 0.008,
                 prompt_s: float = 0.02) -> None:
        super().__init__(token_delay_s=token_delay_s)
        self.tokens = tokens
        self.prompt_s = prompt_s

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    should_stop: Callable[[], bool],
                    meter: LogprobMeter | None = None) -> Iterator[str]:
        while not self.gate.wait(0.01):
            if should_stop():
                return
        tag = TAG.findall(messages[-1].content)[-1]
        time.sleep(self.prompt_s)
        yield f"re:[m{tag[0]}-{tag[1]}]"
        for _ in range(self.tokens - 1):
            if should_stop():
                return
            time.sleep(self.token_delay_s)
            yield " word"



async def conversation(engine: Engine, user: UserRef, uid: int, messages: int, heavy: bool,
                       waits: dict[str, list[float]], refusals: dict[str, int],
                       rng: random.Random) -> None:
    for n in range(messages):
        if not heavy:
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # reading the last reply
        try:
            reply = await engine.chat(user, f"Question {n} about the rent roll [m{uid}-{n}]")
        except DoppelError as exc:
            refusals[type(exc).__name__] = refusals.get(type(exc).__name__, 0) + 1
            continue
        result = await reply.result()
        waits["heavy" if heavy else "light"].append(result.wait_s or 0.0)


async def users_run(engine: Engine, users: int, messages: int) -> dict[str, Any]:
    rng = random.Random(7)
    waits: dict[str, list[float]] = {"heavy": [], "light": []}
    refusals: dict[str, int] = {}
    people = [UserRef("bench", str(i)) for i in range(users)]
    heavy = users // 5
    before = rss_mb()
    t0 = time.perf_counter()
    await asyncio.gather(*(conversation(engine, u, i, messages, i < heavy, waits, refusals,
                                        rng) for i, u in enumerate(people)))
    took = time.perf_counter() - t0
    # What SQLite holds: in each conversation, every message followed by exactly one reply
    # (and with the stand-in, that reply names the message it answers).
    async with engine.db.session() as s:
        rows = (await s.scalars(select(Message).order_by(Message.conversation_id,
                                                         Message.id))).all()
    lost = doubled = mismatched = asked = replies = 0
    for prev, row in zip([None, *rows[:-1]], rows, strict=True):
        same = prev is not None and prev.conversation_id == row.conversation_id
        if not same and prev is not None and prev.role == "user":
            lost += 1  # the previous conversation ended on an unanswered message
        if row.role == "user":
            asked += 1
            if same and prev is not None and prev.role == "user":
                lost += 1
        else:
            replies += 1
            if not same or prev is None or prev.role != "user":
                doubled += 1
            elif isinstance(engine.llm, EchoLLM):
                tag = TAG.search(prev.content)
                mismatched += tag is None or f"re:{tag.group(0)}" not in row.content
    if rows and rows[-1].role == "user":
        lost += 1
    incomplete = [m.id for m in rows if m.role == "assistant" and m.status != "complete"]
    light_p95, heavy_p95 = pct(waits["light"], 0.95), pct(waits["heavy"], 0.95)
    return {
        "users": users, "messages_each": messages, "heavy_users": heavy,
        "replies": replies, "asked": asked, "lost": lost, "doubled": doubled,
        "mismatched": mismatched, "incomplete": len(incomplete), "refusals": refusals,
        "seconds": round(took, 1),
        "wait_s": {k: {"p50": round(pct(v, 0.5), 3), "p95": round(pct(v, 0.95), 3),
                       "n": len(v)} for k, v in waits.items()},
        "fair": light_p95 <= 2 * max(heavy_p95, 1e-9),
        "rss_mb_before": round(before, 1), "rss_mb_after": round(rss_mb(), 1),
    }


async def queued_run(engine: Engine, llm: FakeLLM, users: int = 50) -> dict[str, Any]:
    """200 jobs waiting behind a closed gate; then one user's are cancelled."""
    llm.gate.clear()
    before = rss_mb()
    replies = []
    for i in range(users):
        for n in range(engine.config.engine.max_pending_per_user):
            replies.append(await engine.chat(UserRef("queue", str(i)),
                                             f"Queued {n} [m{1000 + i}-{n}]"))
    held = rss_mb()
    victim = UserRef("queue", "7")
    theirs = [r for r in replies if r.job.user == victim.key]
    t0 = time.perf_counter()
    engine.cancel(victim)
    outcomes = await asyncio.gather(*(r.result() for r in theirs))
    cancel_ms = (time.perf_counter() - t0) * 1000
    for i in range(users):
        engine.cancel(UserRef("queue", str(i)))
    llm.gate.set()
    await asyncio.gather(*(r.result() for r in replies), return_exceptions=True)
    return {"queued": len(replies), "rss_mb_before": round(before, 1),
            "rss_mb_with_queue": round(held, 1),
            "kb_per_queued_job": round((held - before) * 1024 / len(replies), 1),
            "cancel_one_user_ms": round(cancel_ms, 2),
            "their_jobs": len(theirs),
            "all_cancelled": all(o.status == "cancelled" for o in outcomes)}


async def run(llm: LLMBackend | None, users: int, messages: int, real: bool, base: Path,
              state: Path | None) -> dict[str, Any]:
    with data_dir(state) as tmp:
        cfg = temp_config(tmp, base=base)
        cfg = replace(cfg, engine=replace(cfg.engine, rate_per_minute=0, queue_size=256),
                      llm=replace(cfg.llm, max_tokens=24, n_threads=0))
        engine = Engine(cfg, llm=llm)
        await engine.start()
        try:
            out = await users_run(engine, users, messages)
            if isinstance(llm, FakeLLM):
                out["queue"] = await queued_run(engine, llm)
        finally:
            await engine.stop()
    out["model"] = "bundled SmolLM2-135M (llama.cpp)" if real else \
        "EchoLLM stand-in: 20 tokens, 8 ms each, 20 ms prompt"
    return out


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--real", action="store_true", help="also run with the bundled model")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=5)
    args = ap.parse_args()
    load = MachineLoad()
    report: dict[str, Any] = {"bench": "load", "cpus": cpu_count()}

    def state(case: str) -> Path | None:
        return args.data_dir / case if args.data_dir else None

    report["stand_in"] = asyncio.run(run(EchoLLM(), args.users, args.messages, False,
                                         args.config, state("stand_in")))
    if args.real:
        report["real"] = asyncio.run(run(None, args.users, args.messages, True, args.config,
                                         state("real")))
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = write("load", report, args.out, load)
    for key in ("stand_in", "real"):
        r = report.get(key)
        if r is None:
            continue
        w = r["wait_s"]
        print(f"{r['model']}: {r['users']} users x {r['messages_each']} messages in "
              f"{r['seconds']} s; replies {r['replies']}/{r['asked']}, lost {r['lost']}, "
              f"doubled {r['doubled']}, mismatched {r['mismatched']}, incomplete "
              f"{r['incomplete']}, refusals "
              f"{r['refusals'] or 0}")
        print(f"  queue wait p50/p95: light {w['light']['p50']}/{w['light']['p95']} s, heavy "
              f"{w['heavy']['p50']}/{w['heavy']['p95']} s; fair (light p95 <= 2x heavy): "
              f"{r['fair']}; RSS {r['rss_mb_before']} -> {r['rss_mb_after']} MB")
        q = r.get("queue")
        if q:
            print(f"  {q['queued']} queued jobs: RSS {q['rss_mb_before']} -> "
                  f"{q['rss_mb_with_queue']} MB ({q['kb_per_queued_job']} KB a job); "
                  f"cancelling one user's {q['their_jobs']} jobs took {q['cancel_one_user_ms']}"
                  f" ms (all cancelled: {q['all_cancelled']})")
    print(f"peak RSS {report['peak_rss_mb']} MB; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
