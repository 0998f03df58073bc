"""Telegram adapter (python-telegram-bot 22): translates updates into engine calls.

Lifecycle is explicit (``initialize``/``start``/``updater.start_polling`` and back), so it
shares the process's one event loop with the other adapters.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest

from bot.actions import Action, Press, is_brief, press
from bot.memories import memories_text
from bot.ordering import LAST_WORDS_S
from bot.ratings import stats_text
from bot.telegram.buttons import TelegramPressView
from bot.telegram.settings import TelegramConfig
from bot.telegram.stories import StoryHandlers
from bot.telegram.stream import chat_action
from bot.telegram.updates import PLATFORM, DurableQueue, OrderedProcessor
from bot.telegram.users import chat_key, is_chat_admin, user_ref
from bot.telegram.voices import VoiceHandlers
from bot.turn import chat_turn, stop_turns
from bot.weblink import IN_PRIVATE, web_link_text
from engine.api import (
    DoppelError,
    Engine,
    InputError,
    SchedulerStopped,
    dashboard_text,
)

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
CAN_DO = ("I can chat by text or voice note, write stories (/story) and more: see /help.")
COMMANDS = [
    ("start", "Who I am, and how this works"),
    ("story", "Write a children's story: /story [genre=... age=...] [idea]"),
    ("suggest", "Five story ideas for today"),
    ("persona", "List personas or choose one: /persona NAME"),
    ("voice", "Reply mode (text, voice, both); clone a voice: /voice help"),
    ("history", "Your stories by date; /history WORD searches"),
    ("favourites", "Your favourite stories"),
    ("prompts", "Saved story prompts: /prompts save NAME [options] idea"),
    ("genres", "Story genres: /genres add NAME [description]"),
    ("ask", "Ask the persona in a group: /ask question"),
    ("cancel", "Stop what I'm writing for you"),
    ("memories", "What you told me about yourself; /memories forget N"),
    ("forget", "Delete everything stored about you"),
    ("export", "A copy of everything stored about you"),
    ("web", "A link that signs you in to the web app"),
    ("achievements", "Your stories, streaks and achievements"),
    ("help", "What I can do"),
]


class TelegramAdapter:
    name = "telegram"
    ends_run = False

    def __init__(self, engine: Engine, config: TelegramConfig, token: str, *,
                 request: BaseRequest | None = None,
                 updates_request: BaseRequest | None = None,
                 rate_limit: bool = True) -> None:
        self.engine = engine
        self.config = config
        self.processor = OrderedProcessor(engine.inbox)
        self.queue = DurableQueue(engine.inbox)
        builder = (Application.builder().token(token)
                   .update_queue(self.queue)
                   .concurrent_updates(self.processor))
        if config.api_base:  # a self-hosted Bot API server
            base = config.api_base.rstrip("/")
            builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
            builder = builder.local_mode(config.local_mode)
        if request is not None:
            builder = builder.request(request)
        if updates_request is not None:
            builder = builder.get_updates_request(updates_request)
        if rate_limit:  # paces calls and retries flood-wait (RetryAfter) errors
            builder = builder.rate_limiter(AIORateLimiter(max_retries=3))  # type: ignore[arg-type]
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._closed = asyncio.Event()
        self.stories = StoryHandlers(engine, config, self.view)
        self.voices = VoiceHandlers(engine)
        self._register()

    # -- lifecycle --------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        # New messages only: an edited message is not a new request.
        allowed: filters.BaseFilter = filters.UpdateType.MESSAGE
        if self.config.allowed_users:
            allowed = allowed & filters.User(user_id=list(self.config.allowed_users))
        if self.config.allowed_chats:
            allowed = allowed & filters.Chat(chat_id=list(self.config.allowed_chats))
        for name, handler in (
            ("start", self.start_cmd), ("help", self.start_cmd),
            ("story", self.stories.story), ("suggest", self.stories.suggest),
            ("persona", self.persona), ("voice", self.voices.command),
            ("history", self.stories.history), ("favourites", self.stories.favourites),
            ("favorites", self.stories.favourites), ("prompts", self.stories.prompts),
            ("genres", self.stories.genres), ("ask", self.ask), ("cancel", self.cancel),
            ("forget", self.forget), ("export", self.export), ("memories", self.memories),
            ("stats", self.stats), ("web", self.web), ("achievements", self.achievements),
        ):
            app.add_handler(CommandHandler(name, handler, filters=allowed))
        text = filters.TEXT & ~filters.COMMAND
        app.add_handler(MessageHandler(allowed & filters.ChatType.PRIVATE & text, self.text))
        # In groups only mentions of the bot and replies to it (privacy mode sends those).
        app.add_handler(MessageHandler(allowed & filters.ChatType.GROUPS & text,
                                       self.group_text))
        app.add_handler(MessageHandler(allowed & (filters.VOICE | filters.AUDIO), self.audio))
        app.add_handler(MessageHandler(allowed & filters.PHOTO & filters.CaptionRegex(
            r"^/story(@\w+)?(\s|$)"), self.stories.photo_caption))
        app.add_handler(MessageHandler(allowed & filters.COMMAND, self.unknown_command))
        # Photos, stickers, locations, files...: say what the bot can do (privately).
        app.add_handler(MessageHandler(allowed & filters.ChatType.PRIVATE, self.other))
        edited = filters.UpdateType.EDITED_MESSAGE & filters.ChatType.PRIVATE
        app.add_handler(MessageHandler(edited, self.edited))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_error_handler(self.on_error)

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        await self.app.start()
        await self._resume()
        assert self.app.updater is not None
        if self.config.mode == "webhook":
            await self.app.updater.start_webhook(
                listen=self.config.webhook_listen, port=self.config.webhook_port,
                webhook_url=self.config.webhook_url)
        else:
            await self.app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
        log.info("telegram: @%s is %s", self.app.bot.username, self.config.mode)

    async def _resume(self) -> None:
        """What the last run received and did not finish: handle what never started, tell
        the senders of what was cut off."""
        for item in await self.engine.inbox.unhandled(PLATFORM):
            if not item.started:
                log.info("handling update %s received before the restart", item.update_id)
                update = Update.de_json(json.loads(item.payload), self.app.bot)
                await self.queue.replay(update)
                continue
            if item.chat_id:
                try:
                    await self.app.bot.send_message(int(item.chat_id), (
                        f"Sorry, I restarted before I could answer \u201c{item.summary}"
                        "\u201d. Please send it again."))
                except Exception:  # the chat may be gone; nothing more to do for it
                    log.warning("could not tell chat %s about a lost update", item.chat_id)
            await self.engine.inbox.done(PLATFORM, item.update_id)

    async def pause(self) -> None:
        """Stop taking updates: fetching ends, nothing received starts any more (it waits in
        the inbox for the next start); running handlers go on."""
        self.processor.stopping = True
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()

    async def stop(self) -> None:
        await self.pause()
        running = set(self.processor.running)
        if running:  # the engine has ended their model work: they are sending last words
            _, late = await asyncio.wait(running, timeout=LAST_WORDS_S)
            for task in late:
                task.cancel()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def interrupt(self) -> bool:
        return False

    # -- the one error handler --------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        err = context.error
        if isinstance(err, SchedulerStopped) and isinstance(update, Update):
            self.processor.keep(update)  # answered after the restart; nothing to say now
            return
        if isinstance(err, DoppelError):
            text = err.user_message
        else:
            log.error("telegram update failed: %r", update, exc_info=err)
            text = "Sorry, something went wrong on my side. Please try again."
        if isinstance(update, Update) and update.effective_chat is not None:
            try:
                await context.bot.send_message(update.effective_chat.id, text)
            except Exception:  # the chat may be gone; the log has the details
                log.warning("could not tell chat %s about the error",
                            update.effective_chat.id)

    # -- chat -------------------------------------------------------------------------------

    async def start_cmd(self, update: Update, context: Context) -> None:
        user = user_ref(update)
        persona = await self.engine.current_persona(user, chat_key(update))
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            f"Hi {user.display_name}! I'm an AI persona of {persona.display_name}, not the "
            f"real person: a computer writes my replies. What you send is stored to keep our "
            f"conversation going.\n\n{persona.profile.greeting}\n\n"
            "Just write to me, or send a voice note. Commands:\n"
            + "\n".join(f"/{c} - {d}" for c, d in COMMANDS))

    async def text(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None and msg.text is not None
        await self._answer(update, context, msg.text)

    async def group_text(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None and msg.text is not None
        bot = context.bot
        replied_to_bot = (msg.reply_to_message is not None
                          and msg.reply_to_message.from_user is not None
                          and msg.reply_to_message.from_user.id == bot.id)
        mention = f"@{bot.username}"
        if not replied_to_bot and mention.lower() not in msg.text.lower():
            return
        await self._answer(update, context, msg.text.replace(mention, "").strip())

    async def ask(self, update: Update, context: Context) -> None:
        question = " ".join(context.args or [])
        if not question:
            raise InputError("no question", user_message="Ask me something: /ask question")
        await self._answer(update, context, question)

    def view(self, update: Update, context: Context) -> TelegramPressView:
        """The chat's view of a turn or a press (a button's callback query is answered)."""
        msg, chat = update.effective_message, update.effective_chat
        assert chat is not None
        from_button = update.callback_query is not None
        return TelegramPressView(
            context.bot, chat.id,
            reply_to=msg.message_id if msg is not None and not from_button else None,
            thread_id=msg.message_thread_id if msg is not None else None,
            interval_s=self.config.edit_interval_s,
            voice_caption=self.engine.voice_caption, query=update.callback_query)

    async def _answer(self, update: Update, context: Context, text: str, *,
                      spoken: bool = False) -> None:
        await chat_turn(self.engine, self.view(update, context), user_ref(update), text,
                        chat_key=chat_key(update), spoken=spoken)

    async def audio(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        media = msg.voice or msg.audio
        assert media is not None
        limit_mb = min(self.config.max_download_mb, self.engine.max_audio_mb)
        if (media.file_size or 0) > limit_mb * 1024 * 1024:
            raise InputError("file too big", user_message=(
                f"That file is over {limit_mb:g} MB, more than I can download and listen to."))
        if msg.chat.type != ChatType.PRIVATE and not (
                msg.reply_to_message and msg.reply_to_message.from_user
                and msg.reply_to_message.from_user.id == context.bot.id):
            return  # in groups, only voice replies to the bot
        async with chat_action(context.bot, msg.chat.id, ChatAction.TYPING):
            data = bytes(await (await media.get_file()).download_as_bytearray())
            if self.voices.collecting(update):  # a clip for a voice being cloned
                await self.voices.clip(update, data)
                return
            heard = await self.engine.transcribe(data, user=user_ref(update))
        await msg.reply_text(f"🎙 you said: {heard}")
        await self._answer(update, context, heard, spoken=True)

    async def unknown_command(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None and msg.text is not None
        name = msg.text.split(maxsplit=1)[0].split("@", 1)[0]
        if "@" in msg.text.split(maxsplit=1)[0] and not msg.text.split(maxsplit=1)[0].lower(
                ).endswith(f"@{(context.bot.username or '').lower()}"):
            return  # a command for another bot in the group
        await msg.reply_text(f"I don't know {name}. {CAN_DO}")

    async def other(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        if msg is None:
            return
        what = ("photos" if msg.photo else "stickers" if msg.sticker else
                "locations" if msg.location or msg.venue else
                "files" if msg.document else "that kind of message")
        await msg.reply_text(f"I can't read {what} yet. {CAN_DO}")

    async def edited(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        if msg is not None:
            await msg.reply_text("I only see new messages: send your change as a new one "
                                 "and I'll answer it.")

    async def cancel(self, update: Update, context: Context) -> None:
        said = await stop_turns(self.engine, self.processor.underway, user_ref(update))
        assert update.effective_message is not None
        await update.effective_message.reply_text(said)

    async def forget(self, update: Update, context: Context) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "This deletes all your messages, stories, favourites, saved prompts, genres, "
            "settings and the voices you cloned. Are you sure?",
            reply_markup=InlineKeyboardMarkup([[
                InlineKeyboardButton("Yes, forget me", callback_data="forget|yes"),
                InlineKeyboardButton("No", callback_data="forget|no")]]))

    async def export(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        if msg.chat.type != ChatType.PRIVATE:
            await msg.reply_text("Send /export in a private chat with me: it is your data.")
            return
        data = await self.engine.export(user_ref(update))
        await msg.reply_document(data, filename="doppel-export.zip",
                                 caption="Everything I store about you.")

    async def achievements(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        board = await self.engine.achievements.dashboard(user_ref(update))
        await msg.reply_text(dashboard_text(board))

    async def web(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        if msg.chat.type != ChatType.PRIVATE:
            await msg.reply_text(IN_PRIVATE)
            return
        await msg.reply_text(await web_link_text(self.engine, user_ref(update)),
                             disable_web_page_preview=True)

    async def memories(self, update: Update, context: Context) -> None:
        user, msg = user_ref(update), update.effective_message
        assert msg is not None
        place = chat_key(update)
        persona = await self.engine.current_persona(user, place)
        arg = " ".join(context.args or [])
        admin = arg.lower().startswith("server") and await is_chat_admin(update, context)
        await msg.reply_text(await memories_text(self.engine, user, persona, arg, place=place,
                                                 is_admin=admin))

    async def stats(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        await msg.reply_text(await stats_text(self.engine, user_ref(update)))

    async def persona(self, update: Update, context: Context) -> None:
        user, msg = user_ref(update), update.effective_message
        assert msg is not None
        if context.args:
            p = await self.engine.set_persona(user, " ".join(context.args), chat_key(update))
            await msg.reply_text(f"You are now talking to {p.display_name}. "
                                 f"{p.profile.greeting}")
            return
        current = await self.engine.current_persona(user, chat_key(update))
        lines = [f"{'•' if p.name == current.name else '◦'} {p.name}: {p.display_name} - "
                 f"{p.profile.description}" for p in self.engine.visible_personas(user)]
        await msg.reply_text("\n".join(lines) + "\n\nChoose with /persona NAME")

    # -- buttons ----------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        """A button pressed: the action is ``bot.actions``' (the /story keyboard's own)."""
        query = update.callback_query
        assert query is not None
        action, _, value = (query.data or "").partition("|")
        view = self.view(update, context)
        own = {"sf": Action(lambda _e, _v, p: self.stories.story_flow(update, context, p.value))}
        if not is_brief(action, own):  # stop the button spinning while it runs
            await view.acknowledge()
        try:
            await press(self.engine, view, Press(user_ref(update), action, value,
                                                 chat_key=chat_key(update)), own)
        finally:
            await view.acknowledge()
