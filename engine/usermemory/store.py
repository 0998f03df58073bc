"""User memories in the database: learned from each message, recalled into later prompts
(only the user's own, for the persona they told), listed, and forgotten on request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from engine.conversations import ConversationStore
from engine.errors import InputError
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import UserMemory, utcnow
from engine.usermemory.extract import STOP_WORDS, extract
from engine.usermemory.person import second, third

RECALL = 12
"""Memories given with one message at most (the user's name always among them)."""
_WORD = re.compile(r"[a-z0-9']+")
_NOT_CONTENT = STOP_WORDS | {"i", "me", "mine", "i'm", "i've", "what", "who", "where", "when",
                             "how", "why", "which", "you", "remember", "know", "tell",
                             "that", "forget", "about", "please"}


def content_words(text: str) -> set[str]:
    words = {w.strip("'") for w in _WORD.findall(text.lower())}
    return {w.removesuffix("'s") for w in words if w and w not in _NOT_CONTENT}


@dataclass(frozen=True)
class Remembered:
    id: int
    slot: str
    clause: str
    told_at: datetime

    @property
    def about(self) -> str:
        """For the model: "Their daughter Mia is five."""
        return third(self.clause)

    @property
    def to_them(self) -> str:
        """For the user: "Your daughter Mia is five."""
        return second(self.clause)

    @classmethod
    def of(cls, row: UserMemory) -> Remembered:
        told = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        return cls(row.id, row.slot, row.clause, told)


@dataclass(frozen=True)
class Learned:
    learned: list[Remembered]
    forgotten: list[Remembered]


class UserMemories:
    def __init__(self, db: Database, users: ConversationStore) -> None:
        self.db = db
        self.users = users

    async def learn(self, user: UserRef, persona: str, text: str,
                    message_id: int | None = None) -> Learned:
        """Keep what ``text`` says about its writer (a newer fact in a slot replaces the
        older) and drop what it asks to be forgotten."""
        found = extract(text)
        if not found.facts and not found.forget:
            return Learned([], [])
        forgotten = [m for query in found.forget
                     for m in await self.forget_matching(user, persona, query)]
        uid = await self.users.user_id(user)
        rows: list[UserMemory] = []
        async with self.db.session() as s, s.begin():
            for fact in found.facts:
                row = await s.scalar(select(UserMemory).where(
                    UserMemory.user_id == uid, UserMemory.persona == persona,
                    UserMemory.slot == fact.slot))
                if row is None:
                    row = UserMemory(user_id=uid, persona=persona, slot=fact.slot)
                    s.add(row)
                row.clause, row.message_id, row.updated_at = fact.clause, message_id, utcnow()
                rows.append(row)
        return Learned([Remembered.of(r) for r in rows], forgotten)

    async def all(self, user: UserRef, persona: str) -> list[Remembered]:
        """Oldest first (the numbers ``/memories`` shows)."""
        uid = await self.users.find_user_id(user)
        if uid is None:
            return []
        async with self.db.session() as s:
            rows = (await s.scalars(select(UserMemory).where(
                UserMemory.user_id == uid, UserMemory.persona == persona)
                .order_by(UserMemory.updated_at, UserMemory.id))).all()
        return [Remembered.of(r) for r in rows]

    async def recall(self, user: UserRef, persona: str, text: str,
                     limit: int = RECALL) -> list[Remembered]:
        """The memories to give with ``text``: all of them while there are few; else the
        name, those sharing words with the message, then the newest."""
        found = await self.all(user, persona)
        if len(found) <= limit:
            return found
        asked = content_words(text)

        def rank(m: Remembered) -> tuple[bool, int, datetime]:
            return (m.slot == "name", len(asked & content_words(m.clause + " " + m.slot)),
                    m.told_at)

        keep = {m.id for m in sorted(found, key=rank, reverse=True)[:limit]}
        return [m for m in found if m.id in keep]

    async def forget_item(self, user: UserRef, persona: str, number: int) -> Remembered:
        found = await self.all(user, persona)
        if not 1 <= number <= len(found):
            raise InputError(f"no memory {number}", user_message=(
                f"There is no memory #{number}; /memories lists them." if found else
                "I don't remember anything you told me about yourself."))
        gone = found[number - 1]
        async with self.db.session() as s, s.begin():
            await s.execute(delete(UserMemory).where(UserMemory.id == gone.id))
        return gone

    async def forget_matching(self, user: UserRef, persona: str,
                              query: str) -> list[Remembered]:
        """Drop the memories ``query`` is about ("I live in Leeds", "my daughter")."""
        slots = {f.slot for f in extract(query).facts}
        words = content_words(query)
        gone = [m for m in await self.all(user, persona)
                if m.slot in slots or words & content_words(m.clause)]
        if gone:
            async with self.db.session() as s, s.begin():
                await s.execute(delete(UserMemory).where(
                    UserMemory.id.in_([m.id for m in gone])))
        return gone
