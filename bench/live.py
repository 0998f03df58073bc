"""Live call latency, voice to voice, with the bundled models (SmolLM2 on llama.cpp, Whisper
tiny.en, Piper, Silero VAD) and the default persona with its memory built.

The real web app (``create_app``: uvicorn, the ``/web/api/call`` WebSocket) runs in this
process; a client signs in and talks to it as the page does: 16 kHz PCM in 20 ms frames,
sent in real time (a question spoken by Piper, then silence, as a microphone gives it).

- **Latency**: from the instant the person stops talking (the end of the question's last
  voiced sample, in real time) to the first byte of the answer's audio at the client. p50 /
  p95 over ``--turns`` questions (a warm-up question first, not counted), each asked after
  the last answer has been heard out (as long as its audio plays) and half a second more.
  The server's own figure (end of speech as it saw it to the audio ready) is beside it.
- **With barge-in**: the person listens for ``--listen`` s of each answer, then asks the next
  question over it: how long from the start of their speech to the ``barge_in`` (playback
  stops), and the latency of the answer to the question asked over the persona.

- **On a busy machine**: ``--hogs N`` runs N processes that keep a core each busy for the
  whole run (as another program would); the figures are then those of a loaded machine.

    .venv/bin/python bench/live.py [--turns 20] [--barge-turns 10] [--hogs 0]
        [--config config.toml] [--data-dir DIR] [--out FILE]

``--config``: the settings to run with (default the shipped config.toml); ``--data-dir``:
where its state goes (default a temporary folder; a folder given is kept, and the memory
built in it is used again next time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import MachineLoad, bench_parser, cpu_count, data_dir, peak_rss_mb, spread, write

from engine.call_events import STAGES
from engine.config import Config, load_config
from engine.engine import Engine, UserRef
from tests.auxil.speech import call_audio

QUESTIONS = [  # about what is in the persona's mail, and conversation
    "What did you think about the insurance for the stage property?",
    "Good morning, how are you today?",
    "How is the rent roll looking this month?",
    "What are you working on this week?",
    "Tell me about the thirty two acres.",
    "How was your weekend?",
    "What do you think about the California gas market?",
    "What do you like about trading?",
    "What is the plan for the Sept first payment?",
    "Do you have any advice for a new analyst?",
    "Are you riding in the MS 150 this year?",
    "How do you feel about building a house?",
    "What did you tell PG and E about their request for gas?",
    "How do you deal with difficult tenants?",
    "What do you think of The New Power Company?",
    "Are you busy this afternoon?",
    "Who is on the current gas desk list?",
    "What is your favourite part of the job?",
    "What did you say about the regulatory filing summary?",
    "Should I call you later today?",
    "Hello, can you hear me?",
]
FRAME = 320
"""Samples a frame (20 ms), as the page's AudioWorklet sends them."""
PAUSE_S = 0.5
"""Between the end of an answer and the next question."""


def spoken(text: str) -> tuple[bytes, int, int]:
    """``text`` as 16 kHz PCM, and the samples at which its speech begins and ends."""
    pcm = call_audio(text)
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 0.02 * 32767)
    return pcm, int(loud[0]), int(loud[-1]) + 1


class Client:
    """The page's side of a call: a paced microphone and a log of what arrived when."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.t0 = time.perf_counter()
        self.sent = 0

    async def read(self) -> None:
        async for message in self.ws:
            now = time.perf_counter()
            if isinstance(message, bytes):
                self.events.append((now, "pcm", {"bytes": len(message)}))
            else:
                data = json.loads(message)
                self.events.append((now, data["type"], data))
            self.arrived.set()

    def clock(self) -> float:
        """When the next frame's last sample is "recorded" (real time)."""
        return self.t0 + (self.sent + FRAME) / 16000

    async def say(self, pcm: bytes) -> None:
        """Send ``pcm`` frame by frame, each when it would have been recorded."""
        for i in range(0, len(pcm), FRAME * 2):
            await asyncio.sleep(max(0.0, self.clock() - time.perf_counter()))
            await self.ws.send(pcm[i:i + FRAME * 2])
            self.sent += FRAME

    async def silence_until(self, kind: str, after: int, *, seconds: float = 600) -> int:
        """Send silence until an event of ``kind`` at index ``after`` or later arrives."""
        quiet, end = bytes(FRAME * 2), time.perf_counter() + seconds
        while time.perf_counter() < end:
            for i in range(after, len(self.events)):
                if self.events[i][1] == kind:
                    return i
            await self.say(quiet)
        raise TimeoutError(f"no {kind} within {seconds} s")

    def when(self, sample: int) -> float:
        """The real time at which sample ``sample`` of the stream was recorded."""
        return self.t0 + sample / 16000


