"""Deliver a streaming reply in Telegram: typing action, paced edits, 4,096-char parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, TelegramError

from bot.split import split_message

log = logging.getLogger(__name__)

LIMIT = MessageLimit.MAX_TEXT_LENGTH  # 4096
ACTION_EVERY_S = 4.0


@contextlib.asynccontextmanager
async def chat_action(bot: Bot, chat_id: int, action: str = ChatAction.TYPING
                      ) -> AsyncIterator[None]:
    """Keep ``action`` ("typing…") visible, renewed every ~4 s, while the body runs."""

    async def show() -> None:
        with contextlib.suppress(TelegramError):
            await bot.send_chat_action(chat_id, action)

    async def renew() -> None:
        while True:
            await asyncio.sleep(ACTION_EVERY_S)
            await show()

    await show()  # at once, however quick the body turns out to be
    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StreamedReply:
    """Shows text as it arrives by editing one message at a paced rate, then splits the
    final text into messages of at most 4,096 characters. Keyboard goes on the last."""

    def __init__(self, bot: Bot, chat_id: int, *, reply_to: int | None = None,
                 interval_s: float = 1.2, thread_id: int | None = None,
                 prefix: str = "") -> None:
        """``prefix`` (e.g. the AI disclosure) goes above the text, in the same message."""
        self.bot = bot
        self.prefix = prefix
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.interval_s = interval_s
        self.thread_id = thread_id
        self.messages: list[Message] = []
        self._shown = ""
        self._last_edit = 0.0

    async def _send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        msg = await self.bot.send_message(
            self.chat_id, text, reply_to_message_id=self.reply_to if not self.messages else None,
            message_thread_id=self.thread_id, reply_markup=markup)
        self.messages.append(msg)
        return msg

    async def _edit(self, msg: Message, text: str,
                    markup: InlineKeyboardMarkup | None = None) -> None:
        try:
            await self.bot.edit_message_text(text, chat_id=self.chat_id,
                                             message_id=msg.message_id, reply_markup=markup)
        except BadRequest as exc:  # "message is not modified" and the like: harmless
            log.debug("edit skipped: %s", exc)

    async def pieces(self, source: AsyncIterable[str]) -> AsyncIterator[str]:
        """Pass the pieces through, updating the live message on the way."""
        text = ""
        async for piece in source:
            text += piece
            yield piece
            now = time.monotonic()
            if now - self._last_edit >= self.interval_s and text.strip():
                await self.update(text)
                self._last_edit = now

    async def update(self, text: str) -> None:
        text = self.prefix + text
        preview = text[: LIMIT - 2] + " …" if len(text) > LIMIT else text
        if not self.messages:
            await self._send(preview)
        elif preview != self._shown:
            await self._edit(self.messages[0], preview)
        self._shown = preview

    async def finish(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        parts = split_message(self.prefix + text, LIMIT) or ["…"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0 and self.messages:
                await self._edit(self.messages[0], part, markup if last else None)
            else:
                await self._send(part, markup if last else None)
