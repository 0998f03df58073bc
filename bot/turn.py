"""One chat turn, the same on every platform: the driver owns the choreography, each
adapter only renders it.

The driver shows activity at once, tells a queued person their place in line, paces the
growing reply (the first visible text is a whole sentence or a clause of real length, never
a fragment a phone would show as the notification), speaks it sentence by sentence when the
reply mode says so, and finishes with the text split for the platform, the sources, a note
when the model ran out of room, and the buttons. Adapters implement ``TurnView``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bot.ordering import LAST_WORDS_S, Underway, admitted, turn_of
from engine.api import (
    ChatReply,
    ChatResult,
    DoppelError,
    Engine,
    InputError,
    Picture,
    SchedulerStopped,
    StoryRecord,
    StoryRequest,
    UserRef,
    VoiceNote,
)

log = logging.getLogger(__name__)

MIN_FIRST_CHARS = 24
"""The first text shown is at least this long (or the whole reply)."""
_BOUND = re.compile(r"[.!?।…;:,)\n](?=\s)")
_BOUND_AT_END = re.compile(r"[.!?।…;:,)]\s*$")
PAUSE_S = 0.5
"""A reply that sends nothing for this long (or the view's interval, if longer) pauses."""
TRUNCATED_NOTE = "(I ran out of room there; ⏩ Continue for more.)"


@dataclass(frozen=True)
class Button:
    """A platform-free button; adapters draw it and route ``data`` back to the engine."""

    label: str
    action: str
    value: str = ""

    @property
    def data(self) -> str:
        return f"{self.action}|{self.value}" if self.value else self.action


class TurnView(Protocol):
    """How one platform renders a turn."""

    interval_s: float
    """Edits of the growing reply at most this often (0: every piece, as a terminal can)."""

    async def queued(self, position: int) -> None:
        """Show (or update) "You are #N in line"."""

    async def dequeued(self) -> None:
        """The reply has started: remove the place-in-line notice."""

    def activity(self, voice: bool) -> AbstractAsyncContextManager[None]:
        """Keep "typing…" (or "recording a voice message…") visible while the body runs."""

    async def show(self, text: str) -> None:
        """The reply so far (already paced by the driver)."""

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        """The final text (split for the platform by the adapter) with its buttons."""

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        """Send the reply as a voice message (``buttons`` only when no text carries them)."""

    def title(self, text: str) -> str:
        """A story's title as the platform emphasises it."""

    async def pictures(self, pictures: Sequence[Picture]) -> None:
        """A story's pictures, cover first, each with its caption."""


def first_visible(text: str, *, paused: bool = False) -> str | None:
    """The first text worth showing: up to the last sentence or clause end, once that is
    at least ``MIN_FIRST_CHARS`` long; None while there is no such bound yet. ``paused``:
    the reply stopped coming for now, so a sentence or clause end that ends ``text`` counts
    too (a model thinking after its first sentence still shows it)."""
    ends = [m.end() for m in _BOUND.finditer(text)]
    if paused and _BOUND_AT_END.search(text):
        ends.append(len(text.rstrip()))
    return text[: ends[-1]] if ends and ends[-1] >= MIN_FIRST_CHARS else None


def reply_body(result: ChatResult) -> str:
    """A finished chat reply as shown: its text, why it ended early, its sources."""
    body = result.text or ""
    if result.truncated:
        body += "\n\n" + TRUNCATED_NOTE
    if result.error is not None:
        body = (body + "\n\n" if body else "") + result.error.user_message
    if result.sources:
        body += "\n\n" + "\n".join(h.citation(n) for n, h in enumerate(result.sources, 1))
    return body


def reply_buttons(result: ChatResult) -> list[Button]:
    buttons = [Button("🔁 Again", "regen"), Button("🔊 Read aloud", "say")]
    if result.message_id is not None:
        buttons.insert(0, Button("⭐", "favmsg", str(result.message_id)))
        buttons += rating_buttons(f"reply:{result.message_id}")
    if result.truncated:
        buttons.append(Button("⏩ Continue", "continue"))
    return buttons


CONTINUE_PROMPT = "Please go on."


def button_number(value: str) -> int:
    """The id a button carries; bad data (forged, or from an old version) gets one line."""
    try:
        return int(value)
    except ValueError:
        raise InputError(f"bad button data {value!r}",
                         user_message="That button no longer works.") from None


class _Positions:
    """Place-in-line updates from the scheduler (a plain callback), shown in order."""

    def __init__(self, view: TurnView) -> None:
        self.view = view
        self.latest: int | None = None
        self.shown = False
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def __call__(self, position: int) -> None:
        if self.closed:  # the reply has started (or ended): no notice any more
            return
        self.latest = position
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._show())

    async def _show(self) -> None:
        while self.latest is not None:
            n, self.latest = self.latest, None
            try:
                await self.view.queued(n)
                self.shown = True
            except Exception:  # a notice that cannot be shown must not end the turn
                log.warning("could not show the place in line", exc_info=True)

    async def close(self) -> None:
        self.closed = True
        self.latest = None
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self.shown:
            self.shown = False
            try:
                await self.view.dequeued()
            except Exception:
                log.warning("could not remove the place-in-line notice", exc_info=True)


