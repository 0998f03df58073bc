"""Ingest with the real embedder, real Chroma and SQLite: counts, incremental runs, prune."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from engine.engine import Engine, UserRef
from engine.memory.embed import Embedder, Vectors
from engine.memory.ingest import Ingestor
from engine.memory.style import StyleProfile
from engine.profile import SERVER
from tests.auxil.eventually import eventually
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import CORPUS, MakeConfig


def db_path(engine: Engine) -> Path:
    return engine.config.storage.data_dir / "doppel.db"


def counts(engine: Engine, persona: str = "allen") -> tuple[int, int, int]:
    """(SQLite chunks, full-text rows, Chroma vectors) of a persona."""
    with sqlite3.connect(db_path(engine)) as db:
        rows = db.execute("SELECT count(*) FROM memory_chunks WHERE persona = ?",
                          (persona,)).fetchone()[0]
        fts = db.execute("SELECT count(*) FROM memory_fts WHERE persona = ?",
                         (persona,)).fetchone()[0]
    return rows, fts, engine.memory.store.count(persona)


async def ingest(engine: Engine, paths: list[Path], **kw: object) -> Ingestor:
    ing = Ingestor(engine.memory, engine.personas.get("allen"))
    ing.report = await ing.run(paths, **kw)  # type: ignore[attr-defined, arg-type]
    return ing


async def test_ingest_persona_sources_then_rerun_adds_nothing(memory_engine: Engine) -> None:
    allen = memory_engine.personas.get("allen")
    files = allen.source_files()
    report = await Ingestor(memory_engine.memory, allen).run(files)
    assert report.files_seen == report.files_indexed == 60
    assert report.mails_own > 30
    assert report.dropped["mails: forward or quote only"] > 0
    assert report.chunks_added > 30
    rows, fts, vectors = counts(memory_engine)
    assert rows == fts == vectors == report.chunks_added
    assert "chunks added" in report.summary()

    again = await Ingestor(memory_engine.memory, allen).run(files)
    assert again.files_unchanged == 60 and again.files_indexed == 0
    assert again.chunks_added == 0
    assert counts(memory_engine) == (rows, fts, vectors)

    style = await memory_engine.memory.style("allen")
    assert isinstance(style, StyleProfile) and style.mails == report.mails_own
    assert style.sign_off == "Phillip"
    assert "Phillip" in style.describe()


async def test_changed_file_is_reindexed_and_removed_file_pruned(memory_engine: Engine,
                                                                  tmp_path: Path) -> None:
    src = tmp_path / "mail"
    shutil.copytree(memory_engine.personas.get("allen").directory / "sources", src)
    first = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run([src])
    before = counts(memory_engine)

    changed = src / "001.eml"
    changed.write_text(changed.read_text().replace(
        "Can you find out", "The zebra fund memo is attached. Can you find out"))
    second = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run([src])
    assert (second.files_indexed, second.files_unchanged) == (1, 59)
    assert counts(memory_engine) == before  # old chunk replaced, not added
    hits = await memory_engine.memory.recall("allen", "zebra fund memo", min_score=-1)
    assert "zebra fund memo" in hits[0].text  # the full-text half finds the rare words

    (src / "001.eml").unlink()
    (src / "005.eml").unlink()
    third = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run(
        [src], prune=True)
    assert third.files_pruned == 2
    after = counts(memory_engine)
    assert after[0] == after[1] == after[2] < before[0]
    assert not any("zebra" in h.text for h in
                   await memory_engine.memory.recall("allen", "zebra fund memo", min_score=-1))
    assert first.chunks_added == before[0]


async def test_mail_from_others_is_context_not_voice(memory_engine: Engine,
                                                      tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "in.eml").write_text(
        "From: Lucy <lucy@example.com>\nTo: phillip.allen@enron.com\nSubject: Leaky roof\n"
        "Message-ID: <roof-1@example.com>\nDate: Tue, 5 Sep 2000 10:00:00 -0500\n\n"
        "Phillip, the roof of unit 12 leaks again and the tenant wants a discount.\n\nLucy\n")
    report = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run(
        [inbox])
    assert (report.mails_own, report.mails_context) == (0, 1)
    with sqlite3.connect(db_path(memory_engine)) as db:
        assert db.execute("SELECT kind, message_id, subject, thread FROM memory_chunks"
                          ).fetchall() == [("context", "<roof-1@example.com>", "Leaky roof",
                                            "leaky roof")]
    style = await memory_engine.memory.style("allen")
    assert style is not None and style.mails == 0  # others' mail never shapes the voice


async def test_unreadable_files_are_reported_and_skipped(memory_engine: Engine) -> None:
    report = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run(
        [CORPUS / "docs" / "pdf", CORPUS / "docs" / "docx"])
    failed = {Path(k).name: v for k, v in report.files_failed.items()}
    assert failed == {
        "encrypted_user_password.pdf": "encrypted PDF (a password is needed)",
        "scanned_report_image_only.pdf": "no text layer (scanned or image-only PDF)",
        "strict_ooxml.docx": failed["strict_ooxml.docx"],
    }
    assert report.documents >= 10 and report.chunks_added > 10
    assert "could not read" in report.summary()


class GatedEmbedder(Embedder):
    """The real embedder, held at a gate until the test opens it (an engine boundary)."""

    def __init__(self, real: Embedder) -> None:
        self.__dict__.update(real.__dict__)
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.gate.wait()
        return super().embed(texts)


async def test_a_bot_builds_memory_at_first_start_while_people_are_told(
        make_config: MakeConfig, personas_dir: Path, embedder: Embedder) -> None:
    """`doppel run` does not keep people waiting for a first ingest: the engine is up at
    once, memory builds in the background, and whoever talks meanwhile is told."""
    config = make_config(personas={"dir": str(personas_dir)}, memory={"auto_ingest": True})
    gated = GatedEmbedder(embedder)
    engine = Engine(config, llm=FakeLLM(["Hello there.", "Jeff, hi."]), embedder=gated)
    await engine.start(SERVER)  # returns while memory is still empty
    try:
        await eventually(lambda: "allen" in engine.building)
        reply = await engine.chat(UserRef("telegram", "5"), "hi", persona="allen")
        await reply.result()
        assert "I'm still reading my memory for the first time (" in reply.disclosure
        gated.gate.set()
        assert engine._building_task is not None
        await engine._building_task
        assert await engine.memory.size("allen") > 0 and "allen" not in engine.building
        later = await engine.chat(UserRef("telegram", "5"), "hi again", persona="allen")
        await later.result()
        assert "still reading" not in later.disclosure
    finally:
        gated.gate.set()
        await engine.stop()


async def test_progress_counts_every_byte_and_document_against_a_known_total(
        memory_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    shutil.copy(CORPUS / "enron-allen-p" / "sent_mail.mbox", folder / "sent.mbox")
    (folder / "note.txt").write_text("The storage report is due on Friday.\n")

    class Seen:
        def __init__(self) -> None:
            self.done = self.docs = 0
            self.totals: list[int] = []

        def start(self, total_bytes: int) -> None:
            self.totals.append(total_bytes)

        def advance(self, n_bytes: int, docs: int) -> None:
            self.done += n_bytes
            self.docs += docs

    seen = Seen()
    await Ingestor(memory_engine.memory, memory_engine.personas.get("allen"),
                   progress=seen).run([folder])
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert seen.totals == [size]  # known before reading, never grown
    assert seen.done == size and seen.docs == 602 + 1


async def test_the_same_file_in_two_personas_memories(memory_engine: Engine,
                                                       tmp_path: Path) -> None:
    """Issue 33: chunk ids collided across personas (the same file, or a copied persona
    folder): `UNIQUE constraint failed: memory_chunks.id` on every run."""
    folder = tmp_path / "shared-notes"
    folder.mkdir()
    (folder / "note.txt").write_text("The storage report is due on Friday morning.\n")
    for name in ("allen", "storyteller"):
        report = await Ingestor(memory_engine.memory,
                                memory_engine.personas.get(name)).run([folder])
        assert report.files_indexed == 1 and report.chunks_added == 1, name
    for name in ("allen", "storyteller"):
        hits = await memory_engine.memory.recall(name, "When is the storage report due?")
        assert hits and "Friday" in hits[0].text, name
