"""``doppel ingest``: files -> cleaned documents -> deduplicated chunks -> vectors + SQLite rows.

Incremental: a file whose SHA-256 is unchanged is skipped; a changed file is re-indexed;
with ``prune``, files under the given paths that no longer exist are dropped.
Parsing runs on a worker thread; chunking and embedding run as batch jobs on the
scheduler's ``embed`` resource, so chat retrieval is never stuck behind a whole ingest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from engine.memory.catalog import drop_files, reconcile
from engine.memory.chunk import (
    DuplicateFilter,
    chunk_text,
    embedding_text,
    signature_bytes,
    unit_counter,
    window_spans,
)
from engine.memory.clean import normalise, quoted_body, strip_mail, thread_key
from engine.memory.parse import (
    ParseError,
    Skipped,
    SourceDoc,
    iter_files,
    path_text,
    read_file,
)
from engine.memory.service import EMBED, Memory
from engine.memory.style import build_profile
from engine.personas import Persona
from engine.printable import printable
from engine.scheduler import Job, JobContext, Priority
from engine.storage.models import MemoryChunk, MemoryFile, PersonaStyle

log = logging.getLogger(__name__)

DOCS_PER_JOB = 128
"""Documents per embedding job: big enough to batch well, small enough (~1 s) that a chat
retrieval never waits long behind an ingest."""
EMBED_STEP = 128
"""Chunks embedded between checks for a stop request (a job's whole batch: smaller calls
cost the embedder a sixth of its speed)."""


def persona_tag(persona: str) -> str:
    """A short mark of the persona in its chunks' ids: the same file in two personas'
    memories (or a persona folder copied) makes ids of its own for each."""
    return hashlib.sha256(persona.encode()).hexdigest()[:8]


@dataclass
class IngestReport:
    persona: str
    files_seen: int = 0
    files_unchanged: int = 0
    files_indexed: int = 0
    files_failed: dict[str, str] = field(default_factory=dict)
    files_pruned: int = 0
    files_excluded: int = 0
    """Files left out by --exclude, a .doppelignore or the defaults (licences, hidden)."""
    files_outside: list[str] = field(default_factory=list)
    """Links in a folder given that lead out of it: never read."""
    files_rebuilt: int = 0
    """Files whose vectors the store had lost: dropped from the catalogue, read again."""
    documents_resumed: int = 0
    """Documents a stopped run had already stored (not read again)."""
    mails_own: int = 0
    mails_context: int = 0
    documents: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Mails or documents dropped whole, per reason."""
    removed_parts: Counter[str] = field(default_factory=Counter)
    """Parts cut out of kept mails (quoted replies, signatures, ...), per kind."""
    chunks_added: int = 0
    duplicates: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def mails_kept(self) -> int:
        return self.mails_own + self.mails_context

    def as_dict(self) -> dict[str, Any]:
        return {
            "persona": self.persona, "files_seen": self.files_seen,
            "files_unchanged": self.files_unchanged, "files_indexed": self.files_indexed,
            "files_failed": self.files_failed, "files_pruned": self.files_pruned,
            "files_excluded": self.files_excluded, "files_outside": self.files_outside,
            "files_rebuilt": self.files_rebuilt,
            "documents_resumed": self.documents_resumed,
            "mails_kept": self.mails_kept, "mails_own": self.mails_own,
            "mails_context": self.mails_context, "documents": self.documents,
            "dropped": dict(self.dropped), "removed_parts": dict(self.removed_parts),
            "chunks_added": self.chunks_added, "duplicates": dict(self.duplicates),
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> str:
        lines = [
            f"Ingested into '{self.persona}' in {self.seconds:.1f}s",
            f"  files: {self.files_seen} seen, {self.files_indexed} indexed, "
            f"{self.files_unchanged} unchanged, {len(self.files_failed)} failed, "
            f"{self.files_pruned} pruned"
            + (f", {self.files_excluded} left out by exclusions" if self.files_excluded
               else ""),
            f"  mails kept: {self.mails_kept} ({self.mails_own} by the persona, "
            f"{self.mails_context} as context); documents: {self.documents}",
        ]
        if self.files_rebuilt:
            lines.append(f"  the vector store had lost the vectors of {self.files_rebuilt} "
                         "known files: they are read again (files elsewhere: ingest them "
                         "again)")
        if self.files_outside:
            shown = ", ".join(printable(f) for f in self.files_outside[:5])
            more = len(self.files_outside) - 5
            n = len(self.files_outside)
            lines.append(f"  not read: {n} {'link that leads' if n == 1 else 'links that lead'}"
                         f" out of the folder given ({shown}"
                         f"{f' and {more} more' if more > 0 else ''})")
        if self.documents_resumed:
            lines.append(f"  resumed: {self.documents_resumed} documents were already in "
                         "from the run that stopped")
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{n} {why}" for why, n in
                                                   self.dropped.most_common()))
        if self.removed_parts:
            lines.append("  cut from kept mails: " + ", ".join(
                f"{why} ({n})" for why, n in self.removed_parts.most_common()))
        dups = sum(self.duplicates.values())
        lines.append(f"  chunks added: {self.chunks_added}; duplicates skipped: {dups}"
                     + (f" ({', '.join(f'{n} {k}' for k, n in self.duplicates.items())})"
                        if dups else ""))
        for name, why in self.files_failed.items():
            lines.append(f"  could not read {name}: {why}")
        return "\n".join(lines)