async def paced(source: AsyncIterable[str], view: TurnView, *, prefix: str = "",
                on_first: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[str]:
    """Pass the pieces through, showing the growing text in ``view`` on the way: the first
    time once it has a whole clause (``first_visible``), then at most every
    ``view.interval_s``; and whenever the reply pauses that long (at least ``PAUSE_S``),
    what it has so far.
    ``on_first`` runs when the first piece arrives."""
    text, shown, last = "", "", 0.0
    pieces = aiter(source)

    async def show(paused: bool) -> None:
        nonlocal shown, last
        head = text if shown else first_visible(text, paused=paused)
        if head is not None and head != shown:
            await view.show(prefix + head)
            shown, last = head, time.monotonic()

    pause_s = max(view.interval_s, PAUSE_S)
    while True:
        step = asyncio.ensure_future(anext(pieces))
        try:
            while not (await asyncio.wait({step}, timeout=pause_s))[0]:
                await show(paused=True)  # nothing new for a while: show what there is
        except BaseException:
            step.cancel()
            raise
        try:
            piece = step.result()
        except StopAsyncIteration:
            return
        if not text and on_first is not None:
            await on_first()
        text += piece
        yield piece
        if time.monotonic() - last >= view.interval_s:
            await show(paused=False)


async def chat_turn(engine: Engine, view: TurnView, user: UserRef, text: str, *,
                    chat_key: str = "", server: str = "", persona: str | None = None,
                    spoken: bool = False) -> ChatResult:
    """Answer ``text`` from ``user`` in ``view``, start to finish. ``spoken``: the person
    sent a voice message, so the answer is spoken whatever their reply mode."""
    with turn_of(user.key):  # /cancel and the adapter's stop wait for its end
        positions = _Positions(view)
        async with view.activity(voice=spoken):
            try:
                reply = await engine.chat(user, text, chat_key=chat_key, server=server,
                                          persona=persona, on_position=positions)
            except BaseException:
                await positions.close()
                raise
            admitted()  # queued in the engine: the chat's next message may be taken in
            prefix = f"🤖 {reply.disclosure}\n\n" if reply.disclosure else ""
            result, note = await deliver(engine, view, user, reply, spoken=spoken, prefix=prefix,
                                         on_first=positions.close)
        await positions.close()
        if isinstance(result.error, SchedulerStopped):
            raise result.error  # never started: the adapter keeps the message for the next start
        buttons = reply_buttons(result)
        voice_only = reply.reply_mode == "voice" and note is not None
        if not voice_only:
            await view.finish(prefix + reply_body(result), buttons)
        if note is not None:
            await view.voice(note, buttons if voice_only else ())
        return result


async def stop_turns(engine: Engine, underway: Underway, user: UserRef) -> str:
    """``/cancel``: stop the person's queued and running requests; what to tell them, once
    the stopped replies show that they stopped."""
    n = engine.cancel(user)
    if n:
        await underway.ended(LAST_WORDS_S, user.key)
    return f"Stopped {n} request(s)." if n else "Nothing to stop."


async def deliver(engine: Engine, view: TurnView, user: UserRef, reply: ChatReply, *,
                  spoken: bool, prefix: str = "",
                  on_first: Callable[[], Awaitable[None]] | None = None,
                  ) -> tuple[ChatResult, VoiceNote | None]:
    """Run a reply to its end: shown live in ``view`` (unless it is to be voice only) and,
    when the reply mode (or ``spoken``) says so, spoken sentence by sentence as it is
    written. The voice note is None when not spoken or when speech failed (the text still
    stands)."""
    speak = spoken or reply.reply_mode != "text"
    pieces: AsyncIterable[str]
    if speak and reply.reply_mode == "voice":
        pieces = _after_first(reply, on_first)
    else:
        pieces = paced(reply, view, prefix=prefix, on_first=on_first)
    note: VoiceNote | None = None
    if speak:
        try:
            note = (await engine.speak_stream(pieces, user=user, persona=reply.persona)).note
        except DoppelError as exc:
            log.info("no voice note: %s", exc)
    else:
        async for _ in pieces:
            pass
    return await reply.result(), note


async def _after_first(source: AsyncIterable[str],
                       on_first: Callable[[], Awaitable[None]] | None) -> AsyncIterator[str]:
    first = True
    async for piece in source:
        if first and on_first is not None:
            await on_first()
        first = False
        yield piece


_GENRE_BYTES = 24
"""A genre as a button carries it: Telegram's callback data holds 64 bytes in all."""


def clip(text: str, n_bytes: int) -> str:
    """``text`` cut to fit ``n_bytes`` of a button's data (whole characters, no ``|``)."""
    return text.encode()[:n_bytes].decode(errors="ignore").replace("|", " ")


@dataclass(frozen=True)
class IdeasFor:
    """Story ideas for a genre, language and age group: what 💡 buttons carry."""

    genre: str = "adventure"
    language: str = "en"
    age: str = "6-8"

    @property
    def value(self) -> str:
        return f"{clip(self.genre, _GENRE_BYTES)}|{self.language}|{self.age}"

    @classmethod
    def parse(cls, value: str) -> tuple[IdeasFor, int | None]:
        """The ideas a button is about, and which one (``idea`` buttons) if any."""
        genre, language, age, n = [*value.split("|"), "", "", "", ""][:4]
        about = cls(genre or "adventure", language or "en", age or "6-8")
        return about, int(n) if n.isdigit() else None

    def heading(self) -> str:
        return f"💡 Ideas for a {self.genre} story (ages {self.age}):"

    def buttons(self, ideas: Sequence[str]) -> list[Button]:
        """One button per idea (it writes that story), then one for new ideas."""
        return [*(Button(f"{n + 1}. {idea}"[:60], "idea", f"{self.value}|{n}")
                  for n, idea in enumerate(ideas)),
                Button("💡 More ideas", "more", self.value)]


def rating_buttons(target: str) -> list[Button]:
    """👍 / 👎 (``engine.feedback``: kept for the operator and for preference training)."""
    return [Button("👍", "good", target), Button("👎", "bad", target)]


def story_buttons(record: StoryRecord) -> list[Button]:
    return [Button("⭐ Favourite", "fav", str(record.id)),
            Button("🔊 Read aloud", "narrate", str(record.id)),
            Button("💡 Ideas", "ideas",
                   IdeasFor(record.genre, record.language, record.age_group).value),
            *rating_buttons(f"story:{record.id}")]


async def story_turn(engine: Engine, view: TurnView, user: UserRef, request: StoryRequest,
                     *, chat_key: str = "", photo: bytes | None = None) -> StoryRecord | None:
    """Write a story into ``view`` (about ``photo``, when given): queued notice, activity,
    paced text, then the titled story with its buttons and pictures; or what was written
    and why it stopped. None if it failed."""
    with turn_of(user.key):  # /cancel and the adapter's stop wait for its end
        positions = _Positions(view)
        async with view.activity(voice=False):
            try:
                reply = await engine.stories.create(user, request, chat_key=chat_key,
                                                    on_position=positions, photo=photo)
            except BaseException:
                await positions.close()
                raise
            admitted()
            text = "".join([p async for p in paced(reply, view, on_first=positions.close)])
            try:
                record = await reply.result()
            except DoppelError as exc:
                await positions.close()
                if isinstance(exc, SchedulerStopped) and not text:
                    raise  # never started: the adapter keeps the request for the next start
                await view.finish((text + "\n\n" if text else "") + exc.user_message, ())
                return None
        await positions.close()
        await view.finish(f"{view.title(record.title)}\n\n{record.content}", story_buttons(record))
        await show_pictures(engine, view, user, record)
        return record


async def open_story(engine: Engine, view: TurnView, user: UserRef, story_id: int) -> None:
    """A story from the history or favourites: its text, buttons and pictures again."""
    record = await engine.stories.open(user, story_id)
    await view.finish(f"{view.title(record.title)}\n\n{record.content}", story_buttons(record))
    await show_pictures(engine, view, user, record)


async def show_pictures(engine: Engine, view: TurnView, user: UserRef,
                        story: StoryRecord) -> None:
    """The story's pictures after its text (drawn now if it has none yet). A failure here
    never takes the story back: the text is already there."""
    if not engine.pictures.enabled:
        return
    try:
        async with view.activity(voice=False):
            pictures = await engine.pictures.illustrate(user, story)
    except DoppelError as exc:
        log.info("story %d without pictures: %s", story.id, exc)
        return
    if not pictures:
        return
    try:
        await view.pictures(pictures)
    except Exception:  # the platform refused them; the story itself is there
        log.warning("could not send the pictures of story %d", story.id, exc_info=True)
