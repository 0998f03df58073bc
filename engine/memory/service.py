"""The engine's memory: embedder and vector store, used only from the ``embed`` resource thread."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from engine.config import MemoryConfig
from engine.errors import DoppelError
from engine.locking import DataDirLocked
from engine.memory.chunk import Span, sentence_windows
from engine.memory.embed import Embedder, Vectors
from engine.memory.index import DenseIndex
from engine.memory.relevance import Evidence, Gate, TermStats, weigh
from engine.memory.retrieve import (
    ALL_STAGES,
    LEXICAL_WEIGHTS,
    Candidate,
    Filters,
    Hit,
    Stages,
    content_words,
    fts_query,
    fuse,
    name_words,
    personal_asked,
    select_hits,
    without_names,
)
from engine.memory.store import WINDOWS, VectorStore
from engine.memory.style import StyleProfile
from engine.scheduler import JobContext, Priority, Scheduler
from engine.storage.db import Database
from engine.storage.models import MemoryChunk, MemoryFile, PersonaStyle

log = logging.getLogger(__name__)


def _passage(text: str, window: int) -> str:
    """Window ``window`` of a chunk's text (as embedded, without its subject); "" for none."""
    if window < 0:
        return ""
    windows = sentence_windows(text)
    return windows[window] if window < len(windows) else ""

EMBED = "embed"


