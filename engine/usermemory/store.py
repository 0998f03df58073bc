"""User memories in the database: learned from each message, recalled into later prompts
(only the user's own, for the persona they told), listed, and forgotten on request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import delete, select

from engine.conversations import ConversationStore
from engine.errors import InputError
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import User, UserMemory, utcnow
from engine.usermemory.extract import STOP_WORDS, Extraction, Fact, extract
from engine.usermemory.person import second, third

T = TypeVar("T")
RECALL = 12
"""Memories given with one message at most (the user's name always among them)."""
KEPT = 100
"""Memories kept per user and persona at most: past it, those told longest ago go."""
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
    scope: str = ""
    """Where it was told: "" in private, else the server."""

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
        return cls(row.id, row.slot, row.clause, told, row.scope)


@dataclass(frozen=True)
class Learned:
    learned: list[Remembered]
    forgotten: list[Remembered]
    found: Extraction
    """What the rules read in the message."""


@dataclass(frozen=True)
class ServerMemory:
    """One memory in a server's list, for its admins: whose it is."""

    memory: Remembered
    user: str
    """The person's display name (or platform id)."""


class UserMemories:
    """Facts per (user, persona, place). ``place`` is where the user is now: "" in
    private, where all their memories are theirs to see and are recalled; a server's key in
    a server, where only what they told in that server is (private facts never surface in a
    shared channel), and where that server's admins see everyone's (``in_server``)."""

    def __init__(self, db: Database, users: ConversationStore) -> None:
        self.db = db
        self.users = users

    async def learn(self, user: UserRef, persona: str, text: str,
                    message_id: int | None = None, place: str = "", *,
                    keep: bool = True) -> Learned:
        """Keep what ``text`` says about its writer (a newer fact in a slot replaces the
        older) and drop what it asks to be forgotten. ``keep=False``: only forget now; the
        facts found (``found.facts``) are for the caller to ``keep`` once the message was
        answered (nothing is learned from a message that failed or was refused)."""
        found = extract(text)
        if not found.facts and not found.forget:
            return Learned([], [], found)
        forgotten = [m for query in found.forget
                     for m in await self.forget_matching(user, persona, query, place)]
        learned = (await self.keep(user, persona, found.facts, message_id, place) if keep
                   else [])
        return Learned(learned, forgotten, found)

    async def keep(self, user: UserRef, persona: str, facts: list[Fact],
                   message_id: int | None = None, place: str = "") -> list[Remembered]:
        if not facts:
            return []
        uid = await self.users.user_id(user)
        rows: list[UserMemory] = []
        async with self.db.session() as s, s.begin():
            for fact in facts:
                row = await s.scalar(select(UserMemory).where(
                    UserMemory.user_id == uid, UserMemory.persona == persona,
                    UserMemory.scope == place, UserMemory.slot == fact.slot))
                if row is None:
                    row = UserMemory(user_id=uid, persona=persona, scope=place, slot=fact.slot)
                    s.add(row)
                row.clause, row.message_id, row.updated_at = fact.clause, message_id, utcnow()
                rows.append(row)
            await s.flush()
            kept = (await s.scalars(select(UserMemory.id).where(
                UserMemory.user_id == uid, UserMemory.persona == persona)
                .order_by(UserMemory.updated_at.desc(), UserMemory.id.desc()))).all()
            if len(kept) > KEPT:  # the oldest go (a name told again is new again)
                await s.execute(delete(UserMemory).where(UserMemory.id.in_(kept[KEPT:])))
        return [Remembered.of(r) for r in rows]

    async def all(self, user: UserRef, persona: str, place: str = "") -> list[Remembered]:
        """What the user may see where they are, oldest first (the numbers ``/memories``
        shows)."""
        uid = await self.users.find_user_id(user)
        if uid is None:
            return []
        query = select(UserMemory).where(UserMemory.user_id == uid,
                                         UserMemory.persona == persona)
        if place:
            query = query.where(UserMemory.scope == place)
        async with self.db.session() as s:
            rows = (await s.scalars(query.order_by(UserMemory.updated_at,
                                                   UserMemory.id))).all()
        return [Remembered.of(r) for r in rows]

    async def recall(self, user: UserRef, persona: str, text: str, place: str = "",
                     limit: int = RECALL) -> list[Remembered]:
        """The memories to give with ``text``: all of them while there are few; else the
        name, those sharing words with the message, then the newest."""
        found = await self.all(user, persona, place)
        if len(found) <= limit:
            return found
        asked = content_words(text)

        def rank(m: Remembered) -> tuple[bool, int, datetime]:
            return (m.slot == "name", len(asked & content_words(m.clause + " " + m.slot)),
                    m.told_at)

        keep = {m.id for m in sorted(found, key=rank, reverse=True)[:limit]}
        return [m for m in found if m.id in keep]

    async def forget_item(self, user: UserRef, persona: str, number: int,
                          place: str = "") -> Remembered:
        found = await self.all(user, persona, place)
        gone = _numbered(found, number, "I don't remember anything you told me about "
                                        "yourself.")
        await self._delete([gone.id])
        return gone

    async def forget_matching(self, user: UserRef, persona: str, query: str,
                              place: str = "") -> list[Remembered]:
        """Drop the memories ``query`` is about ("I live in Leeds", "my daughter")."""
        slots = {f.slot for f in extract(query).facts}
        words = content_words(query)
        gone = [m for m in await self.all(user, persona, place)
                if m.slot in slots or words & content_words(m.clause)]
        await self._delete([m.id for m in gone])
        return gone

    async def in_server(self, persona: str, place: str) -> list[ServerMemory]:
        """Everything people told ``persona`` in the server ``place``, oldest first: for
        that server's admins."""
        if not place:
            raise ValueError("a server's memories need the server")
        async with self.db.session() as s:
            rows = (await s.execute(
                select(UserMemory, User).join(User, User.id == UserMemory.user_id)
                .where(UserMemory.persona == persona, UserMemory.scope == place)
                .order_by(UserMemory.updated_at, UserMemory.id))).all()
        return [ServerMemory(Remembered.of(m), u.display_name or f"{u.platform}:"
                             f"{u.platform_user_id}") for m, u in rows]

    async def forget_in_server(self, persona: str, place: str, number: int) -> ServerMemory:
        found = await self.in_server(persona, place)
        gone = _numbered(found, number, "Nobody has told me anything about themselves in "
                                        "this server.")
        await self._delete([gone.memory.id])
        return gone

    async def _delete(self, ids: list[int]) -> None:
        if ids:
            async with self.db.session() as s, s.begin():
                await s.execute(delete(UserMemory).where(UserMemory.id.in_(ids)))


def _numbered(found: list[T], number: int, empty: str) -> T:
    if not 1 <= number <= len(found):
        raise InputError(f"no memory {number}", user_message=(
            f"There is no memory #{number}; /memories lists them." if found else empty))
    return found[number - 1]
