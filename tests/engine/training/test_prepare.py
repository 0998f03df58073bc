"""`doppel train prepare` on the shared public-domain story corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.cli import main
from engine.engine import Engine, UserRef
from engine.errors import InputError
from engine.stories.options import StoryRequest
from engine.training.prepare import (
    characters_of,
    genre_of,
    llm_labeler,
    parse_labels,
    prepare,
    prompt_of,
    read_sources,
    split_of,
    write_dataset,
)
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import write_config
from tests.conftest import CORPUS

STORIES = CORPUS / "stories"


def test_the_corpus_becomes_a_deterministic_81_9_10_dataset(tmp_path: Path) -> None:
    examples, report = prepare(read_sources([STORIES]))
    assert report.read == 1840  # the licence texts beside the corpus are not stories
    assert report.kept == 1839 and report.dropped == {"near duplicate": 1}
    shares = {k: v / report.kept for k, v in report.splits.items()}
    assert abs(shares["train"] - 0.81) < 0.02 and abs(shares["validation"] - 0.09) < 0.02
    assert abs(shares["test"] - 0.10) < 0.02
    write_dataset(examples, report, tmp_path / "a")
    again, again_report = prepare(read_sources([STORIES]))
    write_dataset(again, again_report, tmp_path / "b")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "dataset_card.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])
    assert first["text"].startswith(f"[GENRE] {first['genre']} [CHARACTERS] ")
    assert " [PROMPT] " in first["text"] and " [STORY] " in first["text"]
    card = (tmp_path / "a" / "dataset_card.md").read_text()
    assert "1839 stories kept of 1840 read (near duplicate: 1)" in card
    assert "| hi | 1 |" in card


def test_adding_stories_never_moves_one_between_splits(tmp_path: Path) -> None:
    examples, _ = prepare(read_sources([STORIES / "aesop.jsonl"]))
    more, _ = prepare(read_sources([STORIES / "aesop.jsonl", STORIES / "grimm.jsonl"]))
    where = {e.id: e.split for e in more}
    assert all(where[e.id] == e.split for e in examples)


def test_duplicates_and_lengths_are_dropped_and_small_sets_refused(tmp_path: Path) -> None:
    story = " ".join(["The little fox ran through the snowy wood to find his friend."] * 12)
    rows = [{"id": "a", "text": story}, {"id": "b", "text": story + " The end."},
            {"id": "c", "text": "Too short."}]
    with pytest.raises(InputError) as err:
        prepare(rows)
    assert "at least 10 are needed" in err.value.user_message


def test_rules_for_genre_characters_and_split() -> None:
    text = ("Once a dragon met Mia in the enchanted castle. Mia smiled at the dragon, "
            "and Pip the wizard cast a spell. Pip laughed.")
    assert genre_of(text) == "fantasy"
    assert characters_of(text) == "Mia, Pip"
    assert genre_of("A plain day at home.") == "fairy tale"
    assert split_of("same text") == split_of("same text")


def test_cli_with_the_users_favourite_stories(tmp_path: Path) -> None:
    import asyncio

    cfg = write_config(tmp_path)
    story = ("Luna the owl lived in a hollow oak at the edge of a quiet forest. Every night "
             "she flew over the pines to visit her friend Pip, a hedgehog who could not "
             "fly. One evening the wind was strong and Luna was afraid to leave her tree. "
             "Pip waited by the stream, watching the sky, until he grew worried. He walked "
             "all the way to the old oak, step by tiny step, and called her name. Luna "
             "peeked out and saw him shivering in the grass. She swooped down, wrapped him "
             "in her soft wings, and together they watched the clouds race past the moon. "
             "From then on, on windy nights, Pip came to visit Luna instead, and neither of "
             "them was ever lonely again.")  # a story (one line said 12 times is a loop)

    async def favourite() -> None:
        from engine.config import load_config

        engine = Engine(load_config(cfg), llm=FakeLLM([f"Luna's Flight\n{story}"]))
        await engine.start()
        user = UserRef("telegram", "1")
        record = await (await engine.stories.create(user, StoryRequest(
            genre="bedtime", characters="Luna"))).result()
        await engine.stories.favourite(user, record.id)
        await engine.stop()

    asyncio.run(favourite())
    corpus = tmp_path / "corpus"
    shutil.copytree(STORIES, corpus)
    out = tmp_path / "dataset"
    assert main(["--config", str(cfg), "train", "prepare", str(corpus), "--favourites",
                 "-o", str(out)]) == 0
    rows = [json.loads(line) for name in ("train", "validation", "test")
            for line in (out / f"{name}.jsonl").read_text().splitlines()]
    [fav] = [r for r in rows if r["source"] == "favourites"]
    assert (fav["genre"], fav["characters"]) == ("bedtime", "Luna")
    assert main(["--config", str(cfg), "train", "prepare", "-o", str(out)]) == 2


def test_missing_fields_come_from_the_llm_where_its_answer_fits() -> None:
    rows = [json.loads(line) for line in
            (STORIES / "tinystories.jsonl").read_text().splitlines()[:12]]
    rows[3]["genre"] = "bedtime"  # a field the source has is kept as it is
    good = "Genre: animals\nCharacters: Mia, Pip\nPrompt: A fox helps a lost duck find home."
    junk = "What a lovely story about friendship!"
    half = "Genre: horror\nCharacters: Tom\nPrompt: Tom finds a lamp."
    fake = FakeLLM([good, junk, half] + [good] * 9)  # the LLM boundary, scripted
    examples, report = prepare(({"id": f"s{i}", "text": r["text"]} | (
        {"genre": r["genre"]} if "genre" in r else {}) for i, r in enumerate(rows)),
        min_words=40, labeler=llm_labeler(fake))
    by_id = {e.id: e for e in examples}
    assert (by_id["s0"].genre, by_id["s0"].characters, by_id["s0"].prompt) == (
        "animals", "Mia, Pip", "A fox helps a lost duck find home")
    s1 = by_id["s1"]  # an answer that is no answer: the rules decide every field
    assert (s1.genre, s1.characters, s1.prompt) == (
        genre_of(s1.story), characters_of(s1.story), prompt_of(s1.story))
    s2 = by_id["s2"]  # "horror" is no /story genre: rules; the rest is used
    assert (s2.genre, s2.characters, s2.prompt) == (genre_of(s2.story), "Tom",
                                                    "Tom finds a lamp")
    assert by_id["s3"].genre == "bedtime" and by_id["s3"].characters == "Mia, Pip"
    assert report.fields_from == {"llm": 3 + 2 + 2 + 8 * 3, "rules": 3 + 1}
    assert len(fake.prompts) == 12 and rows[0]["text"][:200] in fake.prompts[0][1].content
    assert parse_labels("**Genre:** Fairy Tale\nCharacters: A, B, C, D") == {
        "genre": "fairy tale"}