async def turn(client: Client, question: tuple[bytes, int, int], *, listen: float | None,
               ) -> dict[str, Any]:
    """Ask one question and wait for the start of the answer (``listen``: then hear that
    much of it and return; None: hear it to the end)."""
    pcm, start, end = question
    mark = len(client.events)
    base = client.sent
    await client.say(pcm)
    spoke, stopped = client.when(base + start), client.when(base + end)
    heard = await client.silence_until("heard", mark)
    first = await client.silence_until("pcm", heard)
    audio = next(e for e in client.events[heard:] if e[1] == "audio")[2]
    row = {"heard": client.events[heard][2]["text"],
           "latency_s": round(client.events[first][0] - stopped, 3),
           "server_latency_s": audio.get("latency_s"),
           "stages": audio.get("stages") or {},
           "started_speaking_at": spoke}
    barges = [e for e in client.events[mark:heard] if e[1] == "barge_in"]
    if barges:
        row["barge_in_s"] = round(barges[0][0] - spoke, 3)
    if listen is None:  # hear the answer out, as the page plays it, then a breath
        done = await client.silence_until("done", first)
        row["answer"] = client.events[done][2]["text"]
        heard_s = sum(e[2].get("seconds", 0.0) for e in client.events[heard:done]
                      if e[1] == "audio")
        await client.say(bytes(2 * max(0, int(16000 * (
            client.events[first][0] + heard_s - time.perf_counter())))))
        await client.ws.send(json.dumps({"type": "played"}))
        await client.say(bytes(2 * int(16000 * PAUSE_S)))
    else:
        quiet = bytes(int(listen * 16000) * 2)
        await client.say(quiet)
    return row


def hog(parent: int) -> None:
    """A core kept busy, as another program on the machine would (until the bench ends,
    however it ends)."""
    while os.getppid() == parent:
        for _ in range(1_000_000):
            pass


def bench_config(path: Path, state: Path) -> Config:
    """``path``'s settings with state in ``state`` (its memory built at start)."""
    cfg = load_config(path)
    return replace(cfg, storage=replace(cfg.storage, data_dir=state, database_url=""),
                   memory=replace(cfg.memory, chroma_path=None, auto_ingest=True))


