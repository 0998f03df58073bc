"""The live call's transport, WebSocket against WebRTC, on loopback: how late a 20 ms
audio frame arrives (one way, sender's clock to receiver's, same process).

- WebSocket: what ``/web/api/call`` uses, 16-bit PCM frames over the ``websockets`` library.
- WebRTC: aiortc on both ends (Opus, RTP/SRTP over UDP, aiortc's jitter buffer), an audio
  track sending the same frames; a loud frame marks the ones timed. Needs ``pip install
  aiortc`` (not a dependency of Doppel; this script only measures the alternative).

    .venv/bin/python bench/call_transport.py [--frames 250] [--out FILE]
"""

from __future__ import annotations

import asyncio
import fractions
import struct
import time
from typing import Any

import numpy as np
from _common import MachineLoad, bench_parser, cpu_count, spread, write

FRAME_S = 0.02


def summary(seconds: list[float]) -> dict[str, float]:
    """The spread of the frames' delays, in milliseconds."""
    return spread([s * 1000 for s in seconds], digits=2)


async def websocket(frames: int) -> list[float]:
    import websockets

    late: list[float] = []
    got = asyncio.Event()

    async def receive(ws: Any) -> None:
        async for message in ws:
            (sent,) = struct.unpack("<d", message[:8])
            late.append(time.perf_counter() - sent)
            if len(late) == frames:
                got.set()

    async with websockets.serve(receive, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            pcm = bytes(320 * 2)
            t0 = time.perf_counter()
            for i in range(frames):
                await asyncio.sleep(max(0.0, t0 + i * FRAME_S - time.perf_counter()))
                await ws.send(struct.pack("<d", time.perf_counter()) + pcm)
            await got.wait()
    return late


async def webrtc(frames: int) -> list[float]:
    import av
    from aiortc import MediaStreamTrack, RTCPeerConnection

    rate, samples = 48000, 960
    marks: dict[int, float] = {}

    class Tone(MediaStreamTrack):  # type: ignore[misc]
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0 = time.perf_counter()

        async def recv(self) -> Any:
            await asyncio.sleep(max(0.0, self.t0 + self.n * FRAME_S - time.perf_counter()))
            loud = self.n % 25 == 10  # every half second, a loud frame to time
            pcm = np.full((1, samples), 12000 if loud else 0, dtype=np.int16)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, self.n * samples
            frame.time_base = fractions.Fraction(1, rate)
            if loud:
                marks[self.n] = time.perf_counter()
            self.n += 1
            return frame

    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    sender.addTrack(Tone())
    late: list[float] = []
    done = asyncio.Event()
    readers: list[asyncio.Task[None]] = []

    @receiver.on("track")  # type: ignore[untyped-decorator]
    def on_track(track: Any) -> None:
        async def read() -> None:
            loud_before = False
            while len(late) < frames // 25:
                frame = await track.recv()
                level = float(np.abs(frame.to_ndarray()).max())
                loud = level > 3000
                if loud and not loud_before and marks:
                    late.append(time.perf_counter() - marks.pop(min(marks)))
                loud_before = loud
            done.set()

        readers.append(asyncio.create_task(read()))

    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await done.wait()
    await sender.close()
    await receiver.close()
    return late[2:]  # the first marks cross while the jitter buffer fills


async def main() -> int:
    ap = bench_parser(__doc__, settings=False)
    ap.add_argument("--frames", type=int, default=500)
    args = ap.parse_args()
    load = MachineLoad()
    report: dict[str, Any] = {"bench": "call_transport", "cpus": cpu_count(),
                              "frame_ms": FRAME_S * 1000, "unit": "ms"}
    report["websocket"] = summary(await websocket(args.frames))
    try:
        report["webrtc_aiortc"] = summary(await webrtc(args.frames))
    except ImportError:
        report["webrtc_aiortc"] = "not measured: pip install aiortc"
    for name in ("websocket", "webrtc_aiortc"):
        r = report[name]
        print(f"{name}: " + (r if isinstance(r, str) else
                             f"p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms "
                             f"({r['n']} frames timed)"))
    print(f"wrote {write('call_transport', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
