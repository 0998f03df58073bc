"""Drawing with a diffusers text-to-image pipeline from a directory the operator brings
(an SD-Turbo-class model draws a picture in 1-4 steps). Nothing is downloaded."""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ImagesConfig
from engine.errors import ConfigError

log = logging.getLogger(__name__)

NEGATIVE = "text, letters, watermark, scary, violent, blurry"
"""Asked away from, where the model uses guidance (``[images] guidance`` > 1)."""


@dataclass(frozen=True)
class Drawn:
    data: bytes
    mime: str
    flagged: bool
    """The model's own safety checker flagged it: it is not shown."""


class DiffusionDrawer:
    """Loaded once, on the image worker's thread; ``draw`` blocks that thread."""

    def __init__(self, config: ImagesConfig) -> None:
        assert config.model_dir is not None
        self.config = config
        self.model_dir: Path = config.model_dir
        self._pipe: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"diffusers pipeline {self.model_dir.name} on {self._device}"

    def load(self) -> None:
        with self._lock:
            if self._pipe is not None:
                return
            import torch
            from diffusers import AutoPipelineForText2Image

            want = self.config.device
            self._device = "cuda" if want == "cuda" or (
                want == "auto" and torch.cuda.is_available()) else "cpu"
            dtype = torch.float16 if self._device == "cuda" else torch.float32
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(
                    self.model_dir, dtype=dtype, local_files_only=True)
            except Exception as exc:
                raise ConfigError(f"[images] model_dir {self.model_dir}: not a text-to-image "
                                  f"pipeline diffusers can load ({exc})") from exc
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(self._device)
            log.info("pictures: %s", self.description)

    def draw(self, prompt: str, seed: int, cancelled: Any = lambda: False) -> Drawn:
        """One picture; ``cancelled()`` is asked after every step (the job was cancelled)."""
        import torch

        self.load()
        pipe = self._pipe

        def on_step(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if cancelled():
                p._interrupt = True
            return kwargs

        size = self.config.size
        extra: dict[str, Any] = {}
        if self.config.guidance > 1:
            extra["negative_prompt"] = NEGATIVE
        out = pipe(prompt=prompt, num_inference_steps=self.config.steps,
                   guidance_scale=self.config.guidance, height=size, width=size,
                   generator=torch.Generator(device=self._device).manual_seed(seed),
                   callback_on_step_end=on_step, **extra)
        flags = getattr(out, "nsfw_content_detected", None)
        buf = io.BytesIO()
        out.images[0].convert("RGB").save(buf, format="JPEG", quality=90)
        return Drawn(buf.getvalue(), "image/jpeg", bool(flags and flags[0]))

    def close(self) -> None:
        self._pipe = None
