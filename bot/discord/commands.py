"""Slash commands. Each one defers at once (Discord wants an answer within 3 s), calls the
engine, then follows up; errors go to the adapter's one handler."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands

from bot.actions import HistoryPage, show_history, show_ideas
from bot.discord.components import ComponentHandler
from bot.discord.context import DiscordContext
from bot.discord.press import history_embed
from bot.discord.stream import Buttons, button
from bot.discord.users import chat_key, server_key, user_ref
from bot.memories import memories_text
from bot.ratings import stats_text
from bot.stories import StoryCommands, overlay
from bot.turn import IdeasFor, stop_turns
from bot.weblink import web_link_text
from engine.api import (
    AGE_GROUPS,
    GENRES,
    LANGUAGES,
    LENGTHS,
    InputError,
    NotAllowed,
    StoryRequest,
    dashboard_text,
)

Interaction = discord.Interaction[Any]

HELP = """\
**Talk to me** in a DM, or mention me in a server channel. Voice messages work too.
`/story` a children's story · `/ideas` story ideas for today · `/history` your stories
`/favourites` · `/prompts` saved story prompts · `/genres` your own genres
`/ask` ask the server's persona · `/persona` choose who you talk to
`/voice mode` text, voice or both · `/voice clone|list|use|delete` cloned voices (admins)
`/cancel` stop my reply · `/export` a copy of your data · `/forget` delete it all
I am an AI persona: a computer writes my replies, and my voice is AI-generated."""

AGES = [app_commands.Choice(name=f"ages {a}", value=a) for a in AGE_GROUPS]
LANGS = [app_commands.Choice(name=name, value=code) for code, name in LANGUAGES.items()]
SIZES = [app_commands.Choice(name=n, value=n) for n in LENGTHS]
MODES = [app_commands.Choice(name=m, value=m) for m in ("text", "voice", "both")]


def register(adapter: DiscordContext, components: ComponentHandler) -> None:
    """Add every slash command to ``adapter.tree``."""
    tree, engine = adapter.tree, adapter.engine

    async def defer(interaction: Interaction, *, ephemeral: bool = False) -> None:
        if not adapter.allowed(interaction.user, interaction.guild_id, interaction.channel):
            raise NotAllowed(user_message="I'm not allowed to answer you here.")
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)

    async def story_text(interaction: Interaction, name: str, arg: str) -> None:
        """Run a story text command shared with the console; reply with what it printed."""
        out: list[str] = []
        await StoryCommands(engine, user_ref(interaction.user), out.append).run(name, arg)
        await interaction.followup.send(("".join(out).strip() or "Done.")[:2000])

    @tree.command(name="help", description="What I can do")
    async def help_(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        await interaction.followup.send(HELP)

    @tree.command(name="story", description="Write a children's story")
    @app_commands.describe(genre="Kind of story (your own genres too)",
                           characters="Who is in it, e.g. Mia, a brave girl",
                           prompt="What happens, or @name of a saved prompt",
                           age="Age group", language="Language", length="How long",
                           photo="A photo: the story is about what it shows")
    @app_commands.choices(age=AGES, language=LANGS, length=SIZES)
    async def story(interaction: Interaction, genre: str = "adventure",
                    characters: str = "", prompt: str = "", age: str = "6-8",
                    language: str = "en", length: str = "short",
                    photo: discord.Attachment | None = None) -> None:
        await defer(interaction)
        request = StoryRequest(genre=genre, characters=characters, prompt=prompt,
                               age_group=age, language=language, length=length)
        if prompt.startswith("@"):  # a saved prompt; options given now win
            name, _, rest = prompt[1:].partition(" ")
            saved = await engine.stories.saved_prompt(user_ref(interaction.user), name)
            request = overlay(saved, replace(request, prompt=rest))
        await components.write_story(interaction, request,
                                     photo=await photo.read() if photo is not None else None)

    @story.autocomplete("genre")
    async def genre_choices(interaction: Interaction,
                            current: str) -> list[app_commands.Choice[str]]:
        names = [*GENRES, *await engine.stories.genre_names(user_ref(interaction.user))]
        return [app_commands.Choice(name=n, value=n) for n in names
                if current.lower() in n.lower()][:25]

    @tree.command(name="ideas", description="Story ideas for today")
    @app_commands.choices(age=AGES, language=LANGS)
    async def ideas(interaction: Interaction, genre: str = "adventure", age: str = "6-8",
                    language: str = "en") -> None:
        await defer(interaction)
        await show_ideas(engine, adapter.press_view(interaction), user_ref(interaction.user),
                         IdeasFor(genre, language, age))

    ideas.autocomplete("genre")(genre_choices)

    @tree.command(name="ask", description="Ask the persona something")
    @app_commands.describe(question="Your question")
    async def ask(interaction: Interaction,
                  question: app_commands.Range[str, 1, 4000]) -> None:
        await defer(interaction)
        await interaction.followup.send(f"**{interaction.user.display_name} asked:** "
                                        f"{question}"[:2000])
        assert interaction.channel is not None
        await adapter.answer(interaction.channel,  # type: ignore[arg-type]
                              interaction.user, question, guild_id=interaction.guild_id,
                              interaction=interaction)

    @tree.command(name="persona", description="Who you talk to (admins: for the server)")
    @app_commands.describe(name="Persona to talk to", server="Make it the server's persona")
    async def persona(interaction: Interaction, name: str = "", server: bool = False) -> None:
        await defer(interaction, ephemeral=True)
        user = user_ref(interaction.user)
        key = chat_key(interaction.channel_id, interaction.guild_id)
        if name and server:
            if not adapter.is_admin(interaction):
                raise NotAllowed(user_message="Only server admins can set the server's "
                                              "persona.")
            p = await engine.set_server_persona(server_key(interaction.guild_id), name)
            await interaction.followup.send(f"This server now talks to {p.display_name}.")
            return
        if name:
            p = await engine.set_persona(user, name, key)
            await interaction.followup.send(f"You are now talking to {p.display_name}. "
                                            f"{p.profile.greeting}".strip())
            return
        current = await adapter.persona_for(user, interaction.channel_id,
                                            interaction.guild_id)
        lines = [f"{'•' if p.name == current.name else '◦'} **{p.name}**: "
                 f"{p.display_name} - {p.profile.description}"
                 for p in engine.visible_personas(user, is_admin=adapter.is_admin(interaction))]
        await interaction.followup.send("\n".join(lines)[:2000])

    @persona.autocomplete("name")
    async def persona_choices(interaction: Interaction,
                              current: str) -> list[app_commands.Choice[str]]:
        visible = engine.visible_personas(user_ref(interaction.user),
                                          is_admin=adapter.is_admin(interaction))
        return [app_commands.Choice(name=f"{p.name} ({p.display_name})"[:100], value=p.name)
                for p in visible if current.lower() in p.name.lower()][:25]

    voice = app_commands.Group(name="voice", description="Voice replies and cloned voices")

    @voice.command(name="mode", description="Reply with text, voice messages, or both")
    @app_commands.choices(mode=MODES)
    async def voice_mode(interaction: Interaction, mode: str = "") -> None:
        await defer(interaction, ephemeral=True)
        user = user_ref(interaction.user)
        if mode:
            await engine.set_reply_mode(user, mode)
        await interaction.followup.send(f"I reply with: {await engine.reply_mode(user)}.")

    @voice.command(name="clone", description="Clone the persona's voice from 1-3 clips "
                                              "(admins)")
    @app_commands.describe(name="A name for the voice", consent=(
        "Full name of the person heard, who agreed to have their voice cloned"),
        clip1="6-30 s of them speaking", clip2="Another clip", clip3="Another clip")
    async def voice_clone(interaction: Interaction, name: str, consent: str,
                          clip1: discord.Attachment, clip2: discord.Attachment | None = None,
                          clip3: discord.Attachment | None = None) -> None:
        await defer(interaction, ephemeral=interaction.guild_id is not None)
        user = user_ref(interaction.user)
        persona = await adapter.persona_for(user, interaction.channel_id, interaction.guild_id)
        limit = engine.max_audio_mb * 1024 * 1024
        clips = []
        for clip in (clip1, clip2, clip3):
            if clip is None:
                continue
            if clip.size > limit:
                raise InputError("clip too large", user_message=f"{clip.filename} is too "
                                                                "large.")
            clips.append(await clip.read())
        done = await engine.voices.clone(user, persona, name, clips, consent,
                                         is_admin=adapter.is_admin(interaction))
        await interaction.followup.send(
            f"\"{done.voice.name}\" (`{done.voice.id}`) is now {persona.display_name}'s voice; "
            f"consent of {done.voice.consent_speaker} recorded. A sample follows.")
        await adapter.send_voice(interaction.channel_id or 0, done.sample)

    @voice.command(name="list", description="The persona's cloned voices")
    async def voice_list(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        persona = await adapter.persona_for(user_ref(interaction.user),
                                            interaction.channel_id, interaction.guild_id)
        listed = await engine.voices.list(persona)
        lines = [f"{'•' if v.active else '◦'} `{v.id}` {v.name}: {v.clips} clip(s), "
                 f"{v.seconds:.0f} s, consent of {v.consent_speaker}" for v in listed]
        await interaction.followup.send("\n".join(lines) if lines else
                                        f"{persona.display_name} has no cloned voice.")

    @voice.command(name="use", description="Speak in this cloned voice (admins)")
    async def voice_use(interaction: Interaction, voice_id: str) -> None:
        await defer(interaction, ephemeral=True)
        v = await engine.voices.use(user_ref(interaction.user), voice_id,
                                    is_admin=adapter.is_admin(interaction))
        await interaction.followup.send(f"Now speaking as \"{v.name}\".")

    @voice.command(name="delete", description="Delete a cloned voice and its clips (admins)")
    async def voice_delete(interaction: Interaction, voice_id: str) -> None:
        await defer(interaction, ephemeral=True)
        v = await engine.voices.delete(user_ref(interaction.user), voice_id,
                                       is_admin=adapter.is_admin(interaction))
        await interaction.followup.send(f"Deleted \"{v.name}\" with its clips.")

    tree.add_command(voice)

    @tree.command(name="history", description="Your stories by date, or search them")
    async def history(interaction: Interaction, search: str = "") -> None:
        await defer(interaction)
        await show_history(engine, adapter.press_view(interaction), user_ref(interaction.user),
                           0, search)

    @tree.command(name="favourites", description="Your favourite stories")
    async def favourites(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        records = await engine.stories.favourites(user_ref(interaction.user))
        if not records:
            await interaction.followup.send("No favourites yet: press ⭐ under a story.")
            return
        embed, view = history_embed(HistoryPage.of([("Favourites", records)], 0, ""),
                                    "Your favourites")
        await interaction.followup.send(embed=embed, view=view)

    @tree.command(name="prompts", description="Saved prompts: list, save NAME [options] "
                                              "[idea], delete NAME")
    async def prompts(interaction: Interaction, action: str = "") -> None:
        await defer(interaction, ephemeral=True)
        await story_text(interaction, "/prompt" if action else "/prompts", action)

    @tree.command(name="genres", description="Your genres: list, add NAME [description], "
                                             "remove NAME")
    async def genres(interaction: Interaction, action: str = "") -> None:
        await defer(interaction, ephemeral=True)
        await story_text(interaction, "/genre" if action else "/genres", action)

    @tree.command(name="cancel", description="Stop my reply")
    async def cancel(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        await interaction.followup.send(await stop_turns(engine, adapter.underway,
                                                         user_ref(interaction.user)))

    @tree.command(name="export", description="A copy of everything I stored about you")
    async def export(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        data = await engine.export(user_ref(interaction.user))
        await interaction.followup.send("Everything I store about you:", ephemeral=True,
                                        file=discord.File(io.BytesIO(data),
                                                          filename="doppel-export.zip"))

    @tree.command(name="achievements", description="Your stories, streaks and achievements")
    async def achievements(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        board = await engine.achievements.dashboard(user_ref(interaction.user))
        await interaction.followup.send(dashboard_text(board), ephemeral=True)

    @tree.command(name="web", description="A link that signs you in to the web app")
    async def web(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)  # only they see it, even in a server
        await interaction.followup.send(
            await web_link_text(engine, user_ref(interaction.user)), ephemeral=True)

    @tree.command(name="memories", description="What you told me about yourself")
    @app_commands.describe(forget="The number of one to forget (from the list)",
                           server="Everyone's in this server (server admins)")
    async def memories(interaction: Interaction, forget: int | None = None,
                       server: bool = False) -> None:
        await defer(interaction, ephemeral=True)
        user = user_ref(interaction.user)
        persona = await engine.current_persona(
            user, chat_key(interaction.channel_id, interaction.guild_id))
        arg = " ".join(filter(None, ("server" if server else "",
                                     f"forget {forget}" if forget is not None else "")))
        await interaction.followup.send(await memories_text(
            engine, user, persona, arg, place=server_key(interaction.guild_id),
            is_admin=adapter.is_admin(interaction)))

    @tree.command(name="stats", description="How replies and stories are rated (operator)")
    async def stats(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        await interaction.followup.send(await stats_text(engine, user_ref(interaction.user)))

    @tree.command(name="forget", description="Delete everything I stored about you")
    async def forget(interaction: Interaction) -> None:
        await defer(interaction, ephemeral=True)
        await interaction.followup.send(
            "This deletes all your messages, stories, favourites, saved prompts, genres, "
            "settings and the voices you cloned. Are you sure?",
            view=Buttons(button("Yes, forget me", "dp:forget:yes",
                                style=discord.ButtonStyle.danger),
                         button("No", "dp:forget:no")))
