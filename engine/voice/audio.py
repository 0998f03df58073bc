"""Audio in and out: OGG Opus voice notes (48 kHz mono ~32 kbit/s) and decoding any clip.

Encoding uses pydub with the ffmpeg binary shipped in ``imageio-ffmpeg`` (no system ffmpeg);
decoding uses PyAV through faster-whisper's ``decode_audio`` (no ffmpeg at all).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import InputError

WAVEFORM_SAMPLES = 256


@dataclass(frozen=True)
class VoiceNote:
    ogg: bytes
    duration_s: float
    waveform: bytes
    """256 amplitude samples (0-255), as Discord's voice messages want (base64 them)."""


def _pydub() -> Any:
    import imageio_ffmpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "couldn't find ffmpeg" / audioop deprecation
        from pydub import AudioSegment
    AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
    return AudioSegment


def waveform(pcm: NDArray[np.int16], samples: int = WAVEFORM_SAMPLES) -> bytes:
    """Peak amplitude per bucket, scaled to 0-255."""
    if pcm.size == 0:
        return bytes(samples)
    buckets = np.array_split(np.abs(pcm.astype(np.int32)), samples)
    peaks = np.array([b.max() if b.size else 0 for b in buckets], dtype=np.float64)
    top = peaks.max() or 1.0
    return bytes(np.round(peaks / top * 255).astype(np.uint8))


def encode_voice_note(pcm: NDArray[np.int16], sample_rate: int) -> VoiceNote:
    """Mono int16 PCM -> OGG Opus voice note with duration and waveform."""
    segment = _pydub()(pcm.astype(np.int16).tobytes(), frame_rate=sample_rate,
                       sample_width=2, channels=1)
    out = io.BytesIO()
    segment.set_frame_rate(48000).export(
        out, format="ogg", codec="libopus", bitrate="32k",
        parameters=["-ar", "48000", "-ac", "1", "-application", "voip"])
    return VoiceNote(out.getvalue(), len(pcm) / sample_rate, waveform(pcm))


def decode(data: bytes, sample_rate: int = 16000) -> NDArray[np.float32]:
    """Any clip (OGG Opus, M4A, MP3, WAV, ...) -> mono float32 at ``sample_rate``."""
    from faster_whisper import decode_audio

    try:
        audio = decode_audio(io.BytesIO(data), sampling_rate=sample_rate)
    except Exception as exc:  # PyAV raises many types for broken input
        raise InputError(f"cannot decode audio: {exc}", user_message=(
            "I couldn't read that audio. Please send a voice note or an OGG, M4A, MP3 or "
            "WAV file.")) from exc
    return np.asarray(audio, dtype=np.float32)
