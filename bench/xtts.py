"""XTTS-v2 figures: model load, voice conditioning (first time and from the cache), real-time
factor and time to the first streamed chunk, on the CPU or the GPU.

With ``--model-dir`` it measures your XTTS-v2 weights; without, a tiny random checkpoint of
the real architecture (2-layer GPT, full-size HiFiGAN decoder), whose "speech" is noise but
whose decoder cost is real. Needs the xtts extra (``.ci/setup --xtts``).

    .venv-xtts/bin/python bench/xtts.py [--model-dir DIR] [--clip WAV] [--device cuda]
"""

from __future__ import annotations

import statistics
import time
import wave
from pathlib import Path
from typing import Any

from _common import MachineLoad, bench_parser, cpu_count, data_dir, write

from engine.voice.clips import CLIP_RATE, clean_clip
from engine.voice.speaker import Speaker
from engine.voice.text import speech_chunks
from engine.voice.xtts import XTTSBackend

TEXTS = {
    "1 sentence": "Once upon a time, a little turtle named Pip lived by a quiet pond.",
    "3 sentences": "Every morning he swam to the lily pads to say hello to the frogs. "
                   "One day the sky turned grey and the first drops of rain began to fall. "
                   "Pip was not afraid, because he liked the music the rain made on his shell.",
}


def is_clean(path: Path) -> bool:
    """A clip already as Doppel stores them (mono 16-bit WAV at the XTTS rate)."""
    try:
        with wave.open(str(path), "rb") as w:
            return (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (CLIP_RATE, 1, 2)
    except (wave.Error, EOFError):
        return False


def main() -> int:
    ap = bench_parser(__doc__, settings=False)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--clip", type=Path, default=None,
                    help="reference clip (default: Piper speaking, made here)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    load = MachineLoad()

    import torch

    with data_dir(args.data_dir) as work:
        model_dir = args.model_dir
        if model_dir is None:
            from tests.auxil.xtts_tiny import build_tiny_xtts

            model_dir = build_tiny_xtts(work / "tiny")
        clip = work / "clip-1.wav"
        if args.clip is not None and is_clean(args.clip):
            clip.write_bytes(args.clip.read_bytes())
        else:
            from tests.auxil.speech import speech_wav

            clip.write_bytes(clean_clip(args.clip.read_bytes() if args.clip else
                                        speech_wav()).wav())

        backend = XTTSBackend(model_dir, device=args.device)
        t0 = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - t0
        device = str(backend.model.device)
        speaker = Speaker("xtts", "bench", (clip,), work / "cache", "en")
        t0 = time.perf_counter()
        backend.conditioning(speaker)
        latents_s = time.perf_counter() - t0
        again = XTTSBackend(model_dir, device=args.device)
        again.load()
        t0 = time.perf_counter()
        again.conditioning(speaker)
        cached_s = time.perf_counter() - t0

        backend.synthesize("Warm up, please.", speaker=speaker)
        rows: dict[str, Any] = {}
        for label, text in TEXTS.items():
            rtfs, firsts, audio = [], [], 0.0
            for _ in range(args.rounds):
                torch.manual_seed(0)
                t0 = time.perf_counter()
                first = None
                samples = 0
                for sentence in speech_chunks(text):  # as the engine sends them
                    for chunk in backend.stream(sentence, speaker=speaker):
                        if first is None:
                            first = time.perf_counter() - t0
                        samples += len(chunk)
                took = time.perf_counter() - t0
                audio = samples / backend.sample_rate
                rtfs.append(took / audio)
                firsts.append(first or took)
            rows[label] = {"audio_s": round(audio, 2), "rtf": round(statistics.median(rtfs), 3),
                           "first_chunk_ms": round(statistics.median(firsts) * 1000, 1)}
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else ""
    result = {
        "bench": "xtts", "cpus": cpu_count(), "device": device, "gpu": gpu,
        "model": "user weights" if args.model_dir else "tiny random checkpoint",
        "load_s": round(load_s, 2), "latents_first_s": round(latents_s, 3),
        "latents_cached_s": round(cached_s, 4), "synthesis": rows,
    }
    path = write("xtts", result, args.out, load)
    print(f"XTTS ({result['model']}) on {device} {gpu}:"
          f" load {load_s:.2f} s, voice latents {latents_s:.3f} s first, "
          f"{cached_s * 1000:.1f} ms from the cache")
    for label, r in rows.items():
        print(f"  {label}: {r['audio_s']} s audio, RTF {r['rtf']}, first chunk "
              f"{r['first_chunk_ms']} ms")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
