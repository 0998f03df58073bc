"""The dashboard and achievements, computed from what is stored (real SQLite), in the
person's own days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, update

from engine.achievements import dashboard_text, streaks
from engine.engine import Engine, UserRef
from engine.storage.models import Story
from engine.stories.options import StoryRequest
from tests.auxil.fake_llm import FakeLLM

ANN = UserRef("telegram", "81", "Ann")
BOB = UserRef("telegram", "82", "Bob")
TALE = ("The Lost Kite\nRosa found a kite in the attic and flew it over the hill.\n\n"
        "The wind carried it home again before supper.")


def test_streaks_count_days_in_a_row() -> None:
    d = date(2026, 11, 27)
    days = [d - timedelta(days=n) for n in (0, 1, 2)] + [d - timedelta(days=n)
                                                         for n in range(10, 17)]
    assert streaks(days, d) == (3, 7, d - timedelta(days=10))
    assert streaks(days, d + timedelta(days=1))[0] == 3  # yesterday still counts
    assert streaks(days, d + timedelta(days=2))[0] == 0
    assert streaks([], d) == (0, 0, None)


async def write(engine: Engine, user: UserRef, genre: str) -> int:
    reply = await engine.stories.create(user, StoryRequest(genre=genre, prompt="a kite"))
    return (await reply.result()).id


async def test_stories_favourites_and_a_week_in_a_row_earn_achievements(
        engine: Engine, fake_llm: FakeLLM) -> None:
    board = await engine.achievements.dashboard(ANN)
    assert board.stories == 0 and board.earned == []
    now = datetime.now(UTC)
    for n, genre in enumerate(("animals", "animals", "bedtime", "funny", "mystery",
                               "fantasy", "animals")):
        fake_llm.replies.append(TALE)
        story_id = await write(engine, ANN, genre)
        async with engine.db.session() as s, s.begin():  # one story a day, a week ago on
            await s.execute(update(Story).where(Story.id == story_id).values(
                created_at=now - timedelta(days=6 - n)))
    await engine.stories.favourite(ANN, story_id)
    await engine.achievements.listened(ANN, 420.0)
    await engine.achievements.listened(ANN, 200.0)
    board = await engine.achievements.dashboard(ANN)
    assert board.stories == 7 and board.favourites == 1
    assert board.favourite_genres[0] == ("animals", 3)
    assert (board.streak_days, board.best_streak_days) == (7, 7)
    assert board.listened_s == 620.0
    earned = {a.key for a in board.earned}
    assert earned == {"first_story", "first_favourite", "five_genres", "streak_7",
                      "listener"}
    text = dashboard_text(board)
    assert "✅ 7-day streak" in text and "⬜ Storyteller: write ten stories" in text
    # Nobody else's: Bob has none of it.
    assert (await engine.achievements.dashboard(BOB)).earned == []
    async with engine.db.session() as s:
        assert len((await s.scalars(select(Story))).all()) == 7


async def test_voice_notes_made_for_someone_add_to_their_listening(
        engine: Engine, fake_llm: FakeLLM) -> None:
    note = await engine.speak("The rent roll arrived on Friday.", user=ANN,
                              persona=engine.personas.default)
    board = await engine.achievements.dashboard(ANN)
    assert abs(board.listened_s - note.duration_s) < 0.01 and note.duration_s > 0.5
    assert (await engine.achievements.dashboard(BOB)).listened_s == 0
