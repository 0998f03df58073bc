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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select

from engine.memory.chunk import DuplicateFilter, chunk_text, signature_bytes
from engine.memory.clean import normalise, strip_mail, thread_key
from engine.memory.parse import ParseError, SourceDoc, iter_files, parse_file
from engine.memory.service import EMBED, Memory
from engine.memory.style import build_profile
from engine.personas import Persona
from engine.scheduler import JobContext, Priority
from engine.storage.models import MemoryChunk, MemoryFile, PersonaStyle

log = logging.getLogger(__name__)

DOCS_PER_JOB = 128
"""Documents per embedding job: big enough to batch well, small enough (~1 s) that a chat
retrieval never waits long behind an ingest."""


@dataclass
class IngestReport:
    persona: str
    files_seen: int = 0
    files_unchanged: int = 0
    files_indexed: int = 0
    files_failed: dict[str, str] = field(default_factory=dict)
    files_pruned: int = 0
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
            f"{self.files_pruned} pruned",
            f"  mails kept: {self.mails_kept} ({self.mails_own} by the persona, "
            f"{self.mails_context} as context); documents: {self.documents}",
        ]
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
    def add_total(self, n: int) -> None:
        """``n`` more documents are known to come."""

    def advance(self, n: int) -> None:
        """``n`` more documents are done."""


@dataclass
class _Prepared:
    """One document after cleaning, ready to chunk."""

    doc: SourceDoc
    text: str
    kind: str
    index: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _prepare(docs: list[SourceDoc], addresses: set[str],
             report: IngestReport) -> list[_Prepared]:
    out: list[_Prepared] = []
    for i, doc in enumerate(docs):
        if doc.is_mail:
            text, removed = strip_mail(doc.text)
            report.removed_parts.update(removed)
            if not text:
                reason = ("forward or quote only" if removed else "empty body")
                report.dropped[f"mails: {reason}"] += 1
                continue
            own = doc.sender_address in addresses
            kind = "own" if own else "context"
            if own:
                report.mails_own += 1
            else:
                report.mails_context += 1
        else:
            text = normalise(doc.text)
            if not text:
                report.dropped["documents: no text"] += 1
                continue
            kind = "document"
            report.documents += 1
        out.append(_Prepared(doc, text, kind, i))
    return out


