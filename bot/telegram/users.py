"""Who and where, from a Telegram update."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.constants import ChatMemberStatus, ChatType

from engine.api import UserRef


def user_ref(update: Update) -> UserRef:
    u = update.effective_user
    assert u is not None
    return UserRef("telegram", str(u.id), u.full_name)


def chat_key(update: Update) -> str:
    """Empty for a private chat; the group's key otherwise (conversations are per chat)."""
    chat = update.effective_chat
    return "" if chat is None or chat.type == ChatType.PRIVATE else f"tg:{chat.id}"


async def is_chat_admin(update: Update, context: Any) -> bool:
    """The sender administers the group this update is from (never in private)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type == ChatType.PRIVATE:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
