"""Retrieval's parts: the mail answered as a search field (never quoted as the persona's),
window vectors kept and dropped with their chunks, the persona's own name left out of the
question, scores fused on one scale. Real embedder, Chroma and SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from engine.engine import Engine
from engine.memory.catalog import drop_files, files
from engine.memory.ingest import Ingestor
from engine.memory.retrieve import fuse, name_words, standardise, without_names
from engine.memory.service import EMBED
from engine.memory.store import WINDOWS

REPLY = """From: Phillip K Allen <phillip.allen@enron.com>
To: Jane Roe <jane.roe@enron.com>
Subject: Re: plans
Message-ID: <reply-1@test>
Date: Tue, 3 Apr 2001 10:00:00 -0700

Jane,

Yes, count me in. I will bring the tent and the stove.

Phillip

 -----Original Message-----
From: Jane Roe <jane.roe@enron.com>
Sent: Monday, April 02, 2001 9:00 AM
To: Phillip K Allen
Subject: plans

Would you join the kayaking weekend on the Guadalupe river with the whole desk?
"""

LONG = """From: Phillip K Allen <phillip.allen@enron.com>
To: Bob <bob@enron.com>
Subject: notes
Message-ID: <long-1@test>
Date: Wed, 4 Apr 2001 10:00:00 -0700

Bob,

The storage report is late again. The curve desk wants it by noon. Please send the
numbers for the west region first. My daughter starts violin lessons on Saturday. The
new trader from Calgary joins on Monday. Lunch is on me on Friday.

Phillip
"""


def _mail(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_the_mail_answered_is_searched_but_never_quoted(memory_engine: Engine,
                                                              tmp_path: Path) -> None:
    allen = memory_engine.personas.get("allen")
    await Ingestor(memory_engine.memory, allen).run([_mail(tmp_path, "r.eml", REPLY)])
    with sqlite3.connect(memory_engine.config.storage.data_dir / "doppel.db") as db:
        text, context = db.execute("SELECT text, context FROM memory_chunks").fetchone()
    assert "kayaking" in context and "kayaking" not in text
    words = ["kayaking", "guadalupe"]  # only in the mail he answered
    with_context = await memory_engine.memory.recall(
        "allen", "Are you going kayaking on the Guadalupe?", min_score=-1)
    assert with_context and with_context[0].message_id == "<reply-1@test>"
    assert not any(w in with_context[0].text.lower() for w in words)
    # Only the context field holds those words: full-text search finds it through it.
    memory = memory_engine.memory

    async def lexical(context: bool) -> list[tuple[str, float]]:
        return await memory.scheduler.run_on(
            EMBED, lambda: memory._lexical("allen", words, context))

    assert [cid for cid, _ in await lexical(True)] == [with_context[0].chunk_id]
    assert await lexical(False) == []


async def test_windows_are_stored_used_and_dropped_with_their_chunk(
        memory_engine: Engine, tmp_path: Path) -> None:
    allen = memory_engine.personas.get("allen")
    await Ingestor(memory_engine.memory, allen).run([_mail(tmp_path, "l.eml", LONG)])
    store = memory_engine.memory.store
    windows = store.collection("allen", WINDOWS)
    assert windows.count() >= 2
    index = await memory_engine.memory.scheduler.run_on(
        EMBED, lambda: memory_engine.memory.index("allen"))
    assert len(index) == store.count("allen") and len(index.owner) == windows.count()
    question = np.asarray(memory_engine.memory.embedder.embed(["violin lessons"])[0])
    chunk, window, _ = index.similarity(question)
    assert window[0] > chunk[0]  # the sentence matches better than the whole mail
    hits = await memory_engine.memory.recall("allen", "violin lessons", min_score=-1)
    assert "violin" in hits[0].passage and len(hits[0].passage) < len(hits[0].text)

    known = await files(memory_engine.memory, "allen")
    await drop_files(memory_engine.memory, "allen", [f.id for f in known])
    assert windows.count() == 0 and store.count("allen") == 0


def test_the_persona_name_is_left_out_only_where_it_addresses_them() -> None:
    names = name_words(["Vince Kaminski"])
    assert names == {"vince", "kaminski"}
    assert without_names("Vince, when is the talk?", names) == "when is the talk?"
    assert without_names("Hey Vince Kaminski: when is the talk?", names) == "when is the talk?"
    assert without_names("When is the talk, Vince?", names) == "When is the talk?"
    assert without_names("Did Vince's group move?", names) == "Did Vince's group move?"
    assert without_names("Vince", names) == "Vince"  # nothing else: kept as it is
    assert without_names("Vince, hi", set()) == "Vince, hi"


def test_fusion_puts_retrievers_on_one_scale() -> None:
    keep = np.array([True, True, True, True, False])
    lexical = np.array([80.0, 100.0, 0.0, 0.0, 1000.0], dtype=np.float32)  # BM25's scale
    dense = np.array([0.5, 0.1, 0.55, 0.1, 0.9], dtype=np.float32)        # cosine's scale
    z = standardise(lexical, keep)
    assert abs(float(z[keep].mean())) < 1e-5 and abs(float(z[keep].std()) - 1) < 1e-5
    # Added raw, BM25's scale decides (chunk 1, which dense retrieval ranks last); on one
    # scale the chunk both rank high wins, and a chunk outside the filters counts for none.
    assert int(np.argmax((lexical + dense)[keep])) == 1
    fused = fuse([lexical, dense], keep)
    assert int(np.argmax(np.where(keep, fused, -np.inf))) == 0
    assert (standardise(np.ones(5, dtype=np.float32), keep) == 0).all()


DOG = """From: Phillip K Allen <phillip.allen@enron.com>
To: Jane Roe <jane.roe@enron.com>
Subject: weekend
Message-ID: <dog-1@test>
Date: Fri, 6 Apr 2001 10:00:00 -0700

Jane,

{who} dog Rex barked all night, so the camping weekend at the lake was short. Rex is a
black labrador and he loves the water. We will try the lake again in May.

Phillip
"""


def test_questions_about_the_persona_s_own_life_are_recognised() -> None:
    from engine.memory.retrieve import personal_asked

    assert personal_asked("Vince, what's your wife's name?") == ["wife"]
    assert personal_asked("How much did you pay for your first car?") == ["car"]
    assert personal_asked("What did your group decide?") == []


async def test_own_life_is_answered_only_where_the_persona_speaks_of_their_own(
        memory_engine: Engine, tmp_path: Path) -> None:
    """The same mail, once about their own dog and once about someone else's: "your
    dog" is looked up only in the first."""
    allen = memory_engine.personas.get("allen")
    memory = memory_engine.memory
    question = "What is the name of your dog that barked all night at the lake?"
    found = {}
    for who in ("My", "Jane's"):
        mail = _mail(tmp_path, f"{who[0]}.eml", DOG.format(who=who))
        await Ingestor(memory, allen).run([mail])
        found[who] = await memory.recall("allen", question)
        known = await files(memory, "allen")
        await drop_files(memory, "allen", [f.id for f in known])
    assert found["My"] and found["My"][0].message_id == "<dog-1@test>"
    assert found["Jane's"] == []
