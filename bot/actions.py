"""What a button does, written once for every platform.

A platform maps a press (a Telegram callback query, a Discord component interaction, a
web app request) to a :class:`Press` and calls :func:`press` with its :class:`ActionView`:
a ``TurnView`` that can also show a short notice, story ideas and a page of the story
history. The buttons themselves are drawn from ``bot.turn.Button`` (``action|value``), so
what a button carries is also written once: :class:`IdeasFor` and :class:`HistoryPage`
encode and parse their own values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.turn import (
    CONTINUE_PROMPT,
    Button,
    IdeasFor,
    TurnView,
    button_number,
    chat_turn,
    clip,
    open_story,
    story_turn,
)
from engine.api import ChatResult, Engine, InputError, StoryRecord, StoryRequest, UserRef

HISTORY_PAGE = 8
"""Stories on one page of the history."""
_SEARCH_BYTES = 40


@dataclass(frozen=True)
class HistoryPage:
    """One page of a person's story history (newest first, grouped by date)."""

    entries: list[tuple[str, StoryRecord]]
    """(date label, story) on this page."""
    page: int
    pages: int
    total: int
    search: str

    @classmethod
    def of(cls, groups: list[tuple[str, list[StoryRecord]]], page: int,
           search: str) -> HistoryPage:
        flat = [(label, r) for label, rs in groups for r in rs]
        pages = max(1, -(-len(flat) // HISTORY_PAGE))
        page = max(0, min(page, pages - 1))
        return cls(flat[page * HISTORY_PAGE:(page + 1) * HISTORY_PAGE], page, pages,
                   len(flat), search)

    @staticmethod
    def parse(value: str) -> tuple[int, str]:
        page, _, search = value.partition("|")
        return button_number(page or "0"), search

    def nav(self) -> list[Button]:
        """◀ and ▶, where there is a page before or after."""
        key = clip(self.search, _SEARCH_BYTES)
        return ([Button("◀ Previous", "hp", f"{self.page - 1}|{key}")] if self.page > 0
                else []) + ([Button("Next ▶", "hp", f"{self.page + 1}|{key}")]
                            if self.page + 1 < self.pages else [])

    def empty_text(self) -> str:
        return "No stories found." if self.search else "No stories yet. Try /story."


class ActionView(TurnView, Protocol):
    """How one platform shows what a button did."""

    async def notice(self, text: str) -> None:
        """A short line for the person who pressed (a toast, an ephemeral message)."""

    async def settle(self, text: str) -> None:
        """The question the press answered (e.g. "forget everything?") is settled: show
        ``text`` in its place where the platform can, else as a notice."""

    async def ideas(self, about: IdeasFor, ideas: Sequence[str]) -> None:
        """Story ideas, each a button that writes it (``about.buttons``)."""

    async def history(self, page: HistoryPage) -> None:
        """A page of the story history, with a way to open each story and to page on."""


@dataclass(frozen=True)
class Press:
    user: UserRef
    action: str
    value: str = ""
    chat_key: str = ""
    """The conversation the button was pressed in ("" for a private chat)..."""
    server: str = ""
    """...and the server it is in, whose persona answers there unless the person chose."""


Handler = Callable[[Engine, ActionView, Press], Awaitable[ChatResult | None]]
"""An action; those that answer anew return the reply's result."""


@dataclass(frozen=True)
class Action:
    run: Handler
    brief: bool = False
    """Answered by a notice alone: platforms show no "thinking…" while it runs."""


async def _favourite_story(engine: Engine, view: ActionView, p: Press) -> None:
    record = await engine.stories.favourite(p.user, button_number(p.value))
    await view.notice(f"⭐ Saved \"{record.title}\".")


async def _favourite_reply(engine: Engine, view: ActionView, p: Press) -> None:
    await engine.favourite_message(p.user, button_number(p.value))
    await view.notice("⭐ Saved to your favourites.")


async def _rate(engine: Engine, view: ActionView, p: Press) -> None:
    good = p.action == "good"
    await engine.feedback.rate(p.user, p.value, good)
    await view.notice("Thanks: noted." if good else "Thanks: noted, I'll learn from it.")


async def _narrate(engine: Engine, view: ActionView, p: Press) -> None:
    async with view.activity(voice=True):
        parts = await engine.stories.narrate(p.user, button_number(p.value))
    await view.notice(f"🔊 Reading it aloud ({len(parts)} part{'s' * (len(parts) > 1)}).")
    for part in parts:
        await view.voice(part, ())


async def _open(engine: Engine, view: ActionView, p: Press) -> None:
    await open_story(engine, view, p.user, button_number(p.value))


async def _history_page(engine: Engine, view: ActionView, p: Press) -> None:
    page, search = HistoryPage.parse(p.value)
    await show_history(engine, view, p.user, page, search)


async def _ideas(engine: Engine, view: ActionView, p: Press) -> None:
    about, _ = IdeasFor.parse(p.value)
    await show_ideas(engine, view, p.user, about, refresh=p.action == "more")


async def _idea(engine: Engine, view: ActionView, p: Press) -> None:
    about, n = IdeasFor.parse(p.value)
    ideas = await engine.stories.suggestions(p.user, about.genre, about.language, about.age)
    if n is None or n >= len(ideas):
        raise InputError("idea gone", user_message="That idea is gone; here are new ones: "
                                                   "press 💡.")
    await story_turn(engine, view, p.user, StoryRequest(
        genre=about.genre, language=about.language, age_group=about.age, prompt=ideas[n]),
        chat_key=p.chat_key)


async def _forget(engine: Engine, view: ActionView, p: Press) -> None:
    if p.value == "yes":
        await engine.forget(p.user)
    await view.settle("Done: I have forgotten everything about you." if p.value == "yes"
                      else "Nothing was deleted.")


async def _last(engine: Engine, p: Press, role: str, missing: str) -> str:
    """The person's latest message of ``role`` in this conversation, or ``missing`` said."""
    history = await engine.history(p.user, chat_key=p.chat_key, limit=2)
    found = next((m for m in reversed(history) if m.role == role), None)
    if found is None:
        raise InputError(f"no {role} message", user_message=missing)
    return found.content


async def _say(engine: Engine, view: ActionView, p: Press) -> None:
    text = await _last(engine, p, "assistant", "There is no reply to read.")
    async with view.activity(voice=True):
        persona = await engine.current_persona(p.user, p.chat_key, server=p.server)
        note = await engine.speak(text, user=p.user, persona=persona)
    await view.voice(note, ())


async def _again(engine: Engine, view: ActionView, p: Press) -> ChatResult:
    text = await _last(engine, p, "user", "There is nothing to redo yet.")
    return await chat_turn(engine, view, p.user, text, chat_key=p.chat_key, server=p.server)


async def _continue(engine: Engine, view: ActionView, p: Press) -> ChatResult:
    return await chat_turn(engine, view, p.user, CONTINUE_PROMPT, chat_key=p.chat_key,
                           server=p.server)


ACTIONS: Mapping[str, Action] = {
    "fav": Action(_favourite_story, brief=True),
    "favmsg": Action(_favourite_reply, brief=True),
    "good": Action(_rate, brief=True),
    "bad": Action(_rate, brief=True),
    "forget": Action(_forget, brief=True),
    "narrate": Action(_narrate),
    "open": Action(_open),
    "hp": Action(_history_page),
    "ideas": Action(_ideas),
    "more": Action(_ideas),
    "idea": Action(_idea),
    "say": Action(_say),
    "regen": Action(_again),
    "continue": Action(_continue),
}
"""Every button's action, by the name its ``Button`` carries."""

OUTDATED = "That button is from an older version of me; try the command again."


def is_brief(action: str, extra: Mapping[str, Action] | None = None) -> bool:
    """Answered by a notice alone (a button this version does not know, too)."""
    found = (extra or {}).get(action) or ACTIONS.get(action)
    return found is None or found.brief


async def press(engine: Engine, view: ActionView, p: Press,
                extra: Mapping[str, Action] | None = None) -> ChatResult | None:
    """Do what the pressed button says (``extra``: a platform's own, e.g. Telegram's
    /story keyboard); an answer written anew (🔁, ⏩) returns its result. A button this
    version does not know gets a notice, not an error."""
    action = (extra or {}).get(p.action) or ACTIONS.get(p.action)
    if action is None:
        await view.notice(OUTDATED)
        return None
    return await action.run(engine, view, p)


async def show_ideas(engine: Engine, view: ActionView, user: UserRef, about: IdeasFor, *,
                     refresh: bool = False) -> None:
    """``/ideas`` and 💡: today's ideas (the model may take a while: activity shows)."""
    async with view.activity(voice=False):
        ideas = await engine.stories.suggestions(user, about.genre, about.language,
                                                 about.age, refresh=refresh)
    await view.ideas(about, ideas)


async def show_history(engine: Engine, view: ActionView, user: UserRef, page: int = 0,
                       search: str = "") -> None:
    """``/history [words]`` and its ◀ ▶: a page of the person's stories."""
    groups = await engine.stories.history(user, search=search)
    shown = HistoryPage.of(groups, page, search)
    if not shown.total:
        await view.notice(shown.empty_text())
        return
    await view.history(shown)
