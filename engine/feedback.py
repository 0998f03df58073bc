"""👍 / 👎 on replies and stories: kept with what was asked and what was written, counted
per persona and model for admins, and paired (the same request, one output liked and one
not) for preference training (``doppel train prepare --feedback``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from engine.conversations import ConversationStore
from engine.errors import InputError
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import Conversation, Message, PersonaRecord, Rating, Story, utcnow

GONE = "That message or story is no longer there to rate."


@dataclass(frozen=True)
class Approval:
    kind: str
    persona: str
    model: str
    good: int
    bad: int

    @property
    def rate(self) -> float:
        return self.good / (self.good + self.bad) if self.good + self.bad else 0.0


def story_prompt(story: Story) -> str:
    """A story request as one line (the same request written twice pairs up)."""
    return (f"genre={story.genre} age={story.age_group} lang={story.language} "
            f"length={story.length} characters={story.characters!r} prompt={story.prompt!r}")


class Feedback:
    def __init__(self, db: Database, users: ConversationStore,
                 model_of: Callable[[str], str], story_model: Callable[[], str]) -> None:
        self.db = db
        self.users = users
        self.model_of = model_of
        """The description of the model that writes a persona's replies."""
        self.story_model = story_model

    async def rate(self, user: UserRef, target: str, good: bool) -> None:
        """``target``: ``reply:<message id>`` or ``story:<story id>`` (the user's own)."""
        kind, _, number = target.partition(":")
        if kind not in ("reply", "story") or not number.isdigit():
            raise InputError(f"bad rating target {target!r}", user_message=GONE)
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            if kind == "reply":
                found = await self._reply(s, uid, int(number))
            else:
                story = await s.get(Story, int(number))
                found = None if story is None or story.user_id != uid else (
                    "", self.story_model(), story_prompt(story),
                    f"{story.title}\n\n{story.content}")
            if found is None:
                raise InputError(f"no {target} of user {uid}", user_message=GONE)
            persona, model, prompt, output = found
            row = await s.scalar(select(Rating).where(Rating.user_id == uid,
                                                      Rating.target == target))
            if row is None:
                row = Rating(user_id=uid, kind=kind, target=target)
                s.add(row)
            row.good, row.persona, row.model = good, persona, model
            row.prompt, row.output, row.created_at = prompt, output, utcnow()

    async def _reply(self, s: Any, uid: int, message_id: int
                     ) -> tuple[str, str, str, str] | None:
        got = (await s.execute(
            select(Message, PersonaRecord.name)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(PersonaRecord, PersonaRecord.id == Conversation.persona_id)
            .where(Message.id == message_id, Message.role == "assistant",
                   Conversation.user_id == uid))).first()
        if got is None:
            return None
        message, persona = got
        asked = await s.scalar(
            select(Message.content).where(Message.conversation_id == message.conversation_id,
                                          Message.role == "user", Message.id < message.id)
            .order_by(Message.id.desc()).limit(1))
        return persona, self.model_of(persona), asked or "", message.content

    async def stats(self) -> list[Approval]:
        """Approval per kind, persona and model, most rated first."""
        async with self.db.session() as s:
            rows = (await s.execute(select(Rating.kind, Rating.persona, Rating.model,
                                           Rating.good))).all()
        counts: dict[tuple[str, str, str], list[int]] = {}
        for kind, persona, model, good in rows:
            counts.setdefault((kind, persona, model), [0, 0])[0 if good else 1] += 1
        return sorted((Approval(k, p, m, g, b) for (k, p, m), (g, b) in counts.items()),
                      key=lambda a: -(a.good + a.bad))

    async def pairs(self, kind: str = "reply") -> list[dict[str, str]]:
        return await preference_pairs(self.db, kind)


async def preference_pairs(db: Database, kind: str = "reply") -> list[dict[str, str]]:
    """Preference pairs: for one prompt (and persona), an output rated 👍 and one rated 👎
    (by anyone: "🔁 Again" gives the same prompt several outputs)."""
    async with db.session() as s:
        rows = (await s.scalars(select(Rating).where(Rating.kind == kind)
                                .order_by(Rating.id))).all()
    by_prompt: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for r in rows:
        liked, disliked = by_prompt.setdefault((r.persona, r.prompt), ([], []))
        (liked if r.good else disliked).append(r.output)
    return [{"persona": persona, "prompt": prompt, "chosen": c, "rejected": d}
            for (persona, prompt), (liked, disliked) in by_prompt.items()
            for c in dict.fromkeys(liked) for d in dict.fromkeys(disliked) if c != d]
