"""Voice activity for a live call: Silero VAD (the ONNX model that faster-whisper ships),
run on each 32 ms window as the audio arrives, and an endpointer that turns its
probabilities into "speech started" and "speech ended" with hysteresis and a hangover."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ModelError

RATE = 16000
WINDOW = 512
"""Samples the model reads at a time (32 ms at 16 kHz)."""
WINDOW_MS = WINDOW * 1000 // RATE
_CONTEXT = 64


def bundled_vad_model() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVAD:
    """Speech probability of each window, carrying the model's state from one to the next
    (so a stream gives the same figures as the whole clip at once)."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(path or bundled_vad_model()), providers=["CPUExecutionProvider"],
                sess_options=opts)
        except Exception as exc:  # onnxruntime raises its own types
            raise ModelError(f"could not load the voice activity model: {exc}") from exc
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, window: NDArray[np.float32]) -> float:
        """P(speech) for one ``WINDOW`` of 16 kHz audio in [-1, 1]."""
        x = np.concatenate([self._context, window])[None, :]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h,
                                                         "c": self._c})
        self._context = window[-_CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])


class Turn(enum.Enum):
    """What one window changed."""

    NOTHING = "nothing"
    STARTED = "started"
    """Speech has gone on for ``start_ms``: someone is talking (a barge-in, if the persona
    is)."""
    PAUSED = "paused"
    """The first ``early_ms`` of silence after speech: likely the end, worth transcribing
    already (speculatively: speech may resume)."""
    ENDED = "ended"
    """``end_ms`` of silence: the utterance is over."""


class Endpointer:
    """Speech start and end from per-window probabilities: a window is speech above
    ``threshold``, silence below ``threshold - 0.15`` (in between keeps the state)."""

    def __init__(self, *, threshold: float = 0.5, start_ms: int = 96, early_ms: int = 192,
                 end_ms: int = 500) -> None:
        self.on = threshold
        self.off = max(0.01, threshold - 0.15)
        self.start_windows = max(1, round(start_ms / WINDOW_MS))
        self.early_windows = max(1, round(early_ms / WINDOW_MS))
        self.end_windows = max(self.early_windows + 1, round(end_ms / WINDOW_MS))
        self.speaking = False
        self._voiced = 0
        self._silent = 0

    def reset(self) -> None:
        self.speaking = False
        self._voiced = self._silent = 0

    def step(self, p: float) -> Turn:
        if p >= self.on:
            self._voiced += 1
            self._silent = 0
            if not self.speaking and self._voiced >= self.start_windows:
                self.speaking = True
                return Turn.STARTED
            return Turn.NOTHING
        if p < self.off:
            self._silent += 1
            if not self.speaking:
                self._voiced = 0
            elif self._silent == self.early_windows:
                return Turn.PAUSED
            elif self._silent >= self.end_windows:
                self.speaking = False
                self._voiced = 0
                return Turn.ENDED
        return Turn.NOTHING

    @property
    def silent_ms(self) -> int:
        """Silence since the last speech window, in ms."""
        return self._silent * WINDOW_MS
