"""Voice figures on this machine: Piper speed, pipelined replies, Whisper speed.

- Piper real-time factor (synthesis time / audio time) and time to first audio for 1, 3
  and 10 sentences.
- A chat reply spoken with pipelining (each sentence to TTS as soon as the model finishes
  it) vs without (TTS after the whole reply), same prompts, same run: time to first audio,
  and the target's reference, LLM time of the first sentence + its TTS time.
- faster-whisper (bundled tiny.en) real-time factor on ~10 s and ~60 s clips made by Piper.

    .venv/bin/python bench/voice.py [--out FILE]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np
from _common import MachineLoad, bench_parser, cpu_count, data_dir, temp_config, write

from engine.engine import Engine, UserRef
from engine.llm.base import SamplingParams
from engine.voice.audio import decode
from engine.voice.text import speech_chunks

SENTENCES = [
    "Once upon a time, a little turtle named Pip lived by a quiet pond.",
    "Every morning he swam to the lily pads to say hello to the frogs.",
    "One day the sky turned grey and the first drops of rain began to fall.",
    "Pip was not afraid, because he liked the music the rain made on his shell.",
    "His friend Duck came paddling by and asked if he wanted to splash.",
    "They splashed and laughed until the clouds rolled away.",
    "Then a rainbow grew over the water, bright and wide.",
    "The frogs sang, the fish jumped, and the reeds danced in the wind.",
    "When evening came, Pip swam home with a happy heart.",
    "And that night he dreamed of rainbows and friends.",
]
PROMPTS = ["Tell me a short story about a brave little turtle.",
           "Why do leaves change colour in autumn?",
           "Tell me about your favourite animal."]


async def main() -> int:
    args = bench_parser(__doc__).parse_args()
    load = MachineLoad()
    result: dict[str, Any] = {"bench": "voice", "cpus": cpu_count()}
    with data_dir(args.data_dir) as tmp:
        engine = Engine(temp_config(tmp, default="storyteller", base=args.config))
        await engine.start()
        voice, tts = engine.voice, engine.voice.tts
        try:
            await asyncio.to_thread(tts.synthesize, "Warm up.")
            piper: dict[str, Any] = {}
            for n in (1, 3, 10):
                text = " ".join(SENTENCES[:n])
                t0 = time.perf_counter()
                first: float | None = None
                parts = []
                for chunk in speech_chunks(text):
                    parts.append(await asyncio.to_thread(tts.synthesize, chunk))
                    first = first if first is not None else time.perf_counter() - t0
                took = time.perf_counter() - t0
                audio = sum(len(p) for p in parts) / tts.sample_rate
                piper[f"{n}_sentences"] = {"audio_s": round(audio, 2),
                                           "synth_s": round(took, 3),
                                           "rtf": round(took / audio, 4),
                                           "first_audio_ms": round(1000 * (first or 0), 1)}
            result["piper"] = piper

            user = UserRef("bench", "voice")
            params = SamplingParams(max_tokens=96, temperature=0.0, top_k=1, seed=1)
            rows: list[dict[str, Any]] = []
            for i, prompt in enumerate(PROMPTS):
                for pipelined in (True, False) if i % 2 == 0 else (False, True):
                    await engine.reset(user)
                    engine.llm.llama.reset()  # type: ignore[attr-defined]
                    t0 = time.perf_counter()
                    reply = await engine.chat(user, prompt, params=params)
                    if pipelined:
                        marks: list[float] = []

                        async def timed(reply: Any = reply, marks: list[float] = marks,
                                        t0: float = t0) -> Any:
                            seen = ""
                            async for piece in reply:
                                seen += piece
                                if not marks and speech_chunks(seen) and any(
                                        e in piece for e in ".!?"):
                                    marks.append(time.perf_counter() - t0)
                                yield piece

                        spoken = await voice.speak_stream(timed(), user=user.key)
                        first_audio = spoken.first_audio_s
                        text = spoken.text
                    else:
                        text = "".join([c async for c in reply])
                        await asyncio.to_thread(tts.synthesize, speech_chunks(text)[0])
                        first_audio = time.perf_counter() - t0
                    rows.append({"prompt": i, "pipelined": pipelined,
                                 "first_audio_s": round(first_audio, 3),
                                 "reply_s": (await reply.result()).run_s, "chars": len(text)})
                    # reference: LLM time to the end of sentence 1 + TTS of sentence 1
                    if pipelined:
                        first_sentence = speech_chunks(text)[0]
                        t1 = time.perf_counter()
                        await asyncio.to_thread(tts.synthesize, first_sentence)
                        tts_s = time.perf_counter() - t1
                        rows[-1]["first_sentence_llm_s"] = round(marks[0], 3) if marks else None
                        rows[-1]["first_sentence_tts_s"] = round(tts_s, 3)
                        rows[-1]["target_s"] = round(1.5 * ((marks[0] if marks else 0)
                                                            + tts_s), 3)
            pipe = [r for r in rows if r["pipelined"]]
            seq = [r for r in rows if not r["pipelined"]]
            result["reply"] = {
                "first_audio_s_pipelined": statistics.fmean(r["first_audio_s"] for r in pipe),
                "first_audio_s_sequential": statistics.fmean(r["first_audio_s"] for r in seq),
                "target_s_mean": statistics.fmean(r["target_s"] for r in pipe),
                "within_target": all(r["first_audio_s"] <= r["target_s"] for r in pipe),
                "rows": rows,
            }

            stt: dict[str, Any] = {}
            for label, text in (("10s", " ".join(SENTENCES[:3])),
                                ("60s", " ".join(SENTENCES + SENTENCES[:8]))):
                note = await voice.speak(text)
                clip = decode(note.ogg)
                seconds = len(clip) / 16000
                t0 = time.perf_counter()
                heard = await asyncio.to_thread(voice.stt.transcribe, clip.astype(np.float32))
                took = time.perf_counter() - t0
                stt[label] = {"audio_s": round(seconds, 1), "transcribe_s": round(took, 3),
                              "rtf": round(took / seconds, 4), "words": len(heard.split())}
            result["stt"] = stt
        finally:
            await engine.stop()
    path = write("voice", result, args.out, load)
    for k, v in result["piper"].items():
        print(f"piper {k}: {v['audio_s']} s audio in {v['synth_s']} s (RTF {v['rtf']}), "
              f"first audio {v['first_audio_ms']} ms")
    r = result["reply"]
    print(f"chat reply, time to first audio: pipelined {r['first_audio_s_pipelined']:.2f} s, "
          f"sequential {r['first_audio_s_sequential']:.2f} s; target (1.5 x (LLM to end of "
          f"sentence 1 + its TTS)) {r['target_s_mean']:.2f} s, met: {r['within_target']}")
    for k, v in result["stt"].items():
        print(f"whisper tiny.en {k}: {v['audio_s']} s in {v['transcribe_s']} s "
              f"(RTF {v['rtf']})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