class Progress(Protocol):
    def start(self, total_bytes: int) -> None:
        """The bytes of all files to read, known before reading starts."""

    def advance(self, n_bytes: int, docs: int) -> None:
        """``n_bytes`` more read, ``docs`` more documents done."""


@dataclass
class _Prepared:
    """One document after cleaning, ready to chunk."""

    doc: SourceDoc
    text: str
    kind: str
    context: str
    index: int
    file_id: int
    digest: str


@dataclass
class _File:
    """A file being read: its row, and how far the documents committed so far reach."""

    path: Path
    digest: str
    row_id: int = 0
    skip: int = 0
    """Documents a stopped run already committed (resumed past)."""
    read: int = 0
    documents: int = 0
    chunks: int = 0
    finished: bool = False


HASH_STEP = 64 << 20
"""Bytes hashed per thread hop: a stop request waits at most for one step."""
READ_STEP = 64
"""Documents parsed per thread hop."""


def _sha256_part(h: Any, f: Any) -> bool:
    data = f.read(HASH_STEP)
    h.update(data)
    return len(data) == HASH_STEP


async def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while await asyncio.to_thread(_sha256_part, h, f):
            pass
    return h.hexdigest()


def _take(it: Iterator[tuple[int, SourceDoc | Skipped, int]], n: int
          ) -> list[tuple[int, SourceDoc | Skipped, int]]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


CONTEXT_CHARS = 2000
"""Of the mail a mail answers, this much is kept for full-text search."""


def _prepare(doc: SourceDoc, addresses: set[str], report: IngestReport
             ) -> tuple[str, str, str] | None:
    """(cleaned text, kind, the mail it answers) of one document, or None when nothing of
    it is kept."""
    if doc.is_mail:
        text, removed = strip_mail(doc.text)
        report.removed_parts.update(removed)
        if not text:
            reason = ("forward or quote only" if removed else "empty body")
            report.dropped[f"mails: {reason}"] += 1
            return None
        own = doc.sender_address in addresses
        if own:
            report.mails_own += 1
        else:
            report.mails_context += 1
        return text, "own" if own else "context", quoted_body(doc.text)[:CONTEXT_CHARS]
    text = normalise(doc.text)
    if not text:
        report.dropped["documents: no text"] += 1
        return None
    report.documents += 1
    return text, "document", ""


