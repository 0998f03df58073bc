"""FakeCloneTTS: a deterministic stand-in at the TTS boundary for the cloned-voice backend
(XTTS-v2, whose weights the user brings; its real flow is tested in tests/engine/xtts/). It
"speaks" a short tone per word at XTTS's 24 kHz, and records who it spoke as."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.voice.speaker import Speaker
from engine.voice.tts import PCM, TTSBackend


class FakeCloneTTS(TTSBackend):
    def __init__(self) -> None:
        self.spoken: list[tuple[str, str | None]] = []
        """(text, voice id) of every synthesis."""

    @property
    def sample_rate(self) -> int:
        return 24000

    def load(self) -> None:
        pass

    def synthesize(self, text: str, should_stop: Callable[[], bool] = lambda: False,
                   speaker: Speaker | None = None) -> PCM:
        self.spoken.append((text, speaker.voice_id if speaker else None))
        t = np.arange(int(0.25 * self.sample_rate)) / self.sample_rate
        word = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)
        return np.concatenate([word] * max(1, len(text.split())))
