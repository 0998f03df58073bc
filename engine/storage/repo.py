"""Queries, each scoped to one user. Callers own the session and the transaction."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.storage.models import (
    Conversation,
    Message,
    PersonaRecord,
    User,
    UserSetting,
    utcnow,
)


async def get_or_create_user(
    session: AsyncSession, platform: str, platform_user_id: str, display_name: str | None
) -> User:
    user = await session.scalar(
        select(User).where(User.platform == platform, User.platform_user_id == platform_user_id)
    )
    if user is None:
        user = User(platform=platform, platform_user_id=platform_user_id,
                    display_name=display_name)
        session.add(user)
    else:
        user.last_seen_at = utcnow()
        if display_name and user.display_name != display_name:
            user.display_name = display_name
    await session.flush()
    return user


async def get_or_create_persona(session: AsyncSession, name: str) -> PersonaRecord:
    record = await session.scalar(select(PersonaRecord).where(PersonaRecord.name == name))
    if record is None:
        record = PersonaRecord(name=name)
        session.add(record)
        await session.flush()
    return record


async def open_conversation(
    session: AsyncSession, user_id: int, persona_id: int, chat_key: str
) -> Conversation:
    """The user's open conversation with a persona in a chat, started if there is none."""
    conv = await session.scalar(
        select(Conversation)
        .where(
            Conversation.user_id == user_id,
            Conversation.persona_id == persona_id,
            Conversation.chat_key == chat_key,
            Conversation.closed_at.is_(None),
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
    if conv is None:
        conv = Conversation(user_id=user_id, persona_id=persona_id, chat_key=chat_key)
        session.add(conv)
        await session.flush()
    return conv


async def close_conversations(
    session: AsyncSession, user_id: int, persona_id: int, chat_key: str
) -> int:
    """Close the open conversations (``/reset``); they stay in history. Returns the count."""
    result = await session.execute(
        update(Conversation)
        .where(
            Conversation.user_id == user_id,
            Conversation.persona_id == persona_id,
            Conversation.chat_key == chat_key,
            Conversation.closed_at.is_(None),
        )
        .values(closed_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def recent_messages(
    session: AsyncSession, conversation_id: int, limit: int
) -> list[Message]:
    """The newest ``limit`` messages of a conversation, oldest first."""
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))


async def add_exchange(session: AsyncSession, conversation_id: int, text: str
                       ) -> tuple[Message, Message]:
    """The user's message and a ``pending`` reply row after it, in one statement."""
    asked = Message(conversation_id=conversation_id, role="user", content=text,
                    status="complete")
    reply = Message(conversation_id=conversation_id, role="assistant", content="",
                    status="pending")
    session.add_all([asked, reply])
    await session.flush()  # (one INSERT for both, in this order: the ids are theirs)
    return asked, reply


async def get_setting(session: AsyncSession, user_id: int, key: str, scope: str = "") -> str | None:
    row = await session.get(UserSetting, (user_id, scope, key))
    return None if row is None else row.value


async def set_setting(
    session: AsyncSession, user_id: int, key: str, value: str, scope: str = ""
) -> None:
    row = await session.get(UserSetting, (user_id, scope, key))
    if row is None:
        session.add(UserSetting(user_id=user_id, scope=scope, key=key, value=value))
    else:
        row.value = value
    await session.flush()
