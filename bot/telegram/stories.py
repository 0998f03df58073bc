"""Telegram story handlers: /story (with a keyboard flow), ideas, history pages, favourites,
saved prompts and genres. Used by :class:`bot.telegram.adapter.TelegramAdapter`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, PhotoSize, Update
from telegram.ext import ContextTypes

from bot.actions import ActionView, show_history, show_ideas
from bot.stories import StoryCommands, overlay, parse_request
from bot.telegram.settings import TelegramConfig
from bot.telegram.users import chat_key, user_ref
from bot.turn import IdeasFor, story_turn
from engine.api import (
    AGE_GROUPS,
    GENRES,
    LANGUAGES,
    LENGTHS,
    Engine,
    InputError,
    StoryRequest,
)

Context = ContextTypes.DEFAULT_TYPE


def largest(sizes: Sequence[PhotoSize]) -> PhotoSize:
    """The biggest of the sizes Telegram offers of a photo."""
    return max(sizes, key=lambda p: p.width * p.height)


class StoryHandlers:
    def __init__(self, engine: Engine, config: TelegramConfig,
                 view: Callable[[Update, Context], ActionView]) -> None:
        self.engine = engine
        self.config = config
        self.adapter_view = view

    async def story(self, update: Update, context: Context) -> None:
        msg = update.effective_message
        assert msg is not None
        if msg.reply_to_message is not None and msg.reply_to_message.photo:
            await self._photo_story(update, context, largest(msg.reply_to_message.photo),
                                    " ".join(context.args or []))  # /story in reply to a photo
            return
        if not context.args:
            await msg.reply_text("What kind of story?", reply_markup=self._genre_keyboard(
                await self.engine.stories.genre_names(user_ref(update))))
            return
        args = " ".join(context.args)
        req = parse_request(args)
        if args.startswith("@"):  # a saved prompt, options given now win
            name, _, rest = args[1:].partition(" ")
            saved = await self.engine.stories.saved_prompt(user_ref(update), name)
            req = overlay(saved, parse_request(rest))
        await self._write_story(update, context, req)

    def _genre_keyboard(self, custom: list[str]) -> InlineKeyboardMarkup:
        names = [*GENRES, *custom][:24]
        rows = [[InlineKeyboardButton(g, callback_data=f"sf|{g[:40]}") for g in names[i:i + 2]]
                for i in range(0, len(names), 2)]
        return InlineKeyboardMarkup(rows)

    async def photo_caption(self, update: Update, context: Context) -> None:
        """A photo captioned ``/story [options]``: a story about what the photo shows."""
        msg = update.effective_message
        assert msg is not None and msg.caption is not None
        args = msg.caption.split(maxsplit=1)[1] if len(msg.caption.split()) > 1 else ""
        await self._photo_story(update, context, largest(msg.photo), args)

    async def _photo_story(self, update: Update, context: Context, photo: PhotoSize,
                           args: str) -> None:
        data = await (await context.bot.get_file(photo.file_id)).download_as_bytearray()
        await self._write_story(update, context, parse_request(args), photo=bytes(data))

    async def _write_story(self, update: Update, context: Context, req: StoryRequest, *,
                           photo: bytes | None = None) -> None:
        await story_turn(self.engine, self.adapter_view(update, context), user_ref(update), req,
                         chat_key=chat_key(update), photo=photo)

    async def suggest(self, update: Update, context: Context) -> None:
        req = parse_request(" ".join(context.args or []))
        await show_ideas(self.engine, self.adapter_view(update, context), user_ref(update),
                         IdeasFor(req.genre, req.language, req.age_group))

    async def history(self, update: Update, context: Context) -> None:
        await show_history(self.engine, self.adapter_view(update, context), user_ref(update),
                           0, " ".join(context.args or []))

    async def favourites(self, update: Update, context: Context) -> None:
        records = await self.engine.stories.favourites(user_ref(update))
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "\n".join(f"⭐ #{r.id} {r.title}" for r in records) or
            "No favourites yet: press ⭐ under a story.")

    async def _text_command(self, update: Update, name: str, arg: str) -> None:
        """Run a story text command shared with the console; reply with what it printed."""
        out: list[str] = []
        await StoryCommands(self.engine, user_ref(update), out.append).run(name, arg)
        assert update.effective_message is not None
        await update.effective_message.reply_text("".join(out).strip() or "Done.")

    async def prompts(self, update: Update, context: Context) -> None:
        """/prompts, /prompts save NAME [options] [idea], /prompts delete NAME"""
        args = " ".join(context.args or [])
        await self._text_command(update, "/prompt" if args else "/prompts", args)

    async def genres(self, update: Update, context: Context) -> None:
        """/genres, /genres add NAME [description], /genres remove NAME"""
        args = " ".join(context.args or [])
        await self._text_command(update, "/genre" if args else "/genres", args)

    async def story_flow(self, update: Update, context: Context, value: str) -> None:
        parts = value.split("|")
        query = update.callback_query
        assert query is not None
        steps: list[tuple[str, list[str]]] = [("Which age group?", list(AGE_GROUPS)),
                                              ("Which language?", list(LANGUAGES)),
                                              ("How long?", list(LENGTHS))]
        if len(parts) <= len(steps):
            question, options = steps[len(parts) - 1]
            await query.edit_message_text(question, reply_markup=InlineKeyboardMarkup([[
                InlineKeyboardButton(o, callback_data=f"sf|{value}|{o}") for o in options]]))
            return
        if len(parts) != 4:
            raise InputError(f"bad story flow data {value!r}",
                             user_message="That button no longer works. Try /story again.")
        genre, age, lang, length = parts
        await query.edit_message_text(f"A {length} {genre} story for ages {age} ({lang}) ...")
        await self._write_story(update, context, StoryRequest(
            genre=genre, age_group=age, language=lang, length=length))
