"""Telegram adapter (python-telegram-bot 22): translates updates into engine calls.

Lifecycle is explicit (``initialize``/``start``/``updater.start_polling`` and back), so it
shares the process's one event loop with the other adapters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
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

from bot.pacing import reply_body, stream_reply
from bot.telegram.stories import StoryHandlers
from bot.telegram.stream import StreamedReply, chat_action
from bot.telegram.users import chat_key, user_ref
from bot.telegram.voices import VoiceHandlers
from engine.config import TelegramConfig
from engine.engine import Engine
from engine.errors import DoppelError, InputError

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
MAX_DOWNLOAD = 20 * 1024 * 1024  # Bot API getFile limit
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
    ("forget", "Delete everything stored about you"),
    ("export", "A copy of everything stored about you"),
    ("help", "What I can do"),
]


class TelegramAdapter:
    name = "telegram"

    def __init__(self, engine: Engine, config: TelegramConfig, token: str, *,
                 request: BaseRequest | None = None,
                 updates_request: BaseRequest | None = None,
                 rate_limit: bool = True) -> None:
        self.engine = engine
        self.config = config
        builder = Application.builder().token(token)
        if request is not None:
            builder = builder.request(request)
        if updates_request is not None:
            builder = builder.get_updates_request(updates_request)
        if rate_limit:  # paces calls and retries flood-wait (RetryAfter) errors
            builder = builder.rate_limiter(AIORateLimiter(max_retries=3))  # type: ignore[arg-type]
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._closed = asyncio.Event()
        self.stories = StoryHandlers(engine, config)
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
            ("forget", self.forget), ("export", self.export),
        ):
            app.add_handler(CommandHandler(name, handler, filters=allowed))
        text = filters.TEXT & ~filters.COMMAND
        app.add_handler(MessageHandler(allowed & filters.ChatType.PRIVATE & text, self.text))
        # In groups only mentions of the bot and replies to it (privacy mode sends those).
        app.add_handler(MessageHandler(allowed & filters.ChatType.GROUPS & text,
                                       self.group_text))
        app.add_handler(MessageHandler(allowed & (filters.VOICE | filters.AUDIO), self.audio))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_error_handler(self.on_error)

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        await self.app.start()
        assert self.app.updater is not None
        if self.config.mode == "webhook":
            await self.app.updater.start_webhook(
                listen=self.config.webhook_listen, port=self.config.webhook_port,
                webhook_url=self.config.webhook_url)
        else:
            await self.app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
        log.info("telegram: @%s is %s", self.app.bot.username, self.config.mode)

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
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

    async def _answer(self, update: Update, context: Context, text: str, *,
                      spoken: bool = False) -> None:
        msg, chat = update.effective_message, update.effective_chat
        assert msg is not None and chat is not None
        user = user_ref(update)
        waiting: list[Message] = []

        def position(n: int) -> None:
            async def tell() -> None:
                waiting.append(await context.bot.send_message(chat.id, f"You are #{n} in line."))
            asyncio.get_running_loop().create_task(tell())

        reply = await self.engine.chat(user, text, chat_key=chat_key(update),
                                       on_position=position)
        mode = await self.engine.reply_mode(user)
        speak = spoken or mode != "text"
        out = StreamedReply(context.bot, chat.id, reply_to=msg.message_id,
                            interval_s=self.config.edit_interval_s,
                            thread_id=msg.message_thread_id,
                            prefix=f"🤖 {reply.disclosure}\n\n" if reply.disclosure else "")
        action = ChatAction.RECORD_VOICE if speak and mode == "voice" else ChatAction.TYPING
        async with chat_action(context.bot, chat.id, action):
            result, note = await stream_reply(self.engine, reply, out, speak=speak,
                                              voice_only=mode == "voice", user_key=user.key)
        for m in waiting:
            await m.delete()
        text_out = reply_body(result)
        row = [InlineKeyboardButton("🔁 Again", callback_data="regen"),
               InlineKeyboardButton("🔊 Read aloud", callback_data="say")]
        if result.message_id is not None:
            row.insert(0, InlineKeyboardButton("⭐", callback_data=f"favmsg|{result.message_id}"))
        buttons = InlineKeyboardMarkup([row])
        if mode != "voice" or note is None:
            await out.finish(text_out, buttons)
        if note is not None:
            await self._send_voice(context, chat.id, note.ogg, note.duration_s)

    async def _send_voice(self, context: Context, chat_id: int, ogg: bytes,
                          duration: float) -> None:
        caption = self.engine.config.voice.disclosure or None
        await context.bot.send_voice(chat_id, voice=ogg, duration=max(1, round(duration)),
                                     caption=caption)

    async def audio(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        media = msg.voice or msg.audio
        assert media is not None
        if (media.file_size or 0) > MAX_DOWNLOAD:
            raise InputError("file too big", user_message="That file is over 20 MB, more than "
                                                          "Telegram lets me download.")
        if msg.chat.type != ChatType.PRIVATE and not (
                msg.reply_to_message and msg.reply_to_message.from_user
                and msg.reply_to_message.from_user.id == context.bot.id):
            return  # in groups, only voice replies to the bot
        async with chat_action(context.bot, msg.chat.id, ChatAction.TYPING):
            data = bytes(await (await media.get_file()).download_as_bytearray())
            if self.voices.collecting(update):  # a clip for a voice being cloned
                await self.voices.clip(update, data)
                return
            heard = await self.engine.voice.transcribe(data, user=user_ref(update).key)
        await msg.reply_text(f"🎙 you said: {heard}")
        await self._answer(update, context, heard, spoken=True)

    async def cancel(self, update: Update, context: Context) -> None:
        n = self.engine.cancel(user_ref(update))
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            f"Stopped {n} request(s)." if n else "Nothing to stop.")

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
        query = update.callback_query
        assert query is not None and query.data is not None
        user = user_ref(update)
        action, _, value = query.data.partition("|")
        if action != "favmsg":
            await query.answer()
        if action == "sf":  # the /story flow: genre, then age, language, length
            await self.stories.story_flow(update, context, value)
        elif action == "fav":
            record = await self.engine.stories.favourite(user, int(value))
            await context.bot.send_message(query.message.chat.id if query.message else
                                           user.user_id, f"⭐ Saved \"{record.title}\".")
        elif action == "favmsg":
            await self.engine.favourite_message(user, int(value))
            await query.answer("⭐ Saved to your favourites")
        elif action == "narrate":
            assert update.effective_chat is not None
            for part in await self.engine.stories.narrate(user, int(value)):
                await self._send_voice(context, update.effective_chat.id, part.ogg,
                                       part.duration_s)
        elif action == "open":
            r = await self.engine.stories.open(user, int(value))
            assert update.effective_chat is not None
            await StreamedReply(context.bot, update.effective_chat.id).finish(
                f"{r.title}\n\n{r.content}", InlineKeyboardMarkup([[
                    InlineKeyboardButton("⭐ Favourite", callback_data=f"fav|{r.id}"),
                    InlineKeyboardButton("🔊 Read aloud", callback_data=f"narrate|{r.id}")]]))
        elif action == "hp":
            await self.stories.history_page(update, context, int(value))
        elif action in ("ideas", "more", "idea"):
            await self.stories.ideas_button(update, context, action, value)
        elif action == "forget":
            if value == "yes":
                await self.engine.forget(user)
            assert query.message is not None
            await query.edit_message_text("Done: I have forgotten everything about you."
                                          if value == "yes" else "Nothing was deleted.")
        elif action in ("regen", "say"):
            await self._reply_button(update, context, action)

    async def _reply_button(self, update: Update, context: Context, action: str) -> None:
        user = user_ref(update)
        history = await self.engine.history(user, chat_key=chat_key(update), limit=2)
        if action == "say":
            last = next((m for m in reversed(history) if m.role == "assistant"), None)
            if last is None:
                raise InputError("nothing to say", user_message="There is no reply to read.")
            persona = await self.engine.current_persona(user, chat_key(update))
            note = await self.engine.voice.speak(last.content, user=user.key, persona=persona)
            assert update.effective_chat is not None
            await self._send_voice(context, update.effective_chat.id, note.ogg,
                                   note.duration_s)
            return
        question = next((m for m in reversed(history) if m.role == "user"), None)
        if question is None:
            raise InputError("nothing to redo", user_message="There is nothing to redo yet.")
        await self._answer(update, context, question.content)