class Ingestor:
    def __init__(self, memory: Memory, persona: Persona, *,
                 progress: Progress | None = None) -> None:
        self.memory = memory
        self.persona = persona
        self.progress = progress
        self.addresses = {a.lower() for a in persona.sources.addresses}
        self.dups = DuplicateFilter(memory.cfg.near_duplicate)

    async def run(self, paths: list[Path], *, prune: bool = False,
                  roots: list[Path] | None = None) -> IngestReport:
        """Ingest ``paths``. With ``prune``, known files under ``roots`` (default: ``paths``)
        that were not seen now are dropped from memory."""
        t0 = time.perf_counter()
        name = self.persona.name
        report = IngestReport(persona=name)
        files = list(iter_files(paths))
        report.files_seen = len(files)
        db = self.memory.db
        async with db.session() as s:
            known = {r.path: r for r in (await s.scalars(
                select(MemoryFile).where(MemoryFile.persona == name))).all()}
        todo: list[tuple[Path, str]] = []
        for path in files:
            digest = await asyncio.to_thread(_sha256, path)
            row = known.get(str(path.resolve()))
            if row is not None and row.sha256 == digest:
                report.files_unchanged += 1
                continue
            todo.append((path, digest))
        stale = [known[str(p.resolve())] for p, _ in todo if str(p.resolve()) in known]
        if prune:
            prune_roots = [p.resolve() for p in (roots or paths)]
            present = {str(p.resolve()) for p in files}
            gone = [r for path, r in known.items() if path not in present
                    and any(Path(path).is_relative_to(x) for x in prune_roots)]
            stale += gone
            report.files_pruned = len(gone)
        await self._drop_files(stale)

        async with db.session() as s:
            rows = (await s.execute(select(MemoryChunk.content_hash, MemoryChunk.minhash)
                                    .where(MemoryChunk.persona == name))).all()
        self.dups.load((h, m) for h, m in rows)

        for path, digest in todo:
            try:
                docs = await asyncio.to_thread(parse_file, path)
            except ParseError as exc:
                report.files_failed[str(path)] = str(exc)
                log.warning("skipping %s: %s", path, exc)
                continue
            prepared = _prepare(docs, self.addresses, report)
            if self.progress:
                self.progress.add_total(len(prepared))
            await self._index_file(path, digest, prepared, report)
            report.files_indexed += 1

        await self._update_style()
        self.memory.forget_cached(name)
        report.seconds = time.perf_counter() - t0
        return report

    async def _drop_files(self, rows: list[MemoryFile]) -> None:
        if not rows:
            return
        ids = [r.id for r in rows]
        async with self.memory.db.session() as s, s.begin():
            chunk_ids = list((await s.scalars(
                select(MemoryChunk.id).where(MemoryChunk.file_id.in_(ids)))).all())
            await s.execute(delete(MemoryChunk).where(MemoryChunk.file_id.in_(ids)))
            await s.execute(delete(MemoryFile).where(MemoryFile.id.in_(ids)))
        await self.memory.scheduler.run_on(
            EMBED, lambda: self.memory.store.delete(self.persona.name, chunk_ids))

    async def _index_file(self, path: Path, digest: str, prepared: list[_Prepared],
                          report: IngestReport) -> None:
        name = self.persona.name
        # The file row gets its digest only together with its chunks (one transaction at
        # the end): a run killed in between leaves a row that the next run sees as changed
        # and indexes again, never a file marked done without its chunks.
        async with self.memory.db.session() as s, s.begin():
            frow = MemoryFile(persona=name, path=str(path.resolve()),  # noqa: ASYNC240
                              sha256="", size=path.stat().st_size,  # noqa: ASYNC240
                              documents=len(prepared))
            s.add(frow)
            await s.flush()
            file_id = frow.id
        chunks: list[MemoryChunk] = []
        for start in range(0, len(prepared), DOCS_PER_JOB):
            batch = prepared[start:start + DOCS_PER_JOB]
            job = self.memory.scheduler.submit(
                EMBED, self._chunk_job(batch, file_id, digest, report), user="operator:ingest",
                kind="ingest", priority=Priority.BATCH,
                timeout_s=self.memory.scheduler.config.batch_timeout_s,
            )
            chunks.extend(await job.result())
            if self.progress:
                self.progress.advance(len(batch))
        async with self.memory.db.session() as s, s.begin():
            s.add_all(chunks)
            frow2 = await s.get(MemoryFile, file_id)
            if frow2 is not None:
                frow2.chunks, frow2.sha256 = len(chunks), digest
        report.chunks_added += len(chunks)

    def _chunk_job(self, batch: list[_Prepared], file_id: int, digest: str,
                   report: IngestReport) -> Callable[[JobContext], list[MemoryChunk]]:
        cfg = self.memory.cfg
        persona = self.persona.name

        def run(ctx: JobContext) -> list[MemoryChunk]:
            embedder = self.memory.embedder
            rows: list[MemoryChunk] = []
            for item in batch:
                if ctx.cancelled:
                    break
                doc = item.doc
                pieces = chunk_text(item.text, cfg.chunk_tokens, cfg.chunk_overlap,
                                    embedder.count_tokens)
                for j, piece in enumerate(pieces):
                    reason, h, mh = self.dups.check(piece)
                    if reason:
                        report.duplicates[reason] += 1
                        continue
                    self.dups.add(h, mh)
                    rows.append(MemoryChunk(
                        id=f"{digest[:16]}-{item.index}-{j}", persona=persona, file_id=file_id,
                        kind=item.kind, text=piece, content_hash=h,
                        minhash=signature_bytes(mh), source=doc.source,
                        message_id=doc.message_id[:300], subject=doc.subject,
                        sender=doc.sender[:300], recipients=doc.recipients,
                        thread=thread_key(doc.subject), sent_at=doc.date,
                    ))
            self.memory.embed_and_store(
                persona, [r.id for r in rows], [r.text for r in rows],
                [_metadata(r, file_id) for r in rows],
                [_embedding_text(r) for r in rows],
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


def _embedding_text(row: MemoryChunk) -> str:
    """What is embedded: the subject carries meaning the body often leaves out."""
    return f"{row.subject}\n{row.text}" if row.subject else row.text


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
