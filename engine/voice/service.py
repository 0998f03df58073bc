"""The engine's voice: speak text or a streaming reply as a voice note, transcribe clips.

TTS and STT each have their own scheduler worker, so speech and the LLM overlap: while the
model writes sentence 2, sentence 1 is already being synthesised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass

import numpy as np

from engine.config import VoiceConfig
from engine.errors import InputError
from engine.scheduler import JobContext, Priority, Scheduler
from engine.voice.audio import VoiceNote, decode, encode_voice_note
from engine.voice.stt import WhisperSTT
from engine.voice.text import MIN_WORDS, speech_chunks
from engine.voice.tts import PCM, PiperTTS, TTSBackend

TTS = "tts"
STT = "stt"
_SENTENCE_END = (".", "!", "?", "।")


@dataclass(frozen=True)
class SpokenReply:
    note: VoiceNote
    first_audio_s: float
    """Seconds from the start of the reply to the first synthesised audio."""
    text: str


class Voice:
    def __init__(self, cfg: VoiceConfig, scheduler: Scheduler, *,
                 tts: TTSBackend | None = None, stt: WhisperSTT | None = None) -> None:
        self.cfg = cfg
        self.scheduler = scheduler
        self.tts = tts or PiperTTS(cfg.piper_model)
        self.stt = stt or WhisperSTT(cfg.stt_model, language=cfg.stt_language)
        scheduler.add_resource(TTS, workers=1)
        scheduler.add_resource(STT, workers=1)

    # -- speech out -------------------------------------------------------------------------

    async def _synth(self, text: str, user: str, priority: Priority) -> PCM:
        def run(ctx: JobContext) -> PCM:
            return self.tts.synthesize(text, lambda: ctx.cancelled)

        job = self.scheduler.submit(TTS, run, user=user, kind="tts", priority=priority,
                                    timeout_s=self.cfg.tts_timeout_s)
        return await job.result()

    async def _encode(self, parts: list[PCM]) -> VoiceNote:
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return await asyncio.to_thread(encode_voice_note, pcm, self.tts.sample_rate)

    async def speak(self, text: str, *, user: str = "system",
                    priority: Priority = Priority.INTERACTIVE) -> VoiceNote:
        """The whole text as one voice note (sentence by sentence on the TTS worker)."""
        chunks = speech_chunks(text)
        if not chunks:
            raise InputError("nothing speakable", user_message="There is nothing to read "
                                                               "aloud in that message.")
        return await self._encode([await self._synth(c, user, priority) for c in chunks])

    async def speak_stream(self, pieces: AsyncIterable[str], *,
                           user: str = "system") -> SpokenReply:
        """Speak a reply while it is being written: each finished sentence goes to TTS at
        once, so the first audio is ready long before the reply ends."""
        t0 = time.perf_counter()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        parts: list[PCM] = []
        first: list[float] = []

        async def synthesise() -> None:  # one TTS job at a time per reply, in order
            while (chunk := await sentences.get()) is not None:
                for speakable in speech_chunks(chunk):
                    parts.append(await self._synth(speakable, user, Priority.INTERACTIVE))
                    if not first:
                        first.append(time.perf_counter() - t0)

        worker = asyncio.create_task(synthesise())
        text, pending = "", ""
        try:
            async for piece in pieces:
                text += piece
                pending += piece
                cut = _last_sentence_end(pending)
                if cut and len(pending[:cut].split()) >= MIN_WORDS:
                    sentences.put_nowait(pending[:cut])
                    pending = pending[cut:]
            if pending.strip():
                sentences.put_nowait(pending)
        finally:
            sentences.put_nowait(None)
            await worker
        if not parts:
            raise InputError("nothing speakable", user_message="There was nothing to say "
                                                               "out loud in that reply.")
        note = await self._encode(parts)
        return SpokenReply(note, first[0], text)

    # -- speech in --------------------------------------------------------------------------

    async def transcribe(self, data: bytes, *, user: str = "system") -> str:
        """The words in a voice note or audio file; InputError with a clear reason if the
        clip is too big, too long, unreadable or silent."""
        limit_mb = self.cfg.max_input_mb
        if len(data) > limit_mb * 1024 * 1024:
            raise InputError("audio too large", user_message=(
                f"That audio file is too large (over {limit_mb} MB)."))
        audio = await asyncio.to_thread(decode, data)
        seconds = len(audio) / 16000
        if seconds > self.cfg.max_input_seconds:
            raise InputError("audio too long", user_message=(
                f"That voice note is {seconds:.0f} s long; I can listen to at most "
                f"{self.cfg.max_input_seconds:.0f} s."))
        if seconds < 0.3 or float(np.abs(audio).max(initial=0.0)) < 1e-3:
            raise InputError("silent audio", user_message="I couldn't hear anything in "
                                                          "that recording.")

        def run(ctx: JobContext) -> str:
            return self.stt.transcribe(audio)

        job = self.scheduler.submit(STT, run, user=user, kind="stt",
                                    priority=Priority.INTERACTIVE,
                                    timeout_s=self.cfg.tts_timeout_s)
        text = (await job.result()).strip()
        if not text:
            raise InputError("no words heard", user_message="I couldn't make out any words. "
                                                            "Could you try again?")
        return text


def _last_sentence_end(text: str) -> int:
    """Index just after the last sentence end followed by a space, or 0."""
    best = 0
    for i, ch in enumerate(text[:-1]):
        if ch in _SENTENCE_END and text[i + 1].isspace():
            best = i + 1
    return best
