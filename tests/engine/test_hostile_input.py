"""NUL bytes and other control characters never reach the database: from messages, names,
story fields, genres, saved prompts or ingested documents."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.engine import Engine, UserRef
from engine.memory.clean import normalise, strip_mail
from engine.stories.options import StoryRequest
from tests.auxil.fake_llm import FakeLLM


async def test_control_characters_are_dropped_before_anything_is_stored(
        engine: Engine, fake_llm: FakeLLM) -> None:
    user = UserRef("telegram", "9", "Ann\x00\x07 Lee")
    fake_llm.replies.extend(["Hi Ann.", "Tiny Turtle\nTim swam. The end."])
    await (await engine.chat(user, "hello\x00 there\x1b[31m")).result()
    await (await engine.stories.create(user, StoryRequest(
        characters="Tim\x00 the turtle", prompt="a swim\x00 race"))).result()
    await engine.stories.add_genre(user, "space\x00 pirates", "ships\x00 and stars")
    await engine.stories.save_prompt(user, "bed\x00time", StoryRequest(prompt="stars\x00"))
    db = engine.config.storage.data_dir / "doppel.db"
    with sqlite3.connect(db) as conn:
        stored = [str(v) for table in ("users", "messages", "stories", "custom_genres",
                                       "saved_prompts")
                  for row in conn.execute(f"SELECT * FROM {table}") for v in row]
    assert not [v for v in stored if any(c in v for c in "\x00\x07\x1b")]
    assert "Ann Lee" in stored and "hello there[31m" in stored
    assert "Tim the turtle" in stored and "space pirates" in stored and "bedtime" in stored


def test_ingested_text_loses_its_control_characters(tmp_path: Path) -> None:
    assert normalise("storage\x00 report\x0c due\r\nFriday") == "storage report due\nFriday"
    kept, _ = strip_mail("Jeff,\x00 the report\x1a is late.\n")
    assert kept == "Jeff, the report is late."