class Ingestor:
    """Reads files into a persona's memory: streamed (a mailbox mail by mail, in bounded
    memory), batched across files (many small files cost little more than one big one),
    committed batch by batch (a stopped run resumes where it stopped)."""

    def __init__(self, memory: Memory, persona: Persona, *,
                 progress: Progress | None = None) -> None:
        self.memory = memory
        self.persona = persona
        self.progress = progress
        self.addresses = {a.lower() for a in persona.sources.addresses}
        self.dups = DuplicateFilter(memory.cfg.near_duplicate)
        self._batch: list[_Prepared] = []
        """Documents read and not yet handed to the embedder."""
        self._embedding: tuple[list[_Prepared], Job[list[MemoryChunk]]] | None = None
        """The batch being embedded meanwhile."""
        self._open: dict[int, _File] = {}

    async def run(self, paths: list[Path], *, prune: bool = False,
                  roots: list[Path] | None = None, exclude: Sequence[str] = ()
                  ) -> IngestReport:
        """Ingest ``paths`` (minus ``exclude`` globs and ``.doppelignore`` patterns). With
        ``prune``, known files under ``roots`` (default: ``paths``) not seen now are
        dropped from memory."""
        t0 = time.perf_counter()
        name = self.persona.name
        report = IngestReport(persona=name)
        report.files_rebuilt = await reconcile(self.memory, name)
        left_out: list[Path] = []
        outside: list[Path] = []
        files = list(iter_files(paths, exclude, left_out, outside))
        report.files_seen, report.files_excluded = len(files), len(left_out)
        report.files_outside = [path_text(p) for p in outside]
        db = self.memory.db
        async with db.session() as s:
            known = {r.path: r for r in (await s.scalars(
                select(MemoryFile).where(MemoryFile.persona == name))).all()}
        todo: list[_File] = []
        stale: list[MemoryFile] = []
        for path in files:
            digest = await _sha256(path)
            row = known.get(path_text(path.resolve()))
            if row is not None and row.sha256 == digest:
                report.files_unchanged += 1
                continue
            item = _File(path, digest)
            if row is not None and not row.sha256 and row.reading_sha256 == digest:
                item.row_id, item.skip = row.id, row.docs_read  # a stopped run: resume
                item.documents, item.chunks = row.documents, row.chunks
            elif row is not None:
                stale.append(row)
            todo.append(item)
        if prune:
            prune_roots = [p.resolve() for p in (roots or paths)]
            present = {path_text(p.resolve()) for p in files}
            gone = [r for path, r in known.items() if path not in present
                    and any(Path(path).is_relative_to(x) for x in prune_roots)]
            stale += gone
            report.files_pruned = len(gone)
        # The model loads on the embed thread while the first batch is read.
        loading = asyncio.ensure_future(self.memory.preload()) if todo else None
        await self._drop_ids([r.id for r in stale])

        async with db.session() as s:
            rows = (await s.execute(select(MemoryChunk.content_hash, MemoryChunk.minhash)
                                    .where(MemoryChunk.persona == name))).all()
        self.dups.load((h, m) for h, m in rows)
        if self.progress:
            self.progress.start(sum(f.path.stat().st_size for f in todo))

        for item in todo:
            await self._read(item, report)
        if loading is not None:
            await loading
        await self._send(report)
        await self._settle(report)

        await self._update_style()
        self.memory.forget_cached(name)
        report.seconds = time.perf_counter() - t0
        return report

    async def _read(self, item: _File, report: IngestReport) -> None:
        """Stream one file's documents into the batch; the file is done when its last
        batch is committed."""
        stream = read_file(item.path, item.skip)
        done_bytes = 0
        report.documents_resumed += item.skip
        try:
            first = await asyncio.to_thread(_take, stream, READ_STEP)
        except ParseError as exc:
            report.files_failed[path_text(item.path)] = str(exc)
            log.warning("skipping %s: %s", item.path, exc)
            if self.progress:
                self.progress.advance(item.path.stat().st_size, 0)
            if item.row_id:
                await self._drop_ids([item.row_id])
            return
        if not item.row_id:
            async with self.memory.db.session() as s, s.begin():
                row = MemoryFile(persona=self.persona.name, path=path_text(item.path.resolve()),
                                 sha256="", reading_sha256=item.digest,
                                 size=item.path.stat().st_size)
                s.add(row)
                await s.flush()
                item.row_id = row.id
        self._open[item.row_id] = item
        item.read = item.skip
        steps = first
        while steps:
            for index, doc, end in steps:
                if isinstance(doc, Skipped):
                    report.dropped[f"mails: {doc.reason}"] += 1
                elif (prepared := _prepare(doc, self.addresses, report)) is not None:
                    self._batch.append(_Prepared(doc, *prepared, index, item.row_id,
                                                 item.digest))
                item.read = index + 1
                if len(self._batch) >= DOCS_PER_JOB:
                    await self._send(report)
                if self.progress:
                    self.progress.advance(end - done_bytes, 0)
                done_bytes = end
            if self.progress:
                self.progress.advance(0, len(steps))
            steps = await asyncio.to_thread(_take, stream, READ_STEP)
        item.finished = True  # marked done at the commit that holds its last document
        report.files_indexed += 1

    async def _send(self, report: IngestReport) -> None:
        """Hand the batch to the embedder, once the batch before it is committed: one batch
        is embedded while the next is read."""
        await self._settle(report)
        batch, self._batch = self._batch, []
        if batch:
            job = self.memory.scheduler.submit(
                EMBED, self._chunk_job(batch, report), user="operator:ingest",
                kind="ingest", priority=Priority.BATCH,
                timeout_s=self.memory.scheduler.config.batch_timeout_s,
            )
            self._embedding = (batch, job)

    async def _settle(self, report: IngestReport) -> None:
        """Wait for the batch being embedded and commit it; record how far each file got,
        and mark the files whose every document is in."""
        batch: list[_Prepared] = []
        rows: list[MemoryChunk] = []
        if self._embedding is not None:
            batch, job = self._embedding
            self._embedding = None
            try:
                rows = await job.result()
            except asyncio.CancelledError:  # Ctrl-C: stop the embedding, keep what is in
                self.memory.scheduler.cancel(job)
                raise
        waiting = {p.file_id for p in self._batch}
        async with self.memory.db.session() as s, s.begin():
            s.add_all(rows)
            for file_id, item in list(self._open.items()):
                item.chunks += sum(r.file_id == file_id for r in rows)
                item.documents += sum(p.file_id == file_id for p in batch)
                row = await s.get(MemoryFile, file_id)
                if row is None:
                    continue
                # A rerun resumes at the first document not committed yet.
                pending = [p.index for p in self._batch if p.file_id == file_id]
                row.docs_read = min(pending) if pending else item.read
                row.documents, row.chunks = item.documents, item.chunks
                if item.finished and file_id not in waiting:
                    row.sha256, row.reading_sha256 = item.digest, ""
                    del self._open[file_id]
        report.chunks_added += len(rows)

    async def _drop_ids(self, ids: list[int]) -> None:
        await drop_files(self.memory, self.persona.name, ids)

    def _chunk_job(self, batch: list[_Prepared], report: IngestReport
                   ) -> Callable[[JobContext], list[MemoryChunk]]:
        cfg = self.memory.cfg
        persona = self.persona.name
        tag = persona_tag(persona)

        def run(ctx: JobContext) -> list[MemoryChunk]:
            embedder = self.memory.embedder
            count = unit_counter([item.text for item in batch], embedder.count_many,
                                 embedder.count_tokens)
            rows: list[MemoryChunk] = []
            for item in batch:
                if ctx.cancelled:
                    break
                doc = item.doc
                pieces = chunk_text(item.text, cfg.chunk_tokens, cfg.chunk_overlap, count)
                for j, piece in enumerate(pieces):
                    reason, h, mh = self.dups.check(piece)
                    if reason:
                        report.duplicates[reason] += 1
                        continue
                    self.dups.add(h, mh)
                    rows.append(MemoryChunk(
                        id=f"{item.digest[:16]}-{tag}-{item.index}-{j}", persona=persona,
                        file_id=item.file_id,
                        kind=item.kind, text=piece, context=item.context, content_hash=h,
                        minhash=signature_bytes(mh), source=doc.source,
                        message_id=doc.message_id[:300], subject=doc.subject,
                        sender=doc.sender[:300], recipients=doc.recipients,
                        thread=thread_key(doc.subject), sent_at=doc.date,
                    ))
            for start in range(0, len(rows), EMBED_STEP):
                if ctx.cancelled:  # stopped: what is embedded is upserted again next time
                    break
                part = rows[start:start + EMBED_STEP]
                self.memory.embed_and_store(
                    persona, [r.id for r in part], [r.text for r in part],
                    [_metadata(r, r.file_id) for r in part],
                    [embedding_text(r.text, r.subject) for r in part],
                    [window_spans(r.text, r.subject) for r in part],
                )
            return rows

        return run

    async def _update_style(self) -> None:
        name = self.persona.name
        async with self.memory.db.session() as s, s.begin():
            texts = (await s.scalars(
                select(MemoryChunk.text).where(MemoryChunk.persona == name,
                                               MemoryChunk.kind == "own",
                                               MemoryChunk.id.like("%-0")))).all()
            profile = build_profile(list(texts))
            row = await s.get(PersonaStyle, name)
            data = json.dumps(profile.as_dict())
            if row is None:
                s.add(PersonaStyle(persona=name, profile=data))
            else:
                row.profile = data


def _metadata(row: MemoryChunk, file_id: int) -> dict[str, Any]:
    return {
        "source": row.source,
        "kind": row.kind,
        "message_id": row.message_id,
        "subject": row.subject,
        "date": row.sent_at.date().isoformat() if row.sent_at else "",
        "date_ts": int(row.sent_at.timestamp()) if row.sent_at else 0,
        "thread": row.thread,
        "file_id": file_id,
    }
