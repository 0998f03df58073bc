"""The Discord adapter: translates messages, slash commands and button clicks into engine
calls, and the engine's replies into Discord messages. It decides nothing itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import discord
import yarl
from discord import app_commands

from bot.discord import commands
from bot.discord.components import ComponentHandler
from bot.discord.press import DiscordPressView
from bot.discord.settings import DiscordConfig
from bot.discord.stream import DiscordTurnView, connection_gone
from bot.discord.threads import PersonaThreads
from bot.discord.users import chat_key, server_key, user_ref
from bot.discord.voice import send_voice_message
from bot.discord.webhooks import NEEDS_PERMISSION, PersonaWebhooks
from bot.ordering import LAST_WORDS_S, ChatOrder, Underway
from bot.turn import chat_turn
from engine.api import (
    DoppelError,
    Engine,
    InputError,
    NotAllowed,
    UserRef,
    VoiceNote,
)

log = logging.getLogger(__name__)

AUDIO_TYPES = ("audio/", "video/ogg")
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".mp3", ".m4a", ".wav", ".webm", ".aac", ".flac")
SORRY = "Sorry, something went wrong on my side. Please try again."


class DiscordAdapter:
    name = "discord"
    ends_run = False

    def __init__(self, engine: Engine, config: DiscordConfig, token: str, *,
                 connect: bool = True) -> None:
        """``connect=False`` logs in over HTTP but opens no gateway connection (tests feed
        gateway payloads to the client's own parsers instead)."""
        self.engine = engine
        self.config = config
        if config.api_base:  # discord.py keeps the base URL on a class: one client a process
            discord.http.Route.BASE = config.api_base.rstrip("/")
        if config.gateway_url:  # likewise the gateway's (a gateway proxy)
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)
        self._token = token
        self._connect = connect
        intents = discord.Intents.default()
        intents.message_content = config.message_content
        client_class = discord.AutoShardedClient if config.sharded else discord.Client
        # Doppel sends voice *messages* (files), never joins voice channels: no PyNaCl needed.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        # What the persona sends never pings anyone but the person it answers: not
        # @everyone or @here, no role, no user a stored fact or an echoed name names.
        self.client: discord.Client = client_class(
            intents=intents, allowed_mentions=discord.AllowedMentions(
                everyone=False, roles=False, users=False, replied_user=True))
        self.tree = app_commands.CommandTree(self.client)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        self.client.setup_hook = self._setup_hook  # type: ignore[method-assign]
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self.client.on_error = self.on_event_error  # type: ignore[method-assign]
        self.components = ComponentHandler(self)
        self.webhooks = PersonaWebhooks(self.client)
        self.threads = PersonaThreads(self.client)
        self.order = ChatOrder()
        self.underway = Underway()
        self.stopping = False
        commands.register(self, self.components)
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def _setup_hook(self) -> None:
        if self.config.sync_commands:
            synced = await self.tree.sync()
            log.info("Discord: %d slash commands registered", len(synced))

    async def start(self) -> None:
        await self.client.login(self._token)
        if self._connect:
            self._task = asyncio.create_task(self._run(), name="doppel-discord")
        user = self.client.user
        log.info("Discord: logged in as %s (%s)", user, user.id if user else "?")

    async def _run(self) -> None:
        self.underway.track()  # every event's task copies this task's context
        try:
            await self.client.connect(reconnect=True)
        except discord.LoginFailure:
            log.error("Discord refused the token in %s", self.config.token_env)
        except Exception:
            log.exception("Discord connection ended with an error")
        finally:
            self._closed.set()

    async def pause(self) -> None:
        """New messages are answered with "restarting" from now on; running turns go on."""
        self.stopping = True

    async def stop(self) -> None:
        self.stopping = True
        # The engine has ended their model work: their last words (the text so far, the
        # buttons, why it stopped) go out before the connection closes.
        await self.underway.ended(LAST_WORDS_S)
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def interrupt(self) -> bool:
        return False

    # -- who may ----------------------------------------------------------------------------

    def allowed(self, user: discord.abc.User, guild_id: int | None,
                channel: object = None) -> bool:
        cfg = self.config
        if cfg.allowed_users and user.id not in cfg.allowed_users:
            return False
        if guild_id is not None and cfg.allowed_guilds and guild_id not in cfg.allowed_guilds:
            return False
        if guild_id is not None and cfg.allowed_channels and channel is not None:
            ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
            return bool(ids & set(cfg.allowed_channels))
        return True

    def is_admin(self, interaction: discord.Interaction[Any]) -> bool:
        """Server admins: Manage Server permission (as the interaction carries it), or the
        configured admin role."""
        member = interaction.user
        if interaction.guild_id is None or not isinstance(member, discord.Member):
            return False
        if interaction.permissions.manage_guild:
            return True
        role = self.config.admin_role
        return bool(role) and any(r.name == role or str(r.id) == role for r in member.roles)

    # -- errors: one handler for events, commands and components ----------------------------

    async def report(self, interaction: discord.Interaction[Any], error: BaseException) -> None:
        """Log the failure and tell the user in one short line (ephemeral in servers)."""
        if isinstance(error, app_commands.CommandInvokeError):
            error = error.original
        if isinstance(error, DoppelError):
            text = error.user_message
        elif isinstance(error, app_commands.CommandNotFound):
            text = "I don't know that command (any more). Try /help."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You can't use that here."
        else:
            log.error("Discord interaction %s failed (user %s, data %r)", interaction.id,
                      interaction.user.id, interaction.data, exc_info=error)
            text = SORRY
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=interaction.guild_id is not None)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell user %s about the error", interaction.user.id)

    async def on_app_command_error(self, interaction: discord.Interaction[Any],
                                   error: app_commands.AppCommandError) -> None:
        await self.report(interaction, error)

    async def on_event_error(self, event: str, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        message = args[0] if args and isinstance(args[0], discord.Message) else None
        if error is not None and connection_gone(error):  # shutting down: nothing to tell
            log.warning("Discord event %s ended with the connection closed: %s", event, error)
            return
        if isinstance(error, DoppelError) and message is not None:
            text = error.user_message
        else:
            log.error("Discord event %s failed: %r", event, args, exc_info=error)
            text = SORRY
        if message is not None:
            with contextlib.suppress(discord.HTTPException):
                await message.channel.send(text)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Button clicks and select menus (slash commands go to the command tree)."""
        if interaction.type != discord.InteractionType.component:
            return
        try:
            if not self.allowed(interaction.user, interaction.guild_id, interaction.channel):
                raise NotAllowed(user_message="I'm not allowed to answer you here.")
            await self.components.handle(interaction)
        except Exception as exc:
            await self.report(interaction, exc)

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """Messages of one channel are taken in order, channels at once (``ChatOrder``)."""
        me = self.client.user
        if message.author.bot or me is None or message.author.id == me.id:
            return
        if self.stopping:
            with contextlib.suppress(discord.HTTPException):
                await message.reply("I'm restarting; please send that again in a minute.",
                                    mention_author=False)
            return
        await self.order.run(str(message.channel.id), self._message(message, me))

    async def _message(self, message: discord.Message, me: discord.ClientUser) -> None:
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        # An uncached server's channel is a PartialMessageable that still knows its guild.
        guild_id = message.guild.id if message.guild else getattr(message.channel, "guild_id",
                                                                  None)
        if not self.allowed(message.author, guild_id, message.channel):
            return
        if guild_id is None:  # a DM: everything goes to the persona
            audio = next((a for a in message.attachments if is_audio(a)), None)
            if audio is not None:
                await self._voice_in(message, audio)
            elif message.content.strip():
                await self.answer(message.channel, message.author, message.content,
                                   reply_to=message)
            return
        replied_to_me = (message.reference is not None
                         and isinstance(message.reference.resolved, discord.Message)
                         and message.reference.resolved.author.id == me.id)
        parent = self.threads.parent_of(message.channel, me)
        if parent is None and not replied_to_me and me not in message.mentions:
            return  # in servers: mentions of the bot, replies to it, and its own threads
        text = message.content.replace(f"<@{me.id}>", "").replace(f"<@!{me.id}>", "").strip()
        if not text:
            persona = await self.persona_for(user_ref(message.author), message.channel.id,
                                             guild_id)
            await message.reply(f"Hi! I'm an AI persona of {persona.display_name}. Mention me "
                                f"with a question, or try /story.", mention_author=False)
            return
        await self.answer(message.channel, message.author, text, reply_to=message,
                           guild_id=guild_id, thread_of=parent)

    async def _voice_in(self, message: discord.Message, audio: discord.Attachment) -> None:
        limit_mb = self.engine.max_audio_mb
        if audio.size > limit_mb * 1024 * 1024:
            raise InputError("attachment too large", user_message=(
                f"That audio file is over {limit_mb:g} MB, more than I can listen to."))
        user = user_ref(message.author)
        async with message.channel.typing():
            data = await audio.read()
            heard = await self.engine.transcribe(data, user=user)
        await message.reply(f"🎙 you said: {heard}", mention_author=False)
        await self.answer(message.channel, message.author, heard, spoken=True)

    async def persona_for(self, user: UserRef, channel_id: int | None,
                          guild_id: int | None) -> Any:
        return await self.engine.current_persona(user, chat_key(channel_id, guild_id),
                                                 server=server_key(guild_id))

    def view(self, channel: discord.abc.Messageable, reply_to: discord.Message | None = None,
             interaction: discord.Interaction[Any] | None = None, *,
             webhook: discord.Webhook | None = None,
             thread: discord.abc.Snowflake | None = None) -> DiscordTurnView:
        channel_id = getattr(channel, "id", None)

        async def voice(note: VoiceNote) -> None:
            if channel_id is not None:
                await self.send_voice(channel_id, note)

        return DiscordTurnView(channel, self.sender(channel, reply_to, interaction, webhook,
                                                    thread),
                               send_voice=voice, interval_s=self.config.edit_interval_s,
                               voice_caption=self.engine.voice_caption)

    def press_view(self, interaction: discord.Interaction[Any], *,
                   brief: bool = False) -> DiscordPressView:
        """Follow-ups of ``interaction`` (a press, or a command showing ideas or stories)."""
        channel = interaction.channel
        channel_id = interaction.channel_id

        async def voice(note: VoiceNote) -> None:
            if channel_id is not None:
                await self.send_voice(channel_id, note)

        return DiscordPressView(channel, self.sender(channel, None, interaction),  # type: ignore[arg-type]
                                send_voice=voice, interval_s=self.config.edit_interval_s,
                                voice_caption=self.engine.voice_caption,
                                interaction=interaction, brief=brief)

    async def answer(self, channel: discord.abc.Messageable, author: discord.abc.User,
                      text: str, *, reply_to: discord.Message | None = None,
                      guild_id: int | None = None, spoken: bool = False,
                      interaction: discord.Interaction[Any] | None = None,
                      thread_of: int | None = None) -> None:
        """Chat: stream the persona's reply into ``channel`` (as follow-ups of a deferred
        ``interaction`` when there is one), with a voice message when the mode says so.
        ``thread_of``: ``channel`` is the persona's thread in that channel (whose
        conversation it continues); a long exchange in a channel moves to a new one."""
        user = user_ref(author)
        channel_id = getattr(channel, "id", None)
        home = thread_of or channel_id  # the channel whose conversation this is
        persona = await self.persona_for(user, home, guild_id)
        key = chat_key(home, guild_id)
        shared = guild_id is not None and interaction is None and home is not None
        after = self.config.thread_after
        if (shared and thread_of is None and after and reply_to is not None
                and await self.engine.said_so_far(user, chat_key=key, persona=persona.name)
                + 1 >= after):
            thread = await self.threads.open(
                reply_to, guild_id or 0, f"{persona.display_name} and {author.display_name}")
            if thread is not None:
                channel, reply_to, thread_of = thread, None, home
        hook, refused = None, False
        if self.config.persona_webhooks and shared and home is not None:
            hook, refused = await self.webhooks.get(home, persona)
        view = self.view(channel, reply_to, interaction, webhook=hook,
                         thread=discord.Object(getattr(channel, "id", 0))
                         if thread_of is not None else None)
        await chat_turn(self.engine, view, user, text, chat_key=key,
                        server=server_key(guild_id), persona=persona.name, spoken=spoken)
        if refused and guild_id is not None and guild_id not in self.webhooks.told:
            self.webhooks.told.add(guild_id)  # once a server (and a run)
            await channel.send(NEEDS_PERMISSION.format(name=persona.display_name))

    def sender(self, channel: discord.abc.Messageable, reply_to: discord.Message | None,
               interaction: discord.Interaction[Any] | None,
               webhook: discord.Webhook | None = None,
               thread: discord.abc.Snowflake | None = None) -> Any:
        """How a streamed reply posts its messages: follow-ups of the interaction, the
        persona's own webhook (into ``thread`` when the channel is the persona's thread),
        or a reply to the message and then plain messages in the channel."""
        first = [True]

        async def send(text: str, view: discord.ui.View | None, **extra: Any) -> Any:
            kwargs: dict[str, Any] = {"view": view} if view is not None else {}
            kwargs.update(extra)
            if interaction is not None:
                return await interaction.followup.send(text, wait=True, **kwargs)
            if webhook is not None:
                if thread is not None:
                    kwargs["thread"] = thread
                return await webhook.send(text, wait=True, **kwargs)
            if reply_to is not None and first[0]:
                first[0] = False
                return await reply_to.reply(text, mention_author=False, **kwargs)
            return await channel.send(text, **kwargs)

        return send

    async def send_voice(self, channel_id: int, note: VoiceNote) -> None:
        await send_voice_message(self.client.http, channel_id, note,
                                 caption=self.engine.voice_caption)


def is_audio(attachment: discord.Attachment) -> bool:
    return attachment.is_voice_message() or (attachment.content_type or "").startswith(
        AUDIO_TYPES) or attachment.filename.lower().endswith(AUDIO_SUFFIXES)
