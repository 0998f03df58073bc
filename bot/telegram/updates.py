"""How Telegram updates come in: recorded before they are confirmed, run concurrently across
chats and in order within one, never started once the bot is stopping.

python-telegram-bot confirms an update to Telegram on its next ``getUpdates`` call, right
after putting it into the application's update queue. ``DurableQueue`` records each update
in the engine's inbox *before* it enters the queue, so an update that is confirmed is also
stored; the processor marks it started and drops it when its handler is done. What is left
at the next start is handled then (never started) or its sender is told (cut off).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.ordering import ChatOrder, Underway
from engine.api import Inbox

log = logging.getLogger(__name__)

PLATFORM = "telegram"
UNORDERED_COMMANDS = frozenset(
    "cancel start help persona voice history favourites favorites prompts genres forget "
    "export memories stats web achievements".split())
"""Commands that need no model: they never wait behind a chat's running reply."""


def summary(update: Update) -> str:
    """What the person sent, in a few words (to remind them if it goes unanswered)."""
    msg = update.effective_message
    if update.callback_query is not None:
        return "a button"
    if msg is None:
        return "an update"
    if msg.text:
        return msg.text[:120]
    if msg.voice or msg.audio:
        return "a voice message"
    return msg.caption[:120] if msg.caption else "a message"


def ordered_key(update: object) -> str | None:
    """The chat whose order this update keeps, or None for updates that run at once
    (buttons, commands that need no model)."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return None
    if update.callback_query is not None:
        return None
    msg = update.effective_message
    if msg is not None and msg.text and msg.text.startswith("/"):
        command = msg.text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if \
            len(msg.text) > 1 else ""
        if command in UNORDERED_COMMANDS:
            return None
    return str(update.effective_chat.id)


class DurableQueue(asyncio.Queue[object]):
    """The application's update queue; an update is in the inbox before it is queued."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self.inbox = inbox

    async def put(self, item: object) -> None:
        if isinstance(item, Update):
            chat = item.effective_chat
            user = item.effective_user
            if not await self.inbox.record(
                    PLATFORM, str(item.update_id), payload=json.dumps(item.to_dict()),
                    chat_id=str(chat.id) if chat else "",
                    user_key=f"{PLATFORM}:{user.id}" if user else "", summary=summary(item)):
                # Stored, but its confirmation was cut off by a stop: the inbox has it.
                log.info("update %s was delivered again; it is handled once", item.update_id)
                return
        await super().put(item)

    async def replay(self, update: Update) -> None:
        """Queue an update that is already in the inbox (received before a restart)."""
        await super().put(update)


class OrderedProcessor(BaseUpdateProcessor):
    """Concurrent across chats, in arrival order within a chat; nothing starts once
    ``stopping`` is set, and one whose work the stopping engine dropped before it began
    (see ``keep``): their inbox rows wait for the next start."""

    def __init__(self, inbox: Inbox, max_concurrent: int = 256) -> None:
        super().__init__(max_concurrent)
        self.inbox = inbox
        self.order = ChatOrder()
        self.stopping = False
        self.running: set[asyncio.Task[Any]] = set()
        self.underway = Underway()
        self.kept: set[str] = set()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        self.underway.track()
        try:
            key = ordered_key(update)
            work = self._handle(update, coroutine)
            await (work if key is None else self.order.run(key, work))
        finally:
            if task is not None:
                self.running.discard(task)

    async def _handle(self, update: object, coroutine: Awaitable[Any]) -> None:
        uid = str(update.update_id) if isinstance(update, Update) else None
        if self.stopping:
            _close(coroutine)
            log.info("update %s left for the next start (stopping)", uid)
            return
        if uid is not None:
            await self.inbox.started(PLATFORM, uid)
        await coroutine  # handler errors go to the error handler; this returns normally
        if uid is None:
            return
        if uid in self.kept:  # the stop came before its turn began: the next start has it
            self.kept.discard(uid)
            await self.inbox.put_back(PLATFORM, uid)
        else:
            await self.inbox.done(PLATFORM, uid)

    def keep(self, update: Update) -> None:
        """Its handler ends without an answer because the engine stopped before its work
        began: it waits in the inbox for the next start instead of being dropped."""
        self.kept.add(str(update.update_id))

    async def initialize(self) -> None:
        self.stopping = False

    async def shutdown(self) -> None:
        return None


def _close(coroutine: Awaitable[Any]) -> None:
    if inspect.iscoroutine(coroutine):
        coroutine.close()