class StoreDamaged(DoppelError):
    """The vector store cannot be opened or read (its files damaged)."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        super().__init__(
            f"the memory's vector store at {path} is damaged ({type(exc).__name__}: "
            f"{str(exc)[:120]}): move it away, then `doppel ingest` builds it again from "
            "the sources", user_message="My memory is unavailable right now; I can talk, "
                                        "but not from what I remember.")


class Memory:
    def __init__(self, cfg: MemoryConfig, data_dir: Path, db: Database,
                 scheduler: Scheduler, *, embedder: Embedder | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.scheduler = scheduler
        self.chroma_path = cfg.chroma_path or data_dir / "chroma"
        self.embedder = embedder or Embedder(cfg.embedding_model, batch_size=cfg.embed_batch,
                                             precision=cfg.embed_precision)
        self._store: VectorStore | None = None
        self._sizes: dict[str, int] = {}
        url = make_url(db.url)
        self.fts_path = (Path(url.database) if url.get_backend_name() == "sqlite"
                         and url.database not in (None, "", ":memory:") else None)
        self._fts: sqlite3.Connection | None = None
        self._styles: dict[str, StyleProfile | None] = {}
        self._terms: dict[str, TermStats] = {}
        self._index: dict[str, DenseIndex] = {}
        self.shared = False
        """Set when the engine runs beside another process on the data dir (read-only
        commands): an embedded Chroma must not be opened by two processes."""
        self.gate = Gate(cfg.min_score, cfg.gate_threshold)

    # Everything below that touches the model or Chroma runs on the embed thread.

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            if self.shared and not self.cfg.chroma_url:
                raise DataDirLocked("this command runs beside another Doppel process and "
                                    "may not open the memory's vector store; stop it first")
            try:
                self._store = VectorStore(self.chroma_path, self.cfg.chroma_url)
            except DoppelError:
                raise
            except Exception as exc:  # a damaged chroma.sqlite3, a broken folder
                raise StoreDamaged(self.chroma_path, exc) from None
        return self._store


    def load(self) -> None:
        """Load the embedding model and open the store (blocking, on the embed thread)."""
        self.embedder.load()
        _ = self.store

    async def preload(self) -> None:
        """Load the embedding model and open the store, once; recall waits for it before
        queuing, so a cold model never counts against a recall's timeout."""
        await self.scheduler.warm(EMBED, "memory", self.load)

    async def size(self, persona: str) -> int:
        """Chunks in the persona's memory (cached; refreshed after ingest)."""
        if persona not in self._sizes:
            async with self.db.session() as s:
                n = await s.scalar(select(func.count()).select_from(MemoryChunk)
                                   .where(MemoryChunk.persona == persona))
            self._sizes[persona] = int(n or 0)
        return self._sizes[persona]

    async def stats(self, persona: str) -> dict[str, Any]:
        async with self.db.session() as s:
            files = await s.scalar(select(func.count()).select_from(MemoryFile)
                                   .where(MemoryFile.persona == persona))
            kinds = (await s.execute(
                select(MemoryChunk.kind, func.count()).where(MemoryChunk.persona == persona)
                .group_by(MemoryChunk.kind))).all()
        by_kind = {k: int(n) for k, n in kinds}
        return {"files": int(files or 0), "chunks": sum(by_kind.values()), "by_kind": by_kind}

    def forget_cached(self, persona: str) -> None:
        self._sizes.pop(persona, None)
        self._styles.pop(persona, None)
        self._terms.pop(persona, None)
        self._index.pop(persona, None)

    async def term_stats(self, persona: str) -> TermStats:
        """How many chunks contain each word, and the years memory spans (cached; refreshed
        after ingest)."""
        if persona not in self._terms:
            async with self.db.session() as s:
                rows = (await s.execute(
                    select(MemoryChunk.subject, MemoryChunk.text, MemoryChunk.sent_at)
                    .where(MemoryChunk.persona == persona))).all()
            self._terms[persona] = TermStats.build(
                (f"{subject}\n{text}" for subject, text, _ in rows),
                ((sent.year, sent.month) for _, _, sent in rows if sent is not None))
        return self._terms[persona]

    async def recall(
        self,
        persona: str,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        user: str = "system",
        priority: Priority = Priority.INTERACTIVE,
        min_score: float | None = None,
        names: list[str] | None = None,
        stages: Stages = ALL_STAGES,
    ) -> list[Hit]:
        """Chunks of the persona's memory that answer ``question``; [] when the relevance
        decision says memory has nothing. ``min_score`` set: only that cosine similarity
        decides (-1: always the best ``k``). ``names``: the persona's own names, which
        say who is asked, not what."""
        if not question.strip():
            return []
        size = await self.size(persona)
        if size == 0:
            return []
        top_k = k or self.cfg.top_k
        stats = await self.term_stats(persona)
        own = name_words(names or []) if stages.names else set()
        asked = without_names(question, own)
        words = [w for w in content_words(asked) if w not in own]
        personal = personal_asked(asked)
        await self.preload()

        def run(ctx: JobContext) -> list[Hit]:
            vec = self.embedder.embed([asked])[0]
            n = min(max(self.cfg.candidates, top_k), size)
            candidates = self._candidates(persona, words, vec, n, filters, stages)

            def judge(found: list[Candidate], cosine: Any) -> list[float] | None:
                evidence = self.evidence(asked, found, cosine, stats, words,
                                         [c.window for c in found])
                if min_score is not None:
                    ok = float(cosine.max()) >= min_score
                else:
                    ok = evidence.relevant(self.gate) and all(
                        self._speaks_of_own(persona, what) for what in personal)
                return list(evidence.coverages) if ok else None

            return select_hits(vec, candidates, top_k, self.cfg.mmr_lambda, judge, stages)

        job = self.scheduler.submit(EMBED, run, user=user, kind="recall", priority=priority,
                                    timeout_s=30)
        return await job.result()

    @staticmethod
    def evidence(question: str, candidates: list[Candidate], cosine: Any,
                 stats: TermStats | None, words: list[str] | None = None,
                 windows: list[float] | None = None) -> Evidence:
        return weigh(question, [f"{c.meta.get('subject', '')}\n{c.text}" for c in candidates],
                     [float(x) for x in cosine], stats,
                     content_words(question) if words is None else words, windows)

    def index(self, persona: str) -> DenseIndex:
        """The persona's vectors in memory (embed thread), read again when the store has
        changed under it."""
        cached = self._index.get(persona)
        if cached is not None and cached.counts == (
                self.store.count(persona), int(self.store.collection(persona, WINDOWS).count())):
            return cached
        self._index[persona] = DenseIndex.load(self.store, persona)
        return self._index[persona]

    def _candidates(self, persona: str, words: list[str], vec: Vectors, n: int,
                    filters: Filters | None, stages: Stages) -> list[Candidate]:
        """The ``n`` chunks with the best fused score of the retrievers (embed thread)."""
        index = self.index(persona)
        if not len(index):
            return []
        f = filters or Filters()
        keep = index.mask(int(f.after.timestamp()) if f.after else None,
                          int(f.before.timestamp()) if f.before else None, f.thread)
        if not keep.any():
            return []
        chunk, window, best = index.similarity(np.asarray(vec, dtype=np.float32))
        parts = []
        if stages.lexical:
            lexical = np.zeros(len(index), dtype=np.float32)
            for cid, score in self._lexical(persona, words, stages.context):
                i = index.position.get(cid)
                if i is not None:
                    lexical[i] = score
            parts.append(lexical)
        if stages.dense:
            parts.append(chunk)
        if stages.windows:
            parts.append(window)
        fused = fuse(parts, keep)
        fused[~keep] = -np.inf
        order = [int(i) for i in np.argsort(-fused, kind="stable")[:min(n, int(keep.sum()))]]
        ids = [index.ids[i] for i in order]
        got = self.store.collection(persona).get(ids=ids, include=["documents"])
        texts = dict(zip(got["ids"], got["documents"], strict=True))
        return [Candidate(index.ids[i], index.vectors[i], texts.get(index.ids[i]) or "",
                          index.metas[i], fused=float(fused[i]), window=float(window[i]),
                          passage=_passage(texts.get(index.ids[i]) or "", int(best[i])))
                for i in order if index.ids[i] in texts]

    def _speaks_of_own(self, persona: str, what: str) -> bool:
        """Whether the persona's own words mention their own ``what`` ("my wife"; embed
        thread). Without a full-text index (other databases), assumed so."""
        rows = self._full_text(
            "SELECT 1 FROM memory_fts f JOIN memory_chunks c ON c.rowid = f.rowid "
            "WHERE memory_fts MATCH ? AND f.persona = ? AND c.kind = 'own' LIMIT 1",
            (f'text : "my {what}"', persona))
        return rows is None or bool(rows)

    def _lexical(self, persona: str, words: list[str], context: bool
                 ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of every chunk that has any of ``words`` (SQLite FTS5;
        other databases: none, vector search alone)."""
        if not words:
            return []
        w = LEXICAL_WEIGHTS
        match = fts_query(words) if context else f"{{subject text}} : ({fts_query(words)})"
        rows = self._full_text(
            f"SELECT chunk_id, bm25(memory_fts, 0, 0, {w['subject']}, {w['text']}, "
            f"{w['context'] if context else 0.0}) FROM memory_fts "
            "WHERE memory_fts MATCH ? AND persona = ?", (match, persona))
        return [(r[0], -float(r[1])) for r in rows or []]

    def _full_text(self, sql: str, params: tuple[str, ...]) -> list[Any] | None:
        """The rows of a query on the full-text index (embed thread); None without one
        (other databases) or when the query fails: a malformed query must not break
        retrieval."""
        if self.fts_path is None:
            return None
        if self._fts is None:
            self._fts = sqlite3.connect(f"file:{self.fts_path}?mode=ro", uri=True)
        try:
            return self._fts.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            log.warning("full-text search failed for %r: %s", params[0], exc)
            return None

    async def style(self, persona: str) -> StyleProfile | None:
        if persona not in self._styles:
            async with self.db.session() as s:
                row = await s.get(PersonaStyle, persona)
            self._styles[persona] = (StyleProfile.from_dict(json.loads(row.profile))
                                     if row else None)
        return self._styles[persona]

    def embed_and_store(self, persona: str, ids: list[str], texts: list[str],
                        metas: list[dict[str, Any]], embed_texts: list[str],
                        windows: list[list[list[Span]]] | None = None) -> None:
        """Embed chunks and upsert them into the persona's collection (embed thread).
        ``texts`` are stored and quoted; ``embed_texts`` are what the vectors are made of;
        ``windows``: each chunk's windows (``window_spans``: ranges of its ``embed_texts``),
        pooled from the chunk's pass into the window collection."""
        if not ids:
            return
        spans = windows or [[] for _ in ids]
        vectors, pooled = self.embedder.embed_parts(embed_texts, spans)
        self.store.upsert(persona, ids, vectors, texts, metas)
        flat = [(cid, j) for cid, ws in zip(ids, spans, strict=True) for j in range(len(ws))]
        if flat:
            meta = dict(zip(ids, metas, strict=True))
            self.store.upsert(
                persona, [f"{cid}~{j}" for cid, j in flat], np.concatenate(pooled), None,
                [{"chunk": cid, "date_ts": meta[cid].get("date_ts", 0),
                  "thread": meta[cid].get("thread", "")} for cid, _ in flat], WINDOWS)
