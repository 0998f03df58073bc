"""Coqui XTTS-v2: speech in a voice cloned from a few reference clips (optional extra).

The model directory is the user's (``config.json``, ``model.pth``, ``vocab.json``): weights
are never downloaded. Reference clips are decoded by Doppel itself (no FFmpeg libraries for
torchaudio needed) and each voice's conditioning latents are computed once, then cached on
disk next to its clips, keyed by the model and the clips they came from.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError, ModelError
from engine.voice.clips import CLIP_RATE, read_clip
from engine.voice.speaker import Speaker
from engine.voice.tts import PCM, TTSBackend

log = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.pth", "vocab.json")
MAX_REF_SECONDS = 30
CHAR_LIMIT = 240
"""XTTS truncates audio for longer inputs (its limit is 250 for English, less for some
languages); longer sentences are cut at commas or spaces first."""


def xtts_available() -> bool:
    from importlib.util import find_spec

    return find_spec("TTS") is not None


def split_long(text: str, limit: int = CHAR_LIMIT) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at clause ends, else between words."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for part in re.split(r"(?<=[,;:])\s+|\s+", text):
        candidate = f"{current} {part}".strip()
        if len(candidate) > limit and current:
            pieces.append(current)
            current = part
        else:
            current = candidate
    if current:
        pieces.append(current)
    return [p[:limit] for p in pieces]


class XTTSBackend(TTSBackend):
    """XTTS-v2 on the GPU when there is one (``device = "auto"``), else on the CPU."""

    def __init__(self, model_dir: Path, *, device: str = "auto", temperature: float = 0.7,
                 stream_chunk_size: int = 20) -> None:
        self.model_dir = model_dir
        self.device_setting = device
        self.temperature = temperature
        self.stream_chunk_size = stream_chunk_size
        self._model: Any = None
        self._latents: dict[str, tuple[Any, Any]] = {}
        self.fingerprint = ""
        self.languages: tuple[str, ...] = ()

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio.output_sample_rate)

    @property
    def model(self) -> Any:
        if self._model is None:
            self.load()
        return self._model

    def load(self) -> None:
        missing = [f for f in REQUIRED_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise ConfigError(f"[voice] xtts_model_dir {self.model_dir} lacks "
                              f"{', '.join(missing)}")
        if not xtts_available():
            raise ConfigError("[voice] XTTS needs the xtts extra: run `.ci/setup --xtts` "
                              "(or `pip install .[xtts]` with torch 2.9.1)")
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        device = self.device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            config = XttsConfig()
            config.load_json(str(self.model_dir / "config.json"))
            model = Xtts(config)
            model.load_checkpoint(config, checkpoint_dir=str(self.model_dir), eval=True)
            model.to(device)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"could not load XTTS model from {self.model_dir}: {exc}") from exc
        weights = self.model_dir / "model.pth"
        stat = weights.stat()
        self.fingerprint = hashlib.sha256(
            f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        self.languages = tuple(config.languages)
        self._model = model
        log.info("XTTS model %s loaded on %s (%d Hz)", self.model_dir, device,
                 config.audio.output_sample_rate)

    # -- voices -----------------------------------------------------------------------------

    def _cache_file(self, speaker: Speaker) -> Path | None:
        if speaker.cache_dir is None:
            return None
        clips = hashlib.sha256()
        for clip in speaker.clips:
            clips.update(clip.read_bytes())
        return speaker.cache_dir / f"latents-{self.fingerprint}-{clips.hexdigest()[:12]}.pt"

    def conditioning(self, speaker: Speaker) -> tuple[Any, Any]:
        """The voice's (GPT conditioning latent, speaker embedding): from memory, else the
        disk cache, else computed from its clips (and then cached)."""
        import torch

        if self._model is None:
            self.load()  # sets the fingerprint the disk cache is keyed by
        key = f"{speaker.voice_id}:{','.join(map(str, speaker.clips))}"
        if key in self._latents:
            return self._latents[key]
        if not speaker.clips:
            raise InputError("voice without clips", user_message=(
                "This voice has no reference clips to speak with."))
        cache = self._cache_file(speaker)
        if cache is not None and cache.is_file():
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            pair = (saved["gpt_cond_latent"], saved["speaker_embedding"])
            log.info("voice %s: conditioning latents from the cache", speaker.voice_id)
        else:
            pair = self._compute(speaker.clips)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp")
                torch.save({"gpt_cond_latent": pair[0], "speaker_embedding": pair[1]}, tmp)
                tmp.replace(cache)
        self._latents[key] = pair
        return pair

    def _compute(self, clips: tuple[Path, ...]) -> tuple[Any, Any]:
        import torch

        model = self.model
        embeddings, audios = [], []
        with torch.inference_mode():
            for clip in clips:
                audio = torch.from_numpy(read_clip(clip)[: CLIP_RATE * MAX_REF_SECONDS])
                audio = audio.unsqueeze(0).to(model.device)
                embeddings.append(model.get_speaker_embedding(audio, CLIP_RATE))
                audios.append(audio)
            latent = model.get_gpt_cond_latents(
                torch.cat(audios, dim=-1), CLIP_RATE, length=model.config.gpt_cond_len,
                chunk_length=model.config.gpt_cond_chunk_len)
            embedding = torch.stack(embeddings).mean(dim=0)
        return latent.cpu(), embedding.cpu()

    def forget(self, voice_id: str) -> None:
        """Drop a deleted voice's latents from memory (its files are the library's)."""
        for key in [k for k in self._latents if k.split(":", 1)[0] == voice_id]:
            del self._latents[key]

    # -- speech -----------------------------------------------------------------------------

    def _language(self, language: str) -> str:
        code = "zh-cn" if language.lower().startswith("zh") else language.lower().split("-")[0]
        if self.languages and code not in self.languages:
            raise InputError(f"XTTS cannot speak {language!r}", user_message=(
                f"This voice cannot speak that language ({language})."))
        return code

    def stream(self, text: str, should_stop: Callable[[], bool] = lambda: False,
               speaker: Speaker | None = None) -> Iterator[PCM]:
        if speaker is None or not speaker.clips:
            raise InputError("XTTS needs a cloned voice", user_message=(
                "No cloned voice is set up for this persona yet."))
        model = self.model
        latent, embedding = self.conditioning(speaker)
        language = self._language(speaker.language)
        for piece in split_long(text):
            for chunk in model.inference_stream(
                    piece, language, latent, embedding, stream_chunk_size=self.stream_chunk_size,
                    temperature=self.temperature, enable_text_splitting=False):
                if should_stop():
                    return
                audio = chunk.detach().cpu().numpy().reshape(-1)
                yield np.clip(audio * 32767, -32768, 32767).astype(np.int16)

    def synthesize(self, text: str, should_stop: Callable[[], bool] = lambda: False,
                   speaker: Speaker | None = None) -> PCM:
        parts = list(self.stream(text, should_stop, speaker))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
