"""A person's dashboard: stories written, favourite genres, time spent listening, the days
in a row they came, and achievements, all computed from what is stored (nothing to keep
in step). Days are the person's own (their ``/timezone``); "listening" is the length of
the voice notes Doppel made for them (replies, 🔊, narrations)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from engine.conversations import ConversationStore
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import ClonedVoice, Conversation, Favourite, Message, Story
from engine.stories.dates import zone

LISTENED = "listened_s"
"""The user setting that adds up the seconds of voice notes made for them."""


@dataclass(frozen=True)
class Achievement:
    key: str
    title: str
    description: str
    earned: date | None
    """The day it was earned (their day), or None while it is not."""


@dataclass(frozen=True)
class Dashboard:
    stories: int
    favourite_genres: list[tuple[str, int]]
    listened_s: float
    messages: int
    favourites: int
    streak_days: int
    """Days in a row up to today (or yesterday, while today is young) they came."""
    best_streak_days: int
    achievements: list[Achievement]

    @property
    def earned(self) -> list[Achievement]:
        return [a for a in self.achievements if a.earned is not None]


def streaks(days: Iterable[date], today: date) -> tuple[int, int, date | None]:
    """The current run of consecutive days (ending today or yesterday), the longest run,
    and the day the first run of seven ended (None if none)."""
    ordered = sorted(set(days))
    best = run = 0
    seventh: date | None = None
    previous: date | None = None
    for day in ordered:
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        best = max(best, run)
        if run == 7 and seventh is None:
            seventh = day
        previous = day
    current = run if previous is not None and today - previous <= timedelta(days=1) else 0
    return current, best, seventh


class Achievements:
    def __init__(self, db: Database, users: ConversationStore,
                 timezone: Callable[[UserRef], Awaitable[str]],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.users = users
        self.timezone = timezone
        self.clock = clock

    async def listened(self, user: UserRef, seconds: float) -> None:
        """Add the length of a voice note made for ``user``."""
        if seconds <= 0:
            return
        before = float(await self.users.setting(user, LISTENED) or 0)
        await self.users.set_setting(user, LISTENED, f"{before + seconds:.2f}")

    async def dashboard(self, user: UserRef) -> Dashboard:
        uid = await self.users.find_user_id(user)
        tz = zone(await self.timezone(user))
        today = self.clock().astimezone(tz).date()
        if uid is None:
            return Dashboard(0, [], 0.0, 0, 0, 0, 0, _achievements({}))

        def day(t: datetime) -> date:
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(tz).date()

        async with self.db.session() as s:
            stories = (await s.execute(select(Story.genre, Story.created_at).where(
                Story.user_id == uid, Story.status == "complete")
                .order_by(Story.created_at))).all()
            said = (await s.scalars(select(Message.created_at).join(Conversation).where(
                Conversation.user_id == uid, Message.role == "user")
                .order_by(Message.created_at))).all()
            favourites = (await s.scalars(select(Favourite.created_at).where(
                Favourite.user_id == uid).order_by(Favourite.created_at))).all()
            voice = await s.scalar(select(func.min(ClonedVoice.consent_at)).where(
                ClonedVoice.created_by == uid))
        listened = float(await self.users.setting(user, LISTENED) or 0)
        genres = Counter(g for g, _ in stories)
        active = [day(t) for _, t in stories] + [day(t) for t in said]
        current, best, seventh = streaks(active, today)
        first_genres: dict[str, date] = {}
        for g, t in stories:
            first_genres.setdefault(g, day(t))
        earned: dict[str, date | None] = {
            "first_chat": day(said[0]) if said else None,
            "first_story": day(stories[0][1]) if stories else None,
            "ten_stories": day(stories[9][1]) if len(stories) >= 10 else None,
            "five_genres": sorted(first_genres.values())[4] if len(first_genres) >= 5 else None,
            "first_favourite": day(favourites[0]) if favourites else None,
            "streak_7": seventh,
            "first_voice": day(voice) if voice is not None else None,
            "listener": today if listened >= 600 else None,
        }
        return Dashboard(len(stories), genres.most_common(3), listened, len(said),
                         len(favourites), current, best, _achievements(earned))


CATALOGUE = (
    ("first_chat", "Hello!", "Send your first message"),
    ("first_story", "First story", "Write your first story"),
    ("first_favourite", "Keeper", "Keep a story among your favourites"),
    ("ten_stories", "Storyteller", "Write ten stories"),
    ("five_genres", "Genre explorer", "Write stories in five genres"),
    ("streak_7", "7-day streak", "Come back seven days in a row"),
    ("first_voice", "A voice of your own", "Clone your first voice (with consent)"),
    ("listener", "Good listener", "Listen to ten minutes of stories and replies"),
)


def _achievements(earned: dict[str, date | None]) -> list[Achievement]:
    return [Achievement(key, title, text, earned.get(key)) for key, title, text in CATALOGUE]


def dashboard_text(d: Dashboard) -> str:
    """The dashboard as the bots show it (``/achievements``)."""
    genres = ", ".join(f"{g} ({n})" for g, n in d.favourite_genres) or "none yet"
    minutes = d.listened_s / 60
    lines = [f"Stories written: {d.stories} · favourite genres: {genres}",
             f"Listening: {minutes:.0f} min · favourites: {d.favourites} · "
             f"messages: {d.messages}",
             f"Streak: {d.streak_days} day{'s' if d.streak_days != 1 else ''} in a row "
             f"(best {d.best_streak_days})", "", "Achievements:"]
    for a in d.achievements:
        lines.append(f"✅ {a.title} ({a.earned:%Y-%m-%d})" if a.earned else
                     f"⬜ {a.title}: {a.description.lower()}")
    return "\n".join(lines)
