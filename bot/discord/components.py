"""Buttons and select menus: drawn with a ``custom_id`` of ``dp:ACTION:VALUE`` and routed
here from the interaction event, so they work for any message, even after a restart."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.stream import Buttons, button
from bot.discord.users import chat_key, user_ref
from bot.turn import CONTINUE_PROMPT, button_number, open_story, story_turn
from engine.errors import InputError
from engine.records import StoredMessage, UserRef
from engine.stories.options import StoryRequest
from engine.stories.service import StoryRecord

if TYPE_CHECKING:
    from bot.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

PREFIX = "dp"
HISTORY_PAGE = 8


def cid(action: str, value: str | int = "") -> str:
    return f"{PREFIX}:{action}:{value}"[:100]


def ideas_view(ideas: list[str], genre: str, language: str, age: str) -> Buttons:
    key = f"{genre[:40]}|{language}|{age}"
    items: list[discord.ui.Item[Any]] = [
        button(f"{n + 1}. {idea}"[:80], cid("idea", f"{key}|{n}")) for n, idea in
        enumerate(ideas[:5])]
    items.append(button("More ideas", cid("more", key), emoji="💡",
                        style=discord.ButtonStyle.primary))
    return Buttons(*items)


def history_embed(groups: list[tuple[str, list[StoryRecord]]], page: int,
                  search: str) -> tuple[discord.Embed, Buttons] | None:
    flat = [(label, r) for label, rs in groups for r in rs]
    if not flat:
        return None
    pages = (len(flat) + HISTORY_PAGE - 1) // HISTORY_PAGE
    page = max(0, min(page, pages - 1))
    chunk = flat[page * HISTORY_PAGE:(page + 1) * HISTORY_PAGE]
    title = f"Stories matching \"{search}\"" if search else "Your stories"
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    for label in dict.fromkeys(label for label, _ in chunk):
        lines = [f"`#{r.id}` {r.title}{' ⭐' if r.favourite else ''} ({r.genre})"
                 for lb, r in chunk if lb == label]
        embed.add_field(name=label, value="\n".join(lines)[:1024], inline=False)
    embed.set_footer(text=f"Page {page + 1} of {pages} · {len(flat)} stories")
    select: discord.ui.Select[Any] = discord.ui.Select(
        custom_id=cid("open"), placeholder="Open a story…",
        options=[discord.SelectOption(label=f"#{r.id} {r.title}"[:100], value=str(r.id),
                                      description=f"{label} · {r.genre}"[:100])
                 for label, r in chunk])
    items: list[discord.ui.Item[Any]] = [select]
    nav = f"{search[:60]}"
    if page > 0:
        items.append(button("Previous", cid("hp", f"{page - 1}|{nav}"), emoji="◀"))
    if page + 1 < pages:
        items.append(button("Next", cid("hp", f"{page + 1}|{nav}"), emoji="▶"))
    return embed, Buttons(*items)


class ComponentHandler:
    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter
        self.engine = adapter.engine

    async def handle(self, interaction: discord.Interaction[Any]) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        prefix, _, rest = custom_id.partition(":")
        if prefix != PREFIX:
            return  # not ours
        action, _, value = rest.partition(":")
        await interaction.response.defer(
            thinking=action not in ("favmsg", "fav", "forget", "good", "bad"), ephemeral=False)
        user = user_ref(interaction.user)
        engine = self.engine
        if action == "favmsg":
            await engine.favourite_message(user, button_number(value))
            await interaction.followup.send("⭐ Saved to your favourites.", ephemeral=True)
        elif action in ("good", "bad"):
            await engine.feedback.rate(user, value, action == "good")
            await interaction.followup.send("Thanks: noted.", ephemeral=True)
        elif action == "fav":
            record = await engine.stories.favourite(user, button_number(value))
            await interaction.followup.send(f"⭐ Saved \"{record.title}\".", ephemeral=True)
        elif action == "narrate":
            parts = await engine.stories.narrate(user, button_number(value))
            await interaction.followup.send(f"🔊 Reading it aloud ({len(parts)} part"
                                            f"{'s' if len(parts) > 1 else ''}).")
            for part in parts:
                await self.adapter.send_voice(interaction.channel_id or 0, part)
        elif action == "say":
            await self._say(interaction)
        elif action == "regen":
            await self._regenerate(interaction)
        elif action == "continue":
            await self._chat(interaction, CONTINUE_PROMPT)
        elif action in ("ideas", "more", "idea"):
            await self._ideas(interaction, action, value)
        elif action == "hp":
            page, _, search = value.partition("|")
            await self.show_history(interaction, button_number(page), search)
        elif action == "open":
            values: list[Any] = list(data.get("values") or [])
            if not values:
                raise InputError("no story chosen", user_message="Choose a story to open.")
            await open_story(engine, self.adapter.view(
                interaction.channel, None, interaction),  # type: ignore[arg-type]
                user, button_number(str(values[0])))
        elif action == "forget":
            if value == "yes":
                await engine.forget(user)
            await interaction.followup.send(
                "Done: I have forgotten everything about you." if value == "yes" else
                "Nothing was deleted.", ephemeral=True)
        else:
            raise InputError(f"unknown button {custom_id!r}", user_message=(
                "That button is from an older version of me; try the command again."))

    async def _last(self, interaction: discord.Interaction[Any], role: str,
                    missing: str) -> tuple[UserRef, StoredMessage]:
        """The user's latest message of ``role`` in this chat, or ``missing`` said."""
        user = user_ref(interaction.user)
        key = chat_key(interaction.channel_id, interaction.guild_id)
        history = await self.engine.history(user, chat_key=key, limit=2)
        found = next((m for m in reversed(history) if m.role == role), None)
        if found is None:
            raise InputError(f"no {role} message", user_message=missing)
        return user, found

    async def _say(self, interaction: discord.Interaction[Any]) -> None:
        user, last = await self._last(interaction, "assistant", "There is no reply to read.")
        persona = await self.adapter.persona_for(user, interaction.channel_id,
                                                 interaction.guild_id)
        note = await self.engine.speak(last.content, user=user, persona=persona)
        await interaction.followup.send("🔊")
        await self.adapter.send_voice(interaction.channel_id or 0, note)

    async def _regenerate(self, interaction: discord.Interaction[Any]) -> None:
        _, question = await self._last(interaction, "user", "There is nothing to redo yet.")
        await self._chat(interaction, question.content)

    async def _chat(self, interaction: discord.Interaction[Any], text: str) -> None:
        assert interaction.channel is not None
        await self.adapter._answer(interaction.channel,  # type: ignore[arg-type]
                                   interaction.user, text,
                                   guild_id=interaction.guild_id, interaction=interaction)

    async def _ideas(self, interaction: discord.Interaction[Any], action: str,
                     value: str) -> None:
        parts = value.split("|")
        genre, language, age = [*parts, "", "", ""][:3]
        genre, language, age = genre or "adventure", language or "en", age or "6-8"
        user = user_ref(interaction.user)
        ideas = await self.engine.stories.suggestions(user, genre, language, age,
                                                      refresh=action == "more")
        if action == "idea":
            n = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
            if n >= len(ideas):
                raise InputError("idea gone", user_message="That idea is gone; here are new "
                                                           "ones: press 💡.")
            await self.write_story(interaction, StoryRequest(
                genre=genre, language=language, age_group=age, prompt=ideas[n]))
            return
        await interaction.followup.send(f"💡 Ideas for a {genre} story (ages {age}):",
                                        view=ideas_view(ideas, genre, language, age))

    async def write_story(self, interaction: discord.Interaction[Any],
                          request: StoryRequest, *, photo: bytes | None = None) -> None:
        """Stream a new story (about ``photo``, when given) into follow-ups of the
        (deferred) interaction."""
        assert interaction.channel is not None
        view = self.adapter.view(interaction.channel,  # type: ignore[arg-type]
                                 None, interaction)
        await story_turn(self.engine, view, user_ref(interaction.user), request,
                         chat_key=chat_key(interaction.channel_id, interaction.guild_id),
                         photo=photo)

    async def show_history(self, interaction: discord.Interaction[Any], page: int,
                           search: str) -> None:
        groups = await self.engine.stories.history(user_ref(interaction.user), search=search)
        shown = history_embed(groups, page, search)
        if shown is None:
            await interaction.followup.send("No stories found." if search else
                                            "No stories yet. Try /story.", ephemeral=True)
            return
        embed, view = shown
        await interaction.followup.send(embed=embed, view=view)
