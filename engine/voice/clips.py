"""Reference clips for voice cloning: check them, then store them clean.

A clip must decode, last 6-30 s, carry speech-level sound (not silence) and not be clipped.
What is kept is mono 16-bit WAV at :data:`CLIP_RATE` (the rate XTTS conditions on), with its
loudness normalised, so every later step reads one simple format.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from engine.errors import InputError
from engine.voice.audio import decode

CLIP_RATE = 22050
TARGET_DBFS = -20.0
"""Loudness (RMS) every stored clip is normalised to."""
PEAK_LIMIT = 0.95
SILENCE_DBFS = -45.0
CLIPPED_SHARE = 0.005
"""A clip with more than this share of samples at full scale was recorded too loud."""


@dataclass(frozen=True)
class CleanClip:
    audio: NDArray[np.float32]
    seconds: float
    loudness_dbfs: float
    """Before normalisation."""

    def wav(self) -> bytes:
        pcm = np.clip(self.audio * 32767, -32768, 32767).astype(np.int16)
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(CLIP_RATE)
            w.writeframes(pcm.tobytes())
        return out.getvalue()


def dbfs(audio: NDArray[np.float32]) -> float:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else -120.0


def clean_clip(data: bytes, *, name: str = "the clip", min_s: float = 6.0,
               max_s: float = 30.0) -> CleanClip:
    """Decode, check and normalise one reference clip; InputError says what is wrong."""
    audio = decode(data, CLIP_RATE)
    seconds = len(audio) / CLIP_RATE
    if seconds < min_s or seconds > max_s:
        raise InputError(f"clip length {seconds:.1f}s", user_message=(
            f"{name} is {seconds:.1f} s long; voice clips must be {min_s:.0f}-{max_s:.0f} s "
            "of one person speaking."))
    level = dbfs(audio)
    if level < SILENCE_DBFS:
        raise InputError(f"clip silent ({level:.0f} dBFS)", user_message=(
            f"{name} is almost silent ({level:.0f} dBFS). Record closer to the microphone."))
    full_scale = float(np.mean(np.abs(audio) >= 0.999))
    if full_scale > CLIPPED_SHARE:
        raise InputError(f"clip clipped ({full_scale:.1%})", user_message=(
            f"{name} is distorted: {full_scale:.1%} of it is at full volume. Record it again "
            "a little quieter."))
    gain = 10 ** ((TARGET_DBFS - level) / 20)
    peak = float(np.abs(audio).max()) * gain
    if peak > PEAK_LIMIT:
        gain *= PEAK_LIMIT / peak
    return CleanClip((audio * gain).astype(np.float32), seconds, level)


def read_clip(path: Path) -> NDArray[np.float32]:
    """A stored clip (as written by :meth:`CleanClip.wav`) as float32 at CLIP_RATE."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != CLIP_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            return decode(path.read_bytes(), CLIP_RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return (pcm.astype(np.float32) / 32768).astype(np.float32)
