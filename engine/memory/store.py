"""Chroma vector store: per persona, one collection of chunk vectors and one of the vectors
of their short windows (a few sentences each: a question matches a sentence better than
a whole mail); we always pass our own embeddings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from engine.errors import ConfigError


def _collection_name(persona: str, prefix: str = "persona") -> str:
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", persona)
    return f"{prefix}-{name}"[:63]


WINDOWS = "windows"
"""Collection name prefix of the window vectors; each has its chunk's id as ``chunk``."""


class VectorStore:
    """Thin wrapper over a chromadb client (PersistentClient, or HttpClient for a server)."""

    def __init__(self, path: Path, url: str = "") -> None:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if url:
            parsed = urlparse(url)
            if not parsed.hostname:
                raise ConfigError(
                    f"[memory] chroma_url must look like http://host:8000, got {url!r}"
                )
            self.client: Any = chromadb.HttpClient(
                host=parsed.hostname, port=parsed.port or 8000,
                ssl=parsed.scheme == "https", settings=settings,
            )
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=settings)
        self._collections: dict[str, Any] = {}

    def collection(self, persona: str, prefix: str = "persona") -> Any:
        key = f"{prefix}\0{persona}"
        if key not in self._collections:
            self._collections[key] = self.client.get_or_create_collection(
                _collection_name(persona, prefix), metadata={"hnsw:space": "cosine"},
                embedding_function=None,
            )
        return self._collections[key]

    def upsert(self, persona: str, ids: list[str], vectors: Any, texts: list[str] | None,
               metadatas: list[dict[str, Any]], prefix: str = "persona") -> None:
        """Add or replace vectors (idempotent: a re-run after a crash does no harm)."""
        col = self.collection(persona, prefix)
        step = int(self.client.get_max_batch_size())
        for i in range(0, len(ids), step):
            col.upsert(ids=ids[i:i + step], embeddings=vectors[i:i + step],
                       documents=texts[i:i + step] if texts is not None else None,
                       metadatas=metadatas[i:i + step])

    def delete(self, persona: str, ids: list[str]) -> None:
        """Delete chunks' vectors and their windows'."""
        if ids:
            col = self.collection(persona)
            windows = self.collection(persona, WINDOWS)
            step = min(int(self.client.get_max_batch_size()), 500)
            for i in range(0, len(ids), step):
                col.delete(ids=ids[i:i + step])
                windows.delete(where={"chunk": {"$in": ids[i:i + step]}})

    def everything(self, persona: str, prefix: str = "persona") -> dict[str, Any]:
        """Every vector of a collection with its metadata, read page by page."""
        col = self.collection(persona, prefix)
        out: dict[str, Any] = {"ids": [], "embeddings": [], "metadatas": []}
        step = min(int(self.client.get_max_batch_size()), 5000)
        offset = 0
        while True:
            got = col.get(include=["embeddings", "metadatas"], limit=step, offset=offset)
            if not got["ids"]:
                return out
            out["ids"].extend(got["ids"])
            out["embeddings"].extend(got["embeddings"])
            out["metadatas"].extend(got["metadatas"])
            offset += len(got["ids"])

    def count(self, persona: str) -> int:
        return int(self.collection(persona).count())
