"""What a persona's memory holds, file by file: list it, show a file's chunks, delete files
(``doppel memory list|show|delete``; the ingest drops changed and pruned files the same way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from engine.errors import DoppelError, InputError
from engine.memory.service import EMBED, Memory, StoreDamaged
from engine.storage.models import MemoryChunk, MemoryFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    id: int
    path: str
    documents: int
    chunks: int
    size: int
    ingested_at: datetime
    complete: bool
    """False while being read, or after a run that stopped (the next ingest goes on)."""


@dataclass(frozen=True)
class ChunkEntry:
    id: str
    kind: str
    subject: str
    sender: str
    sent_at: datetime | None
    text: str


def _entry(r: MemoryFile) -> FileEntry:
    return FileEntry(r.id, r.path, r.documents, r.chunks, r.size, r.ingested_at,
                     bool(r.sha256))


async def files(memory: Memory, persona: str, pattern: str = "") -> list[FileEntry]:
    """The persona's files, by path; ``pattern`` keeps paths containing it."""
    async with memory.db.session() as s:
        rows = (await s.scalars(select(MemoryFile).where(MemoryFile.persona == persona)
                                .order_by(MemoryFile.path))).all()
    return [_entry(r) for r in rows if pattern in r.path]


async def find_file(memory: Memory, persona: str, which: str) -> FileEntry:
    """One file by its id (as ``memory list`` shows it), its full path, or a unique part of
    the path."""
    entries = await files(memory, persona)
    if which.isdigit():
        found = [e for e in entries if e.id == int(which)]
    else:
        found = [e for e in entries if e.path == which] or [e for e in entries
                                                            if which in e.path]
    if len(found) != 1:
        raise InputError(f"{len(found)} files match {which!r}", user_message=(
            f"{len(found) or 'No'} files in {persona}'s memory match {which!r}"
            + ("; give its id from `doppel memory list`." if found else ".")))
    return found[0]


async def chunks(memory: Memory, persona: str, file_id: int) -> list[ChunkEntry]:
    async with memory.db.session() as s:
        rows = (await s.scalars(select(MemoryChunk).where(
            MemoryChunk.persona == persona, MemoryChunk.file_id == file_id)
            .order_by(MemoryChunk.sent_at, MemoryChunk.id))).all()
    return [ChunkEntry(r.id, r.kind, r.subject, r.sender, r.sent_at, r.text) for r in rows]


async def drop_files(memory: Memory, persona: str, ids: list[int]) -> int:
    """Delete files from memory: their rows, chunks, full-text entries and vectors.
    Returns the chunks removed."""
    if not ids:
        return 0
    async with memory.db.session() as s, s.begin():
        chunk_ids = list((await s.scalars(
            select(MemoryChunk.id).where(MemoryChunk.file_id.in_(ids)))).all())
        await s.execute(delete(MemoryChunk).where(MemoryChunk.file_id.in_(ids)))
        await s.execute(delete(MemoryFile).where(MemoryFile.id.in_(ids)))
    await memory.scheduler.run_on(EMBED, lambda: memory.store.delete(persona, chunk_ids))
    memory.forget_cached(persona)
    return len(chunk_ids)


async def reconcile(memory: Memory, persona: str) -> int:
    """Check the catalogue against the vector store: when vectors of the persona's
    chunks are missing (the store deleted or emptied), the catalogue entries go too, so
    the next ingest reads those files again (a persona's own sources: at the next
    start). Returns the files dropped (0: they agree)."""
    chunks = await memory.size(persona)
    if not chunks:
        return 0

    def count() -> int:
        try:
            return int(memory.store.collection(persona).count())
        except DoppelError:
            raise
        except Exception as exc:
            raise StoreDamaged(memory.chroma_path, exc) from None

    vectors = await memory.scheduler.run_on(EMBED, count)
    if vectors >= chunks:
        return 0
    async with memory.db.session() as s:
        ids = list((await s.scalars(select(MemoryFile.id)
                                    .where(MemoryFile.persona == persona))).all())
    await drop_files(memory, persona, ids)
    log.warning("%s's memory: %d of %d chunks had no vector (the vector store at %s was "
                "deleted or emptied); its %d files are read again by the next ingest",
                persona, chunks - vectors, chunks, memory.chroma_path, len(ids))
    return len(ids)
