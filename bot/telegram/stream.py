"""Deliver a streaming reply in Telegram: typing action, paced edits, 4,096-char parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    Message,
)
from telegram.constants import ChatAction, MediaGroupLimit, MessageLimit
from telegram.error import BadRequest, TelegramError

from bot.pacing import PacedReply
from bot.turn import Button
from engine.api import Picture, VoiceNote

log = logging.getLogger(__name__)

LIMIT = MessageLimit.MAX_TEXT_LENGTH  # 4096
CAPTION_LIMIT = MessageLimit.CAPTION_LENGTH  # 1024
ALBUM_LIMIT = MediaGroupLimit.MAX_MEDIA_LENGTH  # 10
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


class StreamedReply(PacedReply[Message]):
    """Shows text as it arrives by editing one message at a paced rate, then splits the
    final text into messages of at most 4,096 characters. Keyboard goes on the last."""

    limit = LIMIT

    def __init__(self, bot: Bot, chat_id: int, *, reply_to: int | None = None,
                 interval_s: float = 1.2, thread_id: int | None = None) -> None:
        super().__init__(interval_s=interval_s)
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.thread_id = thread_id

    async def _send(self, text: str, buttons: InlineKeyboardMarkup | None = None) -> Message:
        msg = await self.bot.send_message(
            self.chat_id, text, reply_to_message_id=self.reply_to if not self.messages else None,
            message_thread_id=self.thread_id, reply_markup=buttons)
        self.messages.append(msg)
        return msg

    async def _edit(self, message: Message, text: str,
                    buttons: InlineKeyboardMarkup | None = None) -> None:
        try:
            await self.bot.edit_message_text(text, chat_id=self.chat_id,
                                             message_id=message.message_id,
                                             reply_markup=buttons)
        except BadRequest as exc:  # "message is not modified" and the like: harmless
            log.debug("edit skipped: %s", exc)


ROW_CHARS, ROW_BUTTONS, LONG = 40, 5, 12
"""Short buttons share a keyboard row while their labels fit; a long one (a story idea)
has a row of its own."""


def markup(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """Platform-free buttons as an inline keyboard (callback data ``action|value``)."""
    if not buttons:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    width = 0
    for b in buttons:
        size = len(b.label) if len(b.label) <= LONG else ROW_CHARS
        if not rows or len(rows[-1]) == ROW_BUTTONS or width + size > ROW_CHARS:
            rows.append([])
            width = 0
        rows[-1].append(InlineKeyboardButton(
            b.label, callback_data=b.data.encode()[:64].decode(errors="ignore")))
        width += size
    return InlineKeyboardMarkup(rows)


class TelegramTurnView:
    """A turn rendered in a Telegram chat (``bot.turn.TurnView``)."""

    def __init__(self, bot: Bot, chat_id: int, *, reply_to: int | None = None,
                 thread_id: int | None = None, interval_s: float = 1.2,
                 voice_caption: str = "") -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.thread_id = thread_id
        self.interval_s = interval_s
        self.voice_caption = voice_caption
        self.out = StreamedReply(bot, chat_id, reply_to=reply_to, interval_s=interval_s,
                                 thread_id=thread_id)
        self._position: Message | None = None

    async def queued(self, position: int) -> None:
        text = f"You are #{position} in line."
        if self._position is None:
            self._position = await self.bot.send_message(self.chat_id, text,
                                                         message_thread_id=self.thread_id)
        else:
            with contextlib.suppress(BadRequest):
                await self.bot.edit_message_text(text, chat_id=self.chat_id,
                                                 message_id=self._position.message_id)

    async def dequeued(self) -> None:
        if self._position is not None:
            with contextlib.suppress(TelegramError):
                await self.bot.delete_message(self.chat_id, self._position.message_id)
            self._position = None

    def activity(self, voice: bool) -> contextlib.AbstractAsyncContextManager[None]:
        return chat_action(self.bot, self.chat_id,
                           ChatAction.RECORD_VOICE if voice else ChatAction.TYPING)

    async def show(self, text: str) -> None:
        await self.out.update(text)

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        await self.out.finish(text, markup(buttons))

    def title(self, text: str) -> str:
        return text

    async def pictures(self, pictures: Sequence[Picture]) -> None:
        """One photo, or an album (a media group holds 2-10)."""
        if len(pictures) == 1:
            pic = pictures[0]
            await self.bot.send_photo(self.chat_id, photo=InputFile(pic.data, pic.filename),
                                      caption=pic.caption[:CAPTION_LIMIT] or None,
                                      message_thread_id=self.thread_id)
            return
        for start in range(0, len(pictures), ALBUM_LIMIT):
            await self.bot.send_media_group(self.chat_id, [
                InputMediaPhoto(pic.data, caption=pic.caption[:CAPTION_LIMIT] or None,
                                filename=pic.filename)
                for pic in pictures[start:start + ALBUM_LIMIT]],
                message_thread_id=self.thread_id)

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        await self.bot.send_voice(self.chat_id, voice=note.ogg,
                                  duration=max(1, round(note.duration_s)),
                                  caption=self.voice_caption or None,
                                  message_thread_id=self.thread_id,
                                  reply_markup=markup(buttons))
