"""Who and where, from a Telegram update."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType

from engine.records import UserRef


def user_ref(update: Update) -> UserRef:
    u = update.effective_user
    assert u is not None
    return UserRef("telegram", str(u.id), u.full_name)


def chat_key(update: Update) -> str:
    """Empty for a private chat; the group's key otherwise (conversations are per chat)."""
    chat = update.effective_chat
    return "" if chat is None or chat.type == ChatType.PRIVATE else f"tg:{chat.id}"
