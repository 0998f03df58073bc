"""A press of a button (or a command that shows ideas or the story history) rendered in a
Telegram chat: ``bot.actions.ActionView`` over the turn view."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from telegram import CallbackQuery
from telegram.error import BadRequest

from bot.actions import HistoryPage
from bot.telegram.stream import TelegramTurnView, markup
from bot.turn import Button, IdeasFor


class TelegramPressView(TelegramTurnView):
    """The callback query (if this is a press) is answered once: with the notice of a brief
    action (a toast), else at once and empty, so the button stops spinning."""

    def __init__(self, *args: Any, query: CallbackQuery | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.query = query
        self.acknowledged = query is None

    async def acknowledge(self, text: str | None = None) -> None:
        if not self.acknowledged and self.query is not None:
            self.acknowledged = True
            await self.query.answer(text)

    async def notice(self, text: str) -> None:
        if not self.acknowledged:
            await self.acknowledge(text)
        else:
            await self.bot.send_message(self.chat_id, text, message_thread_id=self.thread_id)

    async def settle(self, text: str) -> None:
        await self.acknowledge()
        if self.query is None or self.query.message is None:
            await self.notice(text)
            return
        with contextlib.suppress(BadRequest):  # e.g. the same text: nothing to change
            await self.query.edit_message_text(text)

    async def ideas(self, about: IdeasFor, ideas: Sequence[str]) -> None:
        await self._send(about.heading(), about.buttons(ideas))

    async def history(self, page: HistoryPage) -> None:
        lines, last = [], None
        for label, r in page.entries:
            if label != last:
                lines.append(f"\n{label}")
                last = label
            lines.append(f"#{r.id} {r.title}{' ⭐' if r.favourite else ''}")
        if page.pages > 1:
            lines.append(f"\nPage {page.page + 1} of {page.pages} · {page.total} stories")
        opens = [Button(f"#{r.id}", "open", str(r.id)) for _, r in page.entries]
        await self._send("\n".join(lines).strip(), [*opens, *page.nav()])

    async def _send(self, text: str, buttons: Sequence[Button]) -> None:
        await self.bot.send_message(self.chat_id, text, reply_markup=markup(buttons),
                                    message_thread_id=self.thread_id)