async def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--barge-turns", type=int, default=10)
    ap.add_argument("--listen", type=float, default=1.5,
                    help="seconds of each answer heard before talking over it")
    ap.add_argument("--hogs", type=int, default=0,
                    help="processes keeping a core busy each while it runs")
    args = ap.parse_args()
    load = MachineLoad()

    import uvicorn
    import websockets

    from bot.http.app import create_app

    questions = [spoken(q) for q in QUESTIONS]
    report: dict[str, Any] = {"bench": "live", "cpus": cpu_count(), "hogs": args.hogs,
                              "config": str(args.config)}
    hogs = [multiprocessing.Process(target=hog, args=(os.getpid(),), daemon=True)
            for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    with contextlib.ExitStack() as stack:
        state = stack.enter_context(data_dir(args.data_dir))
        for h in hogs:
            stack.callback(h.terminate)
        cfg = bench_config(args.config, state)
        engine = Engine(cfg)
        await engine.start()  # builds the default persona's memory first
        unknown = engine.persona(cfg.personas.default).profile.unknown_reply
        report["model"] = engine.llm.description
        report["end_silence_ms"] = cfg.voice.call_end_silence_ms
        user = UserRef("web", "bench", "Bench")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections wait in the backlog until the server takes them
        port = sock.getsockname()[1]
        engine.web.serving_at(f"http://127.0.0.1:{port}")
        token = (await engine.web.link(user)).rsplit("/", 1)[-1]
        signed = await engine.web.redeem(token)
        assert signed is not None
        server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with websockets.connect(
                    f"ws://127.0.0.1:{port}/web/api/call", max_size=None,
                    additional_headers={"Cookie": f"doppel_session={signed.session}",
                                        "Origin": f"http://127.0.0.1:{port}"}) as ws:
                client = Client(ws)
                reader = asyncio.create_task(client.read())
                await client.silence_until("ready", 0)
                await turn(client, questions[-1], listen=None)  # warm-up
                plain = []
                for i in range(args.turns):
                    row = await turn(client, questions[i % (len(questions) - 1)], listen=None)
                    plain.append(row)
                    print(f"turn {i + 1:2d}: {row['latency_s']:.2f} s "
                          f"(server {row['server_latency_s']:.2f} s)  {row['heard']!r}")
                barged = []
                for i in range(args.barge_turns + 1):
                    q = questions[(i + 7) % (len(questions) - 1)]
                    row = await turn(client, q, listen=args.listen)
                    if i:  # asked over the previous answer
                        barged.append(row)
                        print(f"barge-in {i:2d}: stopped after {row.get('barge_in_s', -1):.2f} s,"
                              f" answer after {row['latency_s']:.2f} s  {row['heard']!r}")
                await client.silence_until("done", len(client.events) - 1)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            server.should_exit = True
            await serving
            await engine.stop()

    def summary(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
        return spread([r[key] for r in rows if r.get(key) is not None])

    for row in plain + barged:
        answer = row.get("answer", "")
        row["kind"] = ("canned" if answer == unknown else
                       "quote" if re.match(r"On \d+ \w+ \d{4} I wrote", answer) else
                       "model")
    model = [r for r in plain if r["kind"] == "model"]
    report["turns"] = {"latency_s": summary(plain, "latency_s"),
                       "model_written_latency_s": summary(model, "latency_s"),
                       "kinds": {k: sum(r["kind"] == k for r in plain)
                                 for k in ("model", "quote", "canned")},
                       "server_latency_s": summary(plain, "server_latency_s"),
                       "rows": plain}
    report["stages_s"] = {
        kind: {stage: spread([r["stages"][stage] for r in rows if stage in r["stages"]])
               for stage in STAGES}
        for kind, rows in (("all", plain), ("model", model),
                           ("quote", [r for r in plain if r["kind"] == "quote"]))}
    report["barge_in"] = {"stop_s": summary(barged, "barge_in_s"),
                          "latency_s": summary(barged, "latency_s"),
                          "listen_s": args.listen, "rows": barged}
    report["target_s"] = {"p50": 1.0, "p95": 1.5}
    report["within_target"] = {k: report["turns"]["latency_s"][k] <= v
                               for k, v in report["target_s"].items()}
    report["peak_rss_mb"] = peak_rss_mb()
    t, b = report["turns"]["latency_s"], report["barge_in"]
    print(f"voice to voice (end of speech -> first audio at the client), {t['n']} turns: "
          f"p50 {t['p50']:.2f} s, p95 {t['p95']:.2f} s "
          f"(server side p50 {report['turns']['server_latency_s']['p50']:.2f} s); "
          f"within p50 <= 1.0 s: {report['within_target']['p50']}, p95 <= 1.5 s: "
          f"{report['within_target']['p95']}")
    print("where the time goes, seconds after the end of speech (server side; p50 / p95):")
    print(f"  {'stage':16}" + "".join(f"{k:>16}" for k in report["stages_s"]))
    for stage in STAGES:
        cells = [report["stages_s"][k][stage] for k in report["stages_s"]]
        print(f"  {stage:16}" + "".join(f"{c['p50']:7.2f} / {c['p95']:5.2f}" if c["n"] else
                                       f"{'-':>16}" for c in cells))
    m = report["turns"]["model_written_latency_s"]
    print(f"  of which answers the model wrote from its first word ({m['n']}; the others open "
          f"with a quote from memory or say memory has nothing): p50 {m['p50']:.2f} s, "
          f"p95 {m['p95']:.2f} s")
    print(f"barge-in, {b['stop_s']['n']} times: playback stopped p50 {b['stop_s']['p50']:.2f} s "
          f"/ p95 {b['stop_s']['p95']:.2f} s after they started talking; the answer to what "
          f"they said: p50 {b['latency_s']['p50']:.2f} s, p95 {b['latency_s']['p95']:.2f} s")
    print(f"wrote {write('live', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
