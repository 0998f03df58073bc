"""Scale-out figures: 20 concurrent chat users through the engine, in-process vs through
Redis to 1 and 2 worker processes, and the real model in-process vs a llama.cpp server on
loopback vs a Redis worker.

- Stand-in runs: workers serve a deterministic model with realistic timing (``SlowEcho``:
  a 60 ms prompt, then 24 tokens at 15 ms), so the figures show the queueing and transport,
  not a model. With 2 workers throughput should about double.
- Real runs: the bundled SmolLM2 GGUF, greedy, 24 tokens: the remote paths' overhead per
  reply against in-process on the same model in the same run. (On 2 CPU cores the server
  and worker processes compete with the bot for the same cores: the GPU-box setup this
  path is for has no such contention.)

    .venv/bin/python bench/scale.py [--users 20] [--messages 3] [--no-real] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, cpu_count, data_dir, pct, temp_config, write

from engine.config import Config
from engine.engine import Engine, UserRef
from engine.llm.base import ChatMessage, LLMBackend, LogprobMeter, SamplingParams
from engine.llm.llama_cpp import bundled_model_path
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.servers import free_port, listening, wait_until

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_k=1, seed=1)


class SlowEcho(FakeLLM):
    """Deterministic stand-in model: a prompt delay, then ``tokens`` pieces at a steady rate."""

    def __init__(self, prompt_s: float = 0.06, tokens: int = 24, token_s: float = 0.015) -> None:
        super().__init__()
        self.prompt_s, self.tokens, self.token_s = prompt_s, tokens, token_s

    def stream_chat(self, messages: Sequence[ChatMessage], params: SamplingParams,
                    should_stop: Callable[[], bool],
                    meter: LogprobMeter | None = None) -> Iterator[str]:
        time.sleep(self.prompt_s)
        for i in range(self.tokens):
            if should_stop():
                return
            time.sleep(self.token_s)
            yield f" w{i}"





async def users_run(engine: Engine, users: int, messages: int) -> dict[str, Any]:
    latencies: list[float] = []
    runs: list[float] = []

    async def user(i: int) -> None:
        who = UserRef("scale", str(i))
        for n in range(messages):
            t0 = time.perf_counter()
            result = await (await engine.chat(who, f"Message {n}, please answer.",
                                              params=GREEDY)).result()
            # A reply cut at max_tokens is "truncated": answered all the same.
            assert result.status in ("complete", "truncated"), (result.status, result.error)
            latencies.append(time.perf_counter() - t0)
            runs.append(result.run_s or 0.0)

    t0 = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(users)))
    took = time.perf_counter() - t0
    return {"replies": len(latencies), "seconds": round(took, 2),
            "replies_per_s": round(len(latencies) / took, 2),
            "latency_p50_s": round(pct(latencies, 0.5), 3),
            "latency_p95_s": round(pct(latencies, 0.95), 3),
            "run_mean_s": round(sum(runs) / len(runs), 4)}


async def run_engine(cfg: Config, users: int, messages: int,
                     llm: LLMBackend | None = None,
                     wait_workers: int = 0) -> dict[str, Any]:
    engine = Engine(cfg, llm=llm)
    await engine.start()
    try:
        deadline = time.monotonic() + 90
        while wait_workers and len(engine.llm.live_workers()) < wait_workers:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            await asyncio.sleep(0.2)
        await (await engine.chat(UserRef("scale", "warm"), "hi", params=GREEDY)).result()
        return await users_run(engine, users, messages)
    finally:
        await engine.stop()


def serve_fake(url: str, name: str) -> int:
    """``--worker URL NAME``: a worker process with the stand-in model."""
    import signal

    from engine.config import LLMConfig
    from engine.llm.remote import run_worker

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    run_worker(LLMConfig(backend="redis", redis_url=url), SlowEcho(), name=name,
               stop=lambda: bool(stopping))
    return 0


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"bench": "scale", "cpus": cpu_count(), "users": args.users,
                              "messages_each": args.messages}
    with data_dir(args.data_dir) as tmpdir:
        base = temp_config(tmpdir / "data", base=args.config)
        base = replace(base, engine=replace(base.engine, rate_per_minute=0, queue_size=256))
        redis_port = free_port()
        redis = spawn([str(Path(sys.executable).parent / "redis-server"), "--port",
                       str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmpdir)])
        url = f"redis://127.0.0.1:{redis_port}/0"
        try:
            wait_until(lambda: listening(redis_port), redis, "redis-server")
            stand_in: dict[str, Any] = {}
            stand_in["in_process"] = await run_engine(base, args.users, args.messages,
                                                      llm=SlowEcho())
            for count in (1, 2):
                workers = [spawn([sys.executable, __file__, "--worker", url, f"fake{i}"])
                               for i in range(count)]
                try:
                    cfg = replace(base, llm=replace(base.llm, backend="redis", redis_url=url,
                                                    workers=count))
                    stand_in[f"redis_{count}_worker{'s' if count > 1 else ''}"] = \
                        await run_engine(cfg, args.users, args.messages, wait_workers=count)
                finally:
                    stop_all(workers)
            report["stand_in"] = stand_in

            if args.real:
                real: dict[str, Any] = {}
                real["in_process"] = await run_engine(base, args.users, args.messages)
                port = free_port()
                server = spawn([sys.executable, "-m", "llama_cpp.server", "--model",
                                str(bundled_model_path()), "--host", "127.0.0.1", "--port",
                                str(port), "--n_threads", "2", "--n_ctx", "2048",
                                "--interrupt_requests", "False"])
                try:
                    wait_until(lambda: listening(port), server, "llama_cpp.server")
                    api = f"http://127.0.0.1:{port}/v1"
                    cfg = replace(base, llm=replace(base.llm, backend="openai", api_base=api,
                                                    workers=1))
                    real["llama_cpp_server"] = await run_engine(cfg, args.users,
                                                                args.messages)
                finally:
                    stop_all([server])
                wcfg = tmpdir / "worker.toml"
                wcfg.write_text(f'[llm]\nredis_url = "{url}"\nn_threads = 2\n'
                                f'[personas]\ndir = "{ROOT / "persona_data"}"\n')
                worker = spawn([sys.executable, "-m", "bot.cli", "--config", str(wcfg),
                                "worker", "--name", "real0"])
                try:
                    cfg = replace(base, llm=replace(base.llm, backend="redis", redis_url=url,
                                                    workers=1))
                    real["redis_worker"] = await run_engine(cfg, args.users, args.messages,
                                                            wait_workers=1)
                finally:
                    stop_all([worker])
                local = real["in_process"]["run_mean_s"]
                for key in ("llama_cpp_server", "redis_worker"):
                    real[key]["overhead_vs_in_process"] = \
                        f"{(real[key]['run_mean_s'] / local - 1) * 100:+.1f}%"
                report["real"] = real
        finally:
            stop_all([redis])
    return report


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return serve_fake(sys.argv[2], sys.argv[3])
    ap = bench_parser(__doc__)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=3)
    ap.add_argument("--no-real", dest="real", action="store_false")
    args = ap.parse_args()
    load = MachineLoad()
    report = asyncio.run(main_async(args))
    path = write("scale", report, args.out, load)
    for group in ("stand_in", "real"):
        for name, r in report.get(group, {}).items():
            extra = f", remote overhead per reply {r['overhead_vs_in_process']}" \
                if "overhead_vs_in_process" in r else ""
            print(f"{group:>8} {name:<18} {r['replies']} replies in {r['seconds']} s: "
                  f"{r['replies_per_s']} replies/s, latency p50 {r['latency_p50_s']} s, "
                  f"p95 {r['latency_p95_s']} s, model time per reply {r['run_mean_s']} s"
                  f"{extra}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
