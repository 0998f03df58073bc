"""Updates a platform delivered, kept until they are handled.

A platform that confirms delivery (Telegram's ``getUpdates`` offset) forgets an update once
it is confirmed, so the adapter records each update here *before* that, marks it started
when its handler runs and drops it when the handler is done. What is left at the next start
was lost to a stop or a crash: never-started updates are handled then, and the senders of
the started ones are told their message was not answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from engine.storage.db import Database
from engine.storage.models import ReceivedUpdate


@dataclass(frozen=True)
class Unhandled:
    update_id: str
    chat_id: str
    user_key: str
    summary: str
    payload: str
    started: bool
    """Its handler had begun (a reply may have been cut off) when the process stopped."""


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, platform: str, update_id: str, *, payload: str, chat_id: str = "",
                     user_key: str = "", summary: str = "") -> bool:
        """Store a delivered update; False if it was already stored (delivered twice)."""
        try:
            async with self.db.session() as s, s.begin():
                s.add(ReceivedUpdate(platform=platform, update_id=update_id, chat_id=chat_id,
                                     user_key=user_key, summary=summary[:300],
                                     payload=payload))
        except IntegrityError:
            return False
        return True

    async def started(self, platform: str, update_id: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(update(ReceivedUpdate).where(*_key(platform, update_id))
                            .values(status="started"))

    async def put_back(self, platform: str, update_id: str) -> None:
        """Its handler ran but nothing of it was done (the engine stopped first): it is
        handled again at the next start, as if it had never started."""
        async with self.db.session() as s, s.begin():
            await s.execute(update(ReceivedUpdate).where(*_key(platform, update_id))
                            .values(status="received"))

    async def done(self, platform: str, update_id: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(delete(ReceivedUpdate).where(*_key(platform, update_id)))

    async def unhandled(self, platform: str) -> list[Unhandled]:
        """What the last run received and did not finish, oldest first."""
        async with self.db.session() as s:
            rows = (await s.scalars(select(ReceivedUpdate)
                                    .where(ReceivedUpdate.platform == platform)
                                    .order_by(ReceivedUpdate.id))).all()
        return [Unhandled(r.update_id, r.chat_id, r.user_key, r.summary, r.payload,
                          r.status == "started") for r in rows]

    async def forget_user(self, user_key: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(delete(ReceivedUpdate).where(ReceivedUpdate.user_key == user_key))


def _key(platform: str, update_id: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return ReceivedUpdate.platform == platform, ReceivedUpdate.update_id == update_id
