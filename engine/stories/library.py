"""A person's own story things: custom genres, saved prompts, the history (grouped by
date, searchable, cleared on confirmation) and favourites. ``Stories`` writes the stories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.conversations import ConversationStore
from engine.errors import InputError, shown
from engine.records import UserRef
from engine.reply_text import visible
from engine.storage.db import Database
from engine.storage.models import CustomGenre, Favourite, SavedPrompt, Story
from engine.stories import safety
from engine.stories.dates import group_by_date, zone
from engine.stories.options import GENRES, StoryRequest, normalise


@dataclass(frozen=True)
class StoryRecord:
    id: int
    title: str
    content: str
    genre: str
    characters: str
    prompt: str
    age_group: str
    language: str
    length: str
    status: str
    sampling: str
    created_at: datetime
    favourite: bool = False

    @classmethod
    def of(cls, row: Story, favourite: bool = False) -> StoryRecord:
        return cls(row.id, row.title, row.content, row.genre, row.characters, row.prompt,
                   row.age_group, row.language, row.length, row.status, row.sampling,
                   row.created_at if row.created_at.tzinfo else
                   row.created_at.replace(tzinfo=UTC), favourite)


class StoryLibrary:
    def __init__(self, db: Database, users: ConversationStore,
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self.users = users
        self.clock = clock

    # -- custom genres ----------------------------------------------------------------------

    async def genre_names(self, user: UserRef) -> list[str]:
        return [g.name for g in await self.genres(user)]

    async def genres(self, user: UserRef) -> list[CustomGenre]:
        uid = await self.users.user_id(user)
        async with self.db.session() as s:
            return list((await s.scalars(select(CustomGenre).where(CustomGenre.user_id == uid)
                                         .order_by(CustomGenre.name))).all())

    async def add_genre(self, user: UserRef, name: str, description: str = "") -> None:
        name, description = " ".join(visible(name).lower().split()), visible(description)
        if not 2 <= len(name) <= 40:
            raise InputError("bad genre name", user_message="A genre name needs 2 to 40 "
                                                            "characters.")
        safety.check_request(name, description)
        if name in GENRES or name in await self.genre_names(user):
            raise InputError("genre exists", user_message=f"You already have '{name}'.")
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            s.add(CustomGenre(user_id=uid, name=name, description=description.strip()[:500]))

    async def remove_genre(self, user: UserRef, name: str) -> bool:
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            result = await s.execute(delete(CustomGenre).where(
                CustomGenre.user_id == uid, CustomGenre.name == " ".join(name.lower().split())))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- saved prompts ----------------------------------------------------------------------

    async def save_prompt(self, user: UserRef, name: str, request: StoryRequest) -> None:
        name = " ".join(visible(name).split())
        if not 1 <= len(name) <= 60:
            raise InputError("bad prompt name", user_message="A saved prompt needs a name "
                                                             "of 1 to 60 characters.")
        req = normalise(request, await self.genre_names(user))
        safety.check_request(req.characters, req.prompt)
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(SavedPrompt).where(SavedPrompt.user_id == uid,
                                                          SavedPrompt.name == name))
            if row is None:
                row = SavedPrompt(user_id=uid, name=name)
                s.add(row)
            for attr in ("genre", "characters", "prompt", "age_group", "language", "length"):
                setattr(row, attr, getattr(req, attr))

    async def saved_prompts(self, user: UserRef) -> list[tuple[str, StoryRequest]]:
        uid = await self.users.user_id(user)
        async with self.db.session() as s:
            rows = (await s.scalars(select(SavedPrompt).where(SavedPrompt.user_id == uid)
                                    .order_by(SavedPrompt.name))).all()
        return [(r.name, StoryRequest(genre=r.genre, characters=r.characters, prompt=r.prompt,
                                      age_group=r.age_group, language=r.language,
                                      length=r.length)) for r in rows]

    async def saved_prompt(self, user: UserRef, name: str) -> StoryRequest:
        for saved, req in await self.saved_prompts(user):
            if saved.lower() == name.strip().lower():
                return req
        raise InputError("no such prompt",
                         user_message=f"You have no saved prompt '{shown(name)}'.")

    async def delete_prompt(self, user: UserRef, name: str) -> bool:
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            result = await s.execute(delete(SavedPrompt).where(SavedPrompt.user_id == uid,
                                                               SavedPrompt.name == name.strip()))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- history and favourites -------------------------------------------------------------

    async def timezone(self, user: UserRef) -> str:
        return await self.users.setting(user, "timezone") or "UTC"

    async def set_timezone(self, user: UserRef, name: str) -> str:
        zone(name)  # validates
        await self.users.set_setting(user, "timezone", name)
        return name

    async def history(self, user: UserRef, *, search: str = "", limit: int = 100
                      ) -> list[tuple[str, list[StoryRecord]]]:
        """The user's stories grouped by date (Today, Yesterday, ..., months, years) in their
        timezone, newest first; ``search`` matches title, prompt, characters or text."""
        uid = await self.users.user_id(user)
        tz = zone(await self.timezone(user))
        query = select(Story).where(Story.user_id == uid, Story.in_history.is_(True),
                                    Story.status != "pending")
        if search.strip():
            like = f"%{search.strip()}%"
            query = query.where(or_(Story.title.ilike(like), Story.prompt.ilike(like),
                                    Story.characters.ilike(like), Story.content.ilike(like)))
        async with self.db.session() as s:
            rows = (await s.scalars(query.order_by(Story.created_at.desc(), Story.id.desc())
                                    .limit(max(1, min(limit, 500))))).all()
            favs = await self._favourite_ids(s, uid)
        records = [StoryRecord.of(r, r.id in favs) for r in rows]
        return group_by_date(records, self.clock(), tz)

    async def open(self, user: UserRef, story_id: int) -> StoryRecord:
        uid = await self.users.user_id(user)
        async with self.db.session() as s:
            row = await s.get(Story, story_id)
            if row is None or row.user_id != uid:  # never another user's story
                raise InputError("no such story", user_message=f"You have no story #{story_id}.")
            return StoryRecord.of(row, story_id in await self._favourite_ids(s, uid))

    async def delete(self, user: UserRef, story_id: int) -> None:
        await self.open(user, story_id)
        async with self.db.session() as s, s.begin():
            await s.execute(delete(Story).where(Story.id == story_id))

    async def clear_history(self, user: UserRef, *, confirm: bool = False) -> int:
        """How many stories would go (``confirm=False``) or went. Favourites are kept for the
        favourites list; everything else is deleted."""
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            favs = await self._favourite_ids(s, uid)
            visible = Story.user_id == uid, Story.in_history.is_(True)
            n = int(await s.scalar(select(func.count()).select_from(Story).where(*visible))
                    or 0)
            if confirm:
                await s.execute(delete(Story).where(*visible, Story.id.not_in(favs)))
                kept = (await s.scalars(select(Story).where(*visible))).all()
                for row in kept:
                    row.in_history = False
        return n

    async def favourite(self, user: UserRef, story_id: int, on: bool = True) -> StoryRecord:
        record = await self.open(user, story_id)
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            existing = await s.scalar(select(Favourite).where(Favourite.user_id == uid,
                                                              Favourite.story_id == story_id))
            if on and existing is None:
                s.add(Favourite(user_id=uid, story_id=story_id))
            elif not on and existing is not None:
                await s.delete(existing)
        return StoryRecord(**{**record.__dict__, "favourite": on})

    async def favourites(self, user: UserRef) -> list[StoryRecord]:
        uid = await self.users.user_id(user)
        async with self.db.session() as s:
            rows = (await s.scalars(select(Story).join(Favourite, Favourite.story_id == Story.id)
                                    .where(Favourite.user_id == uid)
                                    .order_by(Favourite.created_at.desc()))).all()
        return [StoryRecord.of(r, True) for r in rows]

    async def _favourite_ids(self, s: AsyncSession, uid: int) -> set[int]:
        ids = await s.scalars(select(Favourite.story_id).where(
            Favourite.user_id == uid, Favourite.story_id.is_not(None)))
        return {i for i in ids if i is not None}
