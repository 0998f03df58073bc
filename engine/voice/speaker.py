"""Who a voice note is spoken as: which TTS backend, which cloned voice, which language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Speaker:
    backend: str = "piper"
    """``piper`` or ``xtts``."""
    voice_id: str = ""
    """XTTS: the cloned voice (its latents are cached under this id)."""
    clips: tuple[Path, ...] = ()
    """XTTS: the reference clips the voice is conditioned on."""
    cache_dir: Path | None = None
    """XTTS: where the voice's conditioning latents are cached."""
    language: str = "en"


PIPER = Speaker()
