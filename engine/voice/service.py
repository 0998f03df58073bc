"""The engine's voice: speak text or a streaming reply as a voice note, transcribe clips.

TTS and STT each have their own scheduler worker, so speech and the LLM overlap: while the
model writes sentence 2, sentence 1 is already being synthesised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engine.config import VoiceConfig
from engine.errors import DoppelError, InputError, ModelError
from engine.personas import Persona
from engine.scheduler import JobContext, Priority, Scheduler
from engine.voice.audio import VoiceNote, decode, encode_voice_note
from engine.voice.library import VoiceLibrary
from engine.voice.speaker import PIPER, Speaker
from engine.voice.stt import WhisperSTT, heard_words
from engine.voice.text import MIN_WORDS, chapters, speech_chunks
from engine.voice.tts import PCM, PiperTTS, TTSBackend
from engine.voice.xtts import XTTSBackend

log = logging.getLogger(__name__)

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
    """Speech out (Piper, or XTTS in a persona's cloned voice) and speech in (Whisper).

    TTS and STT each have a worker of their own on the scheduler, so they overlap the LLM.
    """

    def __init__(self, cfg: VoiceConfig, scheduler: Scheduler, library: VoiceLibrary, *,
                 tts: TTSBackend | None = None, xtts: TTSBackend | None = None,
                 stt: WhisperSTT | None = None) -> None:
        self.cfg = cfg
        self.scheduler = scheduler
        self.library = library
        self.tts = tts or PiperTTS(cfg.piper_model)
        if xtts is None and cfg.xtts_model_dir is not None:
            xtts = XTTSBackend(cfg.xtts_model_dir, device=cfg.xtts_device,
                               temperature=cfg.xtts_temperature)
        self.xtts = xtts
        """None unless ``[voice] xtts_model_dir`` is set: cloning needs it."""
        self.stt = stt or WhisperSTT(cfg.stt_model, language=cfg.stt_language)
        scheduler.add_resource(TTS, workers=1)
        scheduler.add_resource(STT, workers=1)
        self.on_note: Callable[[str, float], Awaitable[None]] | None = None
        """Told (user key, seconds) of every voice note made (listening time)."""

    # -- who speaks -------------------------------------------------------------------------

    async def speaker_for(self, persona: Persona | None, language: str | None = None) -> Speaker:
        """With XTTS set up: the persona's active cloned voice, else its reference clips when
        it asks for XTTS. Piper otherwise, or when persona.toml says ``tts_backend = "piper"``."""
        if persona is None:
            return PIPER
        language = language or persona.profile.language
        backend = persona.voice.tts_backend or self.cfg.tts_backend
        if self.xtts is not None and persona.voice.tts_backend != "piper":
            active = await self.library.active(persona.name)
            if active is not None:
                return Speaker("xtts", active.id, self.library.clip_paths(active.id),
                               self.library.directory(active.id), language)
            if backend == "xtts" and persona.voice.reference_clips:
                voice_id = f"persona-{persona.name}"
                return Speaker("xtts", voice_id, persona.voice.reference_clips,
                               self.library.directory(voice_id), language)
        elif backend == "xtts":
            log.warning("persona %s asks for XTTS, but [voice] xtts_model_dir is not set: "
                        "speaking with Piper", persona.name)
        return Speaker(language=language)

    def _backend(self, speaker: Speaker) -> TTSBackend:
        if speaker.backend == "xtts" and self.xtts is not None:
            return self.xtts
        return self.tts

    async def prepare(self, speaker: Speaker, *, user: str = "system") -> None:
        """Compute (or load) a cloned voice's conditioning latents on the TTS worker."""
        xtts = self.xtts
        if speaker.backend != "xtts" or not isinstance(xtts, XTTSBackend):
            return

        def run(ctx: JobContext) -> None:
            xtts.conditioning(speaker)

        await self.scheduler.submit(TTS, run, user=user, kind="voice-latents",
                                    priority=Priority.INTERACTIVE,
                                    timeout_s=self.cfg.tts_timeout_s).result()

    def forget_voice(self, voice_id: str) -> None:
        if isinstance(self.xtts, XTTSBackend):
            self.xtts.forget(voice_id)

    # -- speech out -------------------------------------------------------------------------

    async def preload(self) -> None:
        """Load the speech models now (``[voice] preload``), not on a first voice note."""
        await self.scheduler.warm(TTS, "piper", self.tts.load)
        await self.scheduler.warm(STT, "whisper", self.stt.load)

    async def _synth(self, text: str, user: str, priority: Priority, speaker: Speaker) -> PCM:
        backend = self._backend(speaker)
        if backend is self.tts:  # XTTS loads with the voice's latents (``prepare``)
            await self.scheduler.warm(TTS, "piper", self.tts.load)

        def run(ctx: JobContext) -> PCM:
            return backend.synthesize(text, lambda: ctx.cancelled, speaker)

        job = self.scheduler.submit(TTS, run, user=user, kind="tts", priority=priority,
                                    timeout_s=self.cfg.tts_timeout_s)
        try:
            return await job.result()
        except DoppelError:
            raise
        except Exception as exc:  # a broken voice model: say so, keep the text reply
            log.exception("speech synthesis failed (%s)", speaker.backend)
            raise ModelError(f"TTS failed: {exc}", user_message=(
                "I couldn't make a voice note this time; the reply is in text.")) from exc

    async def _encode(self, parts: list[PCM], speaker: Speaker, user: str) -> VoiceNote:
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        rate = self._backend(speaker).sample_rate
        note = await asyncio.to_thread(encode_voice_note, pcm, rate)
        await self.count_heard(user, note.duration_s)
        return note

    async def speak(self, text: str, *, user: str = "system",
                    priority: Priority = Priority.INTERACTIVE, persona: Persona | None = None,
                    language: str | None = None) -> VoiceNote:
        """The whole text as one voice note (sentence by sentence on the TTS worker), in the
        persona's voice."""
        chunks = speech_chunks(text)
        if not chunks:
            raise InputError("nothing speakable", user_message="There is nothing to read "
                                                               "aloud in that message.")
        return await self._speak(chunks, user, priority,
                                 await self.speaker_for(persona, language))

    async def _speak(self, chunks: list[str], user: str, priority: Priority,
                     speaker: Speaker) -> VoiceNote:
        return await self._encode([await self._synth(c, user, priority, speaker)
                                   for c in chunks], speaker, user)

    async def narrate(self, title: str, text: str, *, user: str = "system",
                      persona: Persona | None = None,
                      language: str | None = None) -> list[VoiceNote]:
        """A story read aloud: one voice note, or one per chapter when it is long."""
        parts = chapters(text, self.cfg.chapter_chars)
        speaker = await self.speaker_for(persona, language)  # once, not per chapter
        notes = []
        for i, part in enumerate(parts, 1):
            heading = title if len(parts) == 1 else f"{title}. Part {i} of {len(parts)}"
            chunks = speech_chunks(f"{heading}. {part}")
            notes.append(await self._speak(chunks, user, Priority.STORY, speaker))
        return notes

    def sample_rate(self, speaker: Speaker) -> int:
        """The rate of the PCM that ``speaker`` speaks in."""
        return self._backend(speaker).sample_rate

    async def count_heard(self, user: str, seconds: float) -> None:
        """Tell ``on_note`` that ``user`` listened to ``seconds`` of the persona."""
        if self.on_note is None:
            return
        try:
            await self.on_note(user, seconds)
        except Exception:  # a counter must never cost the voice note
            log.exception("could not count listening time for %s", user)

    async def speech(self, pieces: AsyncIterable[str], speaker: Speaker, *,
                     user: str = "system", on_cut: Callable[[], object] | None = None,
                     first_clause: bool = False) -> AsyncGenerator[tuple[str, PCM], None]:
        """Each sentence of a reply that is being written, with its audio, in order: a
        sentence goes to TTS as soon as the model has finished it (``on_cut`` is told),
        while the model writes on. ``first_clause``: the reply's first words go alone as
        soon as they can be spoken alone (``_first_cut``: a call is heard sooner).
        Stopping early (``aclose``) stops reading ``pieces``."""
        sentences: asyncio.Queue[str | None] = asyncio.Queue()

        async def cut() -> None:
            pending, first = "", first_clause
            try:
                async for piece in pieces:
                    pending += piece
                    end = (_first_cut(pending) if first else
                           max(_sentence_ends(pending), default=0))
                    if end and len(pending[:end].split()) >= MIN_WORDS:
                        sentences.put_nowait(pending[:end])
                        pending, first = pending[end:], False
                        if on_cut is not None:
                            on_cut()
                if pending.strip():
                    sentences.put_nowait(pending)
                    if on_cut is not None:
                        on_cut()
            finally:
                sentences.put_nowait(None)

        reader = asyncio.create_task(cut())
        try:
            while (chunk := await sentences.get()) is not None:
                for speakable in speech_chunks(chunk):
                    yield speakable, await self._synth(speakable, user, Priority.INTERACTIVE,
                                                       speaker)
            await reader  # its error, if reading the reply failed
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def speak_stream(self, pieces: AsyncIterable[str], *, user: str = "system",
                           persona: Persona | None = None) -> SpokenReply:
        """Speak a reply while it is being written (``speech``) as one voice note: the
        first audio is ready long before the reply ends."""
        t0 = time.perf_counter()
        speaker = await self.speaker_for(persona)
        said: list[str] = []

        async def kept() -> AsyncIterator[str]:
            async for piece in pieces:
                said.append(piece)
                yield piece

        parts: list[PCM] = []
        first: list[float] = []
        async for _sentence, pcm in self.speech(kept(), speaker, user=user):
            parts.append(pcm)
            if not first:
                first.append(time.perf_counter() - t0)
        if not parts:
            raise InputError("nothing speakable", user_message="There was nothing to say "
                                                               "out loud in that reply.")
        note = await self._encode(parts, speaker, user)
        return SpokenReply(note, first[0], "".join(said))

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

        text = await self.transcribe_pcm(audio, user=user)
        if not text:
            raise InputError("no words heard", user_message="I couldn't make out any words. "
                                                            "Could you try again?")
        return text

    async def transcribe_pcm(self, audio: NDArray[np.float32], *, user: str = "system",
                             priority: Priority = Priority.INTERACTIVE) -> str:
        """The words in 16 kHz mono audio in [-1, 1] ("" if none were made out)."""
        await self.scheduler.warm(STT, "whisper", self.stt.load)

        def run(ctx: JobContext) -> str:
            return self.stt.transcribe(audio)

        job = self.scheduler.submit(STT, run, user=user, kind="stt", priority=priority,
                                    timeout_s=self.cfg.tts_timeout_s)
        try:
            return heard_words(await job.result())
        except asyncio.CancelledError:  # nobody waits for it any more: it goes too
            self.scheduler.cancel(job)
            raise


FIRST_CLAUSE_WORDS = 5
"""A reply's first clause is spoken alone once it has this many words: shorter, its
audio would come sooner but sound clipped."""
FIRST_PHRASE_WORDS = 8
"""A first sentence with no clause end is cut before a conjunction after this many words
("I am not sure what you mean by it | but ...")."""
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-\u2013\u2014](?=\s)")
_CONJUNCTION = re.compile(r"\s(?=(?:and|but|or|so|because|which|if|when|while|though|"
                          r"although|since|unless)\s)", re.IGNORECASE)


def _first_cut(text: str) -> int:
    """Where a reply's first words can be spoken alone, or 0: the earliest of a sentence
    end with ``MIN_WORDS`` words before it, a clause end (comma, semicolon, colon, dash)
    with ``FIRST_CLAUSE_WORDS``, the space before a conjunction with
    ``FIRST_PHRASE_WORDS``."""
    def words(end: int) -> int:
        return len(text[:end].split())

    cuts = [i for i in _sentence_ends(text) if words(i) >= MIN_WORDS]
    cuts += [m.end() for m in _CLAUSE_END.finditer(text) if words(m.end()) >= FIRST_CLAUSE_WORDS]
    cuts += [m.start() for m in _CONJUNCTION.finditer(text)
             if words(m.start()) >= FIRST_PHRASE_WORDS]
    return min(cuts, default=0)


def _sentence_ends(text: str) -> list[int]:
    """Indexes just after each sentence end followed by a space."""
    return [i + 1 for i, ch in enumerate(text[:-1])
            if ch in _SENTENCE_END and text[i + 1].isspace()]
