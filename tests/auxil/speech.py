"""Real speech for tests, spoken by the bundled Piper voice (no recordings to ship)."""

from __future__ import annotations

import io
import re
import wave
from functools import cache

import numpy as np

from engine.voice.tts import PiperTTS

CLIP_TEXT = ("Hello, this is Phillip. I am recording a few sentences so that my assistant "
             "can learn how I sound. The rent roll for the Stagecoach property arrived on "
             "Friday, and I will call Jeff about it next week.")


@cache
def _piper() -> PiperTTS:
    return PiperTTS()


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return out.getvalue()


@cache
def speech_pcm(text: str = CLIP_TEXT) -> tuple[bytes, int]:
    """Int16 PCM bytes of ``text`` and their sample rate."""
    tts = _piper()
    return tts.synthesize(text).tobytes(), tts.sample_rate


def speech_seconds(text: str = CLIP_TEXT) -> float:
    """How long ``speech_wav(text)`` speaks (Piper's timing varies a little per call)."""
    raw, rate = speech_pcm(text)
    return len(raw) / 2 / rate


def speech_wav(text: str = CLIP_TEXT, *, gain: float = 1.0, seconds: float | None = None) -> bytes:
    """``text`` spoken as a WAV file, louder by ``gain`` (clipped at full scale), cut to
    ``seconds`` when given."""
    raw, rate = speech_pcm(text)
    pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float64) * gain
    if seconds is not None:
        pcm = pcm[: int(seconds * rate)]
    return wav_bytes(np.clip(pcm, -32768, 32767).astype(np.int16), rate)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def words_heard(said: str, heard: str) -> float:
    """The share of the words in ``said`` that appear in ``heard``.

    Piper samples its prosody afresh on every call and onnxruntime's arithmetic differs
    between CPUs, so Whisper tiny may hear "the rent and roll" one run in a hundred; a test
    that speaks and listens asks for nearly every word, not one exact phrase.
    """
    spoken, got = _words(said), set(_words(heard))
    return sum(w in got for w in spoken) / len(spoken)


def call_audio(text: str) -> bytes:
    """``text`` spoken as a browser sends it on a live call: 16 kHz mono 16-bit PCM."""
    from engine.voice.audio import decode

    pcm = decode(speech_wav(text))
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()


def call_silence(seconds: float) -> bytes:
    return bytes(2 * int(16000 * seconds))
