"""Users, persona choices and conversations: SQLite is the record, memory the fast path.

A chat turn must not wait on the database before the model starts, so the ids and
the recent history of active conversations are cached (LRU); writes go to SQLite right
after the job is queued. Only the process holding the data dir writes conversations (the
commands beside it touch stories and settings), so the cache stays true.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from engine.errors import InputError
from engine.llm.base import ChatMessage
from engine.records import SourceCard, StoredMessage, UserRef
from engine.reply_text import visible
from engine.storage import repo
from engine.storage.db import Database
from engine.storage.models import Conversation, Favourite, Message, User, utcnow
from engine.summary import fold

K = TypeVar("K")
V = TypeVar("V")

HISTORY_ROWS = 100
"""Messages kept per conversation for the prompt; the token budget then decides what fits."""


class LRU(OrderedDict[K, V]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_fresh(self, key: K) -> V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class ConversationState:
    user_id: int
    conversation_id: int
    history: list[ChatMessage] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    """What scrolled out of ``history`` (engine/summary.py), stored with the conversation."""
    summary_changed: bool = False

    def replace_line(self, old: ChatMessage, new: ChatMessage | None) -> None:
        """Replace the newest line equal to ``old`` in ``history`` (its own line, not just
        the last one) with ``new``, or drop it (None)."""
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i] == old:
                if new is None:
                    del self.history[i]
                else:
                    self.history[i] = new
                return

    def remember(self, msg: ChatMessage) -> None:
        self.history.append(msg)
        extra = len(self.history) - HISTORY_ROWS
        if extra > 0:
            self.summary = fold(self.summary, self.history[:extra])
            del self.history[:extra]
            self.summary_changed = True



@dataclass(frozen=True)
class KnownUser:
    ref: UserRef
    last_seen: datetime


class ConversationStore:
    def __init__(self, db: Database, *, cache_size: int = 512) -> None:
        self.db = db
        self._users: LRU[str, int] = LRU(cache_size * 4)
        self._personas: LRU[tuple[str, str], str | None] = LRU(cache_size * 4)
        self._conversations: LRU[tuple[str, str, str], ConversationState] = LRU(cache_size)
        self._lock = asyncio.Lock()
        self._user_lock = asyncio.Lock()
        """Held while a user row may be made (``user_id``)."""

    async def user_id(self, user: UserRef) -> int:
        """The user's row id, the row made on their first request. Atomic: first requests
        at once (here, or in another process on the same database) make one row."""
        uid = self._users.get_fresh(user.key)
        if uid is not None:
            return uid
        name = " ".join(visible(user.display_name or "").split())[:200] or None
        async with self._user_lock:
            for attempt in range(2):
                try:
                    async with self.db.session() as s, s.begin():
                        uid = (await repo.get_or_create_user(s, user.platform, user.user_id,
                                                             name)).id
                    break
                except IntegrityError:  # another process made it meanwhile: it is there now
                    if attempt:
                        raise
        assert uid is not None
        self._users.put(user.key, uid)
        return uid

    async def find_user_id(self, user: UserRef) -> int | None:
        """The user's id if Doppel has stored anything about them; never creates them."""
        uid = self._users.get_fresh(user.key)
        if uid is None:
            async with self.db.session() as s:
                uid = await s.scalar(select(User.id).where(
                    User.platform == user.platform, User.platform_user_id == user.user_id))
        return uid

    async def find_users(self, query: str = "", *, exact: bool = False) -> list[KnownUser]:
        """Users whose ``platform:id``, id or name matches ``query`` (all when empty): an
        exact key, id or name first, else (unless ``exact``) keys and names containing it,
        newest activity first."""
        q = query.strip()
        async with self.db.session() as s:
            rows = (await s.scalars(select(User).order_by(User.last_seen_at.desc()))).all()
        users = [KnownUser(UserRef(r.platform, r.platform_user_id, r.display_name),
                           r.last_seen_at) for r in rows]
        if not q:
            return users
        same = [u for u in users if q in (u.ref.key, u.ref.user_id)
                or (u.ref.display_name or "").casefold() == q.casefold()]
        return same or ([] if exact else [
            u for u in users if q.casefold() in f"{u.ref.key} {u.ref.display_name or ''}"
            .casefold()])

    async def persona_choice(self, user: UserRef, chat_key: str, *,
                             fallback: bool = True) -> str | None:
        """The persona name the user chose for this chat, else (with ``fallback``) their
        global choice, else None."""
        key = (user.key, f"{chat_key}|{fallback}")
        if key in self._personas:
            return self._personas.get_fresh(key)
        uid = await self.user_id(user)
        async with self.db.session() as s:
            name = await repo.get_setting(s, uid, "persona", chat_key)
            if name is None and chat_key and fallback:
                name = await repo.get_setting(s, uid, "persona", "")
        self._personas.put(key, name)
        return name

    async def set_persona_choice(self, user: UserRef, name: str, chat_key: str) -> None:
        uid = await self.user_id(user)
        async with self.db.session() as s, s.begin():
            await repo.set_setting(s, uid, "persona", name, chat_key)
        for key in [k for k in self._personas if k[0] == user.key]:
            del self._personas[key]

    async def forget(self, user: UserRef) -> bool:
        """Delete the user and, by cascade, everything of theirs. False if unknown."""
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(User).where(User.platform == user.platform,
                                                    User.platform_user_id == user.user_id))
            if row is not None:
                await s.delete(row)
        self._users.pop(user.key, None)
        for choice in [k for k in self._personas if k[0] == user.key]:
            del self._personas[choice]
        for conv in [k for k in self._conversations if k[0] == user.key]:
            del self._conversations[conv]
        return row is not None

    async def favourite_message(self, user: UserRef, message_id: int) -> StoredMessage:
        """Star one of the persona's replies to this user (never another user's)."""
        uid = await self.user_id(user)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Message).join(Conversation).where(
                Message.id == message_id, Conversation.user_id == uid,
                Message.role == "assistant"))
            if row is None:
                raise InputError("no such message",
                                 user_message="I can't find that reply any more.")
            exists = await s.scalar(select(Favourite).where(Favourite.user_id == uid,
                                                            Favourite.message_id == message_id))
            if exists is None:
                s.add(Favourite(user_id=uid, message_id=message_id))
            return StoredMessage(row.id, row.role, row.content, row.status, row.created_at)

    async def setting(self, user: UserRef, key: str, scope: str = "") -> str | None:
        uid = await self.user_id(user)
        async with self.db.session() as s:
            return await repo.get_setting(s, uid, key, scope)

    async def set_setting(self, user: UserRef, key: str, value: str, scope: str = "") -> None:
        uid = await self.user_id(user)
        async with self.db.session() as s, s.begin():
            await repo.set_setting(s, uid, key, value, scope)

    async def open(self, user: UserRef, persona: str, chat_key: str) -> ConversationState:
        """The open conversation's state, loaded from SQLite on a cache miss."""
        key = (user.key, persona, chat_key)
        state = self._conversations.get_fresh(key)
        if state is not None:
            return state
        async with self._lock:  # two first messages at once must not open two conversations
            state = self._conversations.get_fresh(key)
            if state is not None:
                return state
            uid = await self.user_id(user)
            async with self.db.session() as s, s.begin():
                record = await repo.get_or_create_persona(s, persona)
                conv = await repo.open_conversation(s, uid, record.id, chat_key)
                rows = await repo.recent_messages(s, conv.id, HISTORY_ROWS)
            state = ConversationState(uid, conv.id, [
                ChatMessage(r.role, r.content)  # type: ignore[arg-type]
                for r in rows if r.role in ("user", "assistant") and r.content
            ], conv.summary.splitlines() if conv.summary else [])
            self._conversations.put(key, state)
            return state

    async def begin_exchange(self, state: ConversationState, text: str) -> tuple[int, int]:
        """Commit the user's message and a ``pending`` reply row before generation starts,
        so a crash loses neither (the reply is marked ``interrupted`` at the next start).
        Returns the ids of both rows."""
        async with self.db.session() as s, s.begin():
            asked, reply = await repo.add_exchange(s, state.conversation_id, text)
            await s.execute(update(User).where(User.id == state.user_id)
                            .values(last_seen_at=utcnow()))
        state.remember(ChatMessage("user", text))
        await self._keep_summary(state)
        return asked.id, reply.id

    async def _keep_summary(self, state: ConversationState) -> None:
        """Store the running summary when messages scrolled into it."""
        if not state.summary_changed:
            return
        state.summary_changed = False
        async with self.db.session() as s, s.begin():
            await s.execute(update(Conversation).where(Conversation.id ==
                                                       state.conversation_id)
                            .values(summary="\n".join(state.summary)))

    async def abort_exchange(self, state: ConversationState, ids: tuple[int, int]) -> None:
        """Undo :meth:`begin_exchange` for a request that was never answered (it could not
        be queued, or the queue was dropped at shutdown): as if it was never sent."""
        asked = ""
        async with self.db.session() as s, s.begin():
            for message_id in ids:
                row = await s.get(Message, message_id)
                if row is not None and row.conversation_id == state.conversation_id:
                    asked = asked or (row.content if row.role == "user" else "")
                    await s.delete(row)
        state.replace_line(ChatMessage("user", asked), None)

    async def finish_reply(self, state: ConversationState, reply_id: int, text: str, *,
                           status: str, tokens: int | None, disclosure: str = "",
                           sources: tuple[SourceCard, ...] = ()) -> int | None:
        """Store how the reply ended, with what was shown beside it (a page reloaded shows
        it again); an empty failed reply leaves no row. Returns the id of the stored reply,
        or None."""
        async with self.db.session() as s, s.begin():
            row = await s.get(Message, reply_id)
            if row is None:  # the user was forgotten meanwhile
                return None
            if not text.strip() and status != "complete":
                await s.delete(row)
                return None
            row.content, row.status, row.tokens = text, status, tokens
            row.disclosure = disclosure
            row.sources = json.dumps([asdict(c) for c in sources]) if sources else ""
        if text:
            state.remember(ChatMessage("assistant", text))
            await self._keep_summary(state)
        return reply_id

    async def cut_reply(self, state: ConversationState, reply_id: int, said: str) -> None:
        """A stored reply the person talked over: keep only ``said`` (what they heard), as
        a cancelled reply, in the database and in the prompt's history ("": none)."""
        async with self.db.session() as s, s.begin():
            row = await s.get(Message, reply_id)
            if row is None:
                return
            old = row.content
            if said.strip():
                row.content, row.status = said, "cancelled"
            else:
                await s.delete(row)
        state.replace_line(ChatMessage("assistant", old),
                           ChatMessage("assistant", said) if said.strip() else None)

    async def recover_interrupted(self) -> set[int]:
        """At start: replies still ``pending`` were cut off by a crash; mark them
        ``interrupted``. Returns the conversations whose last reply that was."""
        async with self.db.session() as s, s.begin():
            rows = (await s.scalars(select(Message).where(Message.status == "pending"))).all()
            for row in rows:
                row.status = "interrupted"
            await s.flush()
            last = {}
            for row in (await s.scalars(select(Message).where(
                    Message.conversation_id.in_({r.conversation_id for r in rows}))
                    .order_by(Message.id))).all():
                last[row.conversation_id] = row
        return {cid for cid, row in last.items() if row.status == "interrupted"}

    async def recent(self, user: UserRef, persona: str, chat_key: str,
                     limit: int) -> list[StoredMessage]:
        state = await self.open(user, persona, chat_key)
        async with self.db.session() as s:
            rows = await repo.recent_messages(s, state.conversation_id, limit)
        return [StoredMessage(r.id, r.role, r.content, r.status, r.created_at, r.disclosure,
                              tuple(SourceCard(**c) for c in json.loads(r.sources or "[]")))
                for r in rows]

    async def close(self, user: UserRef, persona: str, chat_key: str) -> int:
        uid = await self.user_id(user)
        self._conversations.pop((user.key, persona, chat_key), None)
        async with self.db.session() as s, s.begin():
            record = await repo.get_or_create_persona(s, persona)
            return await repo.close_conversations(s, uid, record.id, chat_key)
