"""A persona's vectors held in memory for exact search: every chunk's vector and the
vectors of its windows (a few sentences each), with what filters need (date, thread).

Retrieval scores every chunk, not only a vector store's nearest few: each retriever's
scores are then put on one scale (their spread over the whole memory) before they are
added, and a chunk that one retriever ranks low but the others rank high is still seen.
The matrix costs 1.5 kB a vector (float32, 384 dimensions): ~10 MB for 1,700 mails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.memory.clean import thread_key
from engine.memory.store import WINDOWS, VectorStore


@dataclass
class DenseIndex:
    ids: list[str]
    position: dict[str, int]
    vectors: NDArray[np.float32]
    """One unit vector a chunk, in the order of ``ids``."""
    windows: NDArray[np.float32]
    owner: NDArray[np.int64]
    """The chunk (its position) each window vector belongs to..."""
    part: NDArray[np.int64]
    """...and which of its windows it is (``sentence_windows``' order)."""
    metas: list[dict[str, Any]]
    date_ts: NDArray[np.int64]
    threads: NDArray[np.str_]
    counts: tuple[int, int]
    """(chunk vectors, window vectors) in the store when it was read: a store changed by
    another process since (a Chroma server) is read again."""

    @classmethod
    def load(cls, store: VectorStore, persona: str) -> DenseIndex:
        chunks = store.everything(persona)
        wins = store.everything(persona, WINDOWS)
        ids = list(chunks["ids"])
        position = {cid: i for i, cid in enumerate(ids)}
        dim = len(chunks["embeddings"][0]) if ids else 0
        vectors = (np.asarray(chunks["embeddings"], dtype=np.float32) if ids
                   else np.zeros((0, dim), dtype=np.float32))
        keep = [j for j, m in enumerate(wins["metadatas"])
                if m and m.get("chunk") in position]
        windows = (np.asarray([wins["embeddings"][j] for j in keep], dtype=np.float32)
                   if keep else np.zeros((0, dim), dtype=np.float32))
        owner = np.asarray([position[wins["metadatas"][j]["chunk"]] for j in keep],
                           dtype=np.int64)
        part = np.asarray([int(str(wins["ids"][j]).rsplit("~", 1)[-1]) for j in keep],
                          dtype=np.int64)
        metas = [m or {} for m in chunks["metadatas"]]
        return cls(ids, position, vectors, windows, owner, part, metas,
                   np.asarray([int(m.get("date_ts", 0) or 0) for m in metas], dtype=np.int64),
                   np.asarray([str(m.get("thread", "")) for m in metas], dtype=np.str_),
                   (len(ids), len(wins["ids"])))

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, after: int | None, before: int | None, thread: str | None
             ) -> NDArray[np.bool_]:
        """Chunks within the filters (a mail's date in [after, before), its thread)."""
        keep = np.ones(len(self.ids), dtype=np.bool_)
        if after is not None:
            keep &= self.date_ts >= after
        if before is not None:
            keep &= self.date_ts < before
        if thread:
            keep &= self.threads == thread_key(thread)
        return keep

    def similarity(self, query: NDArray[np.float32]
                   ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
        """Each chunk's cosine similarity to ``query``, its best window's (the chunk's own
        where it has no windows), and which window that is (-1: none)."""
        chunk = self.vectors @ query if len(self.ids) else np.zeros(0, dtype=np.float32)
        window = np.full(len(self.ids), -np.inf, dtype=np.float32)
        best = np.full(len(self.ids), -1, dtype=np.int64)
        if len(self.owner):
            scores = (self.windows @ query).astype(np.float32)
            np.maximum.at(window, self.owner, scores)
            top = scores >= window[self.owner]
            best[self.owner[top]] = self.part[top]
        has = best >= 0
        window[~has] = chunk[~has]
        return chunk.astype(np.float32), window, best
