"""A press of a button or select menu (or a command that shows ideas or the story history)
rendered as follow-ups of its Discord interaction: ``bot.actions.ActionView``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

from bot.actions import HistoryPage
from bot.discord.stream import Buttons, DiscordTurnView, button, view_of
from bot.turn import Button, IdeasFor
from engine.api import VoiceNote

PREFIX = "dp"
"""Every component's ``custom_id`` is ``dp:ACTION:VALUE``."""


def cid(action: str, value: str | int = "") -> str:
    return f"{PREFIX}:{action}:{value}"[:100]


def history_embed(page: HistoryPage, title: str = "") -> tuple[discord.Embed, Buttons]:
    """A page of stories as an embed, a menu that opens one, and ◀ ▶."""
    title = title or (f"Stories matching \"{page.search}\"" if page.search else "Your stories")
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    for label in dict.fromkeys(label for label, _ in page.entries):
        lines = [f"`#{r.id}` {r.title}{' ⭐' if r.favourite else ''} ({r.genre})"
                 for lb, r in page.entries if lb == label]
        embed.add_field(name=label, value="\n".join(lines)[:1024], inline=False)
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages} · {page.total} stories")
    select: discord.ui.Select[Any] = discord.ui.Select(
        custom_id=cid("open"), placeholder="Open a story…",
        options=[discord.SelectOption(label=f"#{r.id} {r.title}"[:100], value=str(r.id),
                                      description=f"{label} · {r.genre}"[:100])
                 for label, r in page.entries])
    nav: list[discord.ui.Item[Any]] = [button(b.label, cid(b.action, b.value))
                                       for b in page.nav()]
    return embed, Buttons(select, *nav)


class DiscordPressView(DiscordTurnView):
    """Notices of a brief action are ephemeral; an interaction deferred with "thinking…"
    always gets a follow-up (a voice message alone is announced with 🔊)."""

    def __init__(self, *args: Any, interaction: discord.Interaction[Any], brief: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interaction = interaction
        self.brief = brief
        self.responded = False

    async def notice(self, text: str) -> None:
        self.responded = True
        await self.interaction.followup.send(text, ephemeral=self.brief)

    async def settle(self, text: str) -> None:
        await self.notice(text)

    async def ideas(self, about: IdeasFor, ideas: Sequence[str]) -> None:
        view = view_of(about.buttons(ideas))
        assert view is not None  # "More ideas" at least
        self.responded = True
        await self.interaction.followup.send(about.heading(), view=view)

    async def history(self, page: HistoryPage) -> None:
        embed, view = history_embed(page)
        self.responded = True
        await self.interaction.followup.send(embed=embed, view=view)

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        self.responded = True
        await super().finish(text, buttons)

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        if not self.responded:
            self.responded = True
            await self.interaction.followup.send("🔊")
        await super().voice(note, buttons)
