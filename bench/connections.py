"""The real ``doppel serve`` under a connection flood on loopback: ``--idle`` connections
that never send a byte (2,000), ``--slow`` clients that send a request head a byte every
half second and never finish it (200), and ``--users`` people (50) using the web app at
the same time, each loading ``/health`` and the app's page ``--requests`` times (20).

Printed and written as JSON: the people's latency p50 / p95 / max and errors (any status
but 200, a refused or dropped connection), and how soon the server closed the idle and
slow connections ([api] request_head_s, max_connections). Bounded: every client stops at
``--seconds`` (120) whatever happens.

    .venv/bin/python bench/connections.py [--idle 2000] [--slow 200] [--users 50]
        [--requests 20] [--seconds 120] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    ROOT,
    MachineLoad,
    bench_parser,
    cpu_count,
    data_dir,
    merged_config,
    spread,
    write,
)

from tests.auxil.llm_api import FakeLLMServer
from tests.auxil.servers import answers, free_port


def serve(tmp: Path, llm: FakeLLMServer, port: int, base: Path) -> subprocess.Popen[bytes]:
    """``doppel serve`` with ``base``'s settings (``--config``), this run's own data dir, a
    scripted model server and the port."""
    cfg = tmp / "config.toml"
    cfg.write_text(merged_config(base, {
        "storage": {"data_dir": str(tmp / "data"), "database_url": ""},
        "personas": {"dir": str(ROOT / "persona_data"), "default": "allen"},
        "llm": {"backend": "openai", "api_base": llm.base},
        "memory": {"auto_ingest": False, "chroma_path": str(tmp / "data" / "chroma")},
        "api": {"port": port},
    }))
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(cfg), "serve"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def hold(port: int, slow: bool, until: float, closed: list[float], t0: float) -> None:
    """One connection that says nothing (or a head, a byte at a time); when the server
    closes it, when that was."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4096
    try:
        for i in range(len(head)):
            if time.monotonic() > until:
                return
            if slow:
                writer.write(head[i:i + 1])
                await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.5) == b"":
                    closed.append(time.monotonic() - t0)
                    return
            except TimeoutError:
                continue
    except OSError:
        closed.append(time.monotonic() - t0)
    finally:
        writer.close()


async def person(client: httpx.AsyncClient, n: int, until: float,
                 latencies: list[float], errors: list[str]) -> None:
    for i in range(n):
        if time.monotonic() > until:
            errors.append("ran out of time")
            return
        path = "/health" if i % 2 == 0 else "/"
        t = time.perf_counter()
        try:
            r = await client.get(path)
            if r.status_code != 200:
                errors.append(f"{path}: {r.status_code}")
                continue
        except httpx.HTTPError as exc:
            errors.append(f"{path}: {type(exc).__name__}")
            continue
        latencies.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)


async def flood(port: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    until = t0 + args.seconds
    idle_closed: list[float] = []
    slow_closed: list[float] = []
    holders = [asyncio.create_task(hold(port, False, until, idle_closed, t0))
               for _ in range(args.idle)]
    holders += [asyncio.create_task(hold(port, True, until, slow_closed, t0))
                for _ in range(args.slow)]
    await asyncio.sleep(1.0)  # the flood is in place before the people come
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=args.seconds) for _ in range(args.users)]
    try:
        await asyncio.gather(*(person(c, args.requests, until, latencies, errors)
                               for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    people_done = time.monotonic() - t0
    await asyncio.gather(*holders)
    return {"latency_s": spread(latencies, 4), "requests": args.users * args.requests,
            "errors": len(errors), "error_kinds": sorted(set(errors))[:10],
            "people_done_after_s": round(people_done, 2),
            "idle_closed": len(idle_closed), "idle_closed_after_s": spread(idle_closed, 2),
            "slow_closed": len(slow_closed), "slow_closed_after_s": spread(slow_closed, 2)}


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    load = MachineLoad()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle + args.slow + args.users + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    port = free_port()
    with data_dir(args.data_dir) as tmp, FakeLLMServer() as llm:
        proc = serve(tmp, llm, port, args.config.resolve())
        try:
            deadline = time.monotonic() + 300
            while not answers(f"http://127.0.0.1:{port}/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("doppel serve did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            result = asyncio.run(flood(port, args))
            result["server_alive"] = proc.poll() is None and answers(
                f"http://127.0.0.1:{port}/health")
        finally:
            proc.terminate()
            proc.wait(60)
    report = {"bench": "connections", "cpus": cpu_count(), "pid": os.getpid(),
              "idle": args.idle, "slow": args.slow, "users": args.users, **result}
    lat = result["latency_s"]
    print(f"{args.users} people x {args.requests} requests beside {args.idle} idle and "
          f"{args.slow} slow-header connections: p50 {lat['p50'] * 1000:.0f} ms, p95 "
          f"{lat['p95'] * 1000:.0f} ms, errors {result['errors']} "
          f"{result['error_kinds'] or ''}; idle closed by the server: "
          f"{result['idle_closed']}/{args.idle} (p50 after "
          f"{result['idle_closed_after_s']['p50']:.1f} s), slow: {result['slow_closed']}/"
          f"{args.slow} (p50 after {result['slow_closed_after_s']['p50']:.1f} s); "
          f"server alive after: {result['server_alive']}")
    print(f"wrote {write('connections', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
