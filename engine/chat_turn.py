"""One chat turn as the scheduler runs it on the LLM thread: the history fitted to the
context, the memory fenced into the message, the reply streamed and guarded against
reciting the system prompt."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass

from engine.errors import InputError
from engine.history import fit_history
from engine.identity import Identity, IdentityStream
from engine.letter import LetterStream
from engine.llm.base import ChatMessage, Completion, LLMBackend, SamplingParams
from engine.memory.prompt import (
    LeakGuard,
    fence_sources,
    with_earlier,
    with_sources,
    with_user_facts,
)
from engine.memory.retrieve import Hit
from engine.reply_text import CleanStream, end_at_sentence
from engine.scheduler import JobContext
from engine.summary import fold, salience
from engine.usermemory.store import content_words

STOP = ("\n<<<SOURCE", "\n<<<END SOURCE")
"""A reply that starts reciting the fenced sources on a new line has ended."""


@dataclass(frozen=True)
class TurnMessage:
    """The user's text and the memory to quote with it (fenced on the LLM thread, where
    the model's tokenizer may be used)."""

    text: str
    hits: list[Hit]
    budget: int = 0
    _: KW_ONLY
    canned: str | None = None
    """A reply decided without the model (memory has nothing on a factual question)."""
    lead: str = ""
    """Text the reply opens with, decided by the engine (the sentence of memory that
    answers the question); the model's reply follows it."""
    about_user: tuple[str, ...] = ()
    """What this user told the persona about themselves ("Their name is Sam.")."""
    rules: str = ""
    """A note that leads the user's turn (a live call says here that memory has nothing,
    keeping its system message the same from turn to turn for the prompt cache)."""

    def render(self, count: Callable[[str], int], earlier: Sequence[str] = ()) -> str:
        """What the model reads as the user's turn; ``earlier``: the running summary of
        what scrolled out of the conversation."""
        text = self.text
        if self.hits:
            text = with_sources(text, fence_sources(self.hits, self.budget, count))
        text = with_earlier(with_user_facts(text, self.about_user), earlier)
        return f"{self.rules}\n\n{text}" if self.rules else text


def recalled(question: str, summary: Sequence[str]) -> str:
    """For a question about something the person said long ago ("Where is the meeting
    with Jeff again?"), their own summary line that answers it, as the reply's opening
    ("You told me: The meeting with Jeff is at the Hilton..."): a small model does not
    find it in the prompt by itself. Empty when no statement of theirs shares two words
    with the question."""
    if not question.rstrip().endswith("?"):
        return ""
    asked = content_words(question)
    best, shared = "", 1
    for line in summary:
        who, _, said = line.partition(": ")
        if who != "They said" or said.rstrip().endswith("?"):
            continue
        n = len(asked & content_words(said))
        if n > shared:
            best, shared = said, n
    return f"You told me: {best}" if best else ""


@dataclass(frozen=True)
class ChatTurn:
    """The blocking part of a chat turn, run on the LLM thread; ``partial`` collects the
    reply as it streams (the engine stores it if the turn is cut off)."""

    llm: LLMBackend
    system: str
    history: list[ChatMessage]
    message: TurnMessage
    params: SamplingParams
    partial: list[str]
    summary: tuple[str, ...] = ()
    """What scrolled out of ``history`` before (``ConversationState.summary``)."""
    identity: Identity | None = None
    """Who the persona is: a sentence of the reply that says otherwise is cut."""
    summary_tokens: int | None = None
    """The most of the summary the prompt carries (None: up to a quarter of the context)."""
    reader: str = ""
    """The name of whom the reply is for, if known (a salutation may greet them)."""
    spoken: bool = False
    """A reply that is heard: no salutation, no signature (``engine.letter``)."""

    def _count(self, msg: ChatMessage) -> int:
        return self.llm.count_tokens(msg.content) + self.llm.message_overhead_tokens

    def _fit(self) -> tuple[list[ChatMessage], list[str]]:
        """The prompt: the newest history that fits, and the user's turn with the summary
        of everything older (what this prompt leaves out of ``history`` too); and the
        summary lines it carries."""
        system = ChatMessage("system", self.system)
        budget = self.llm.n_ctx - self.params.max_tokens
        # The summary takes at most a quarter of the window, and never the room of the
        # last exchange (the newest history goes first).
        plain = ChatMessage("user", self.message.render(self.llm.count_tokens))
        recent = sum(self._count(m) for m in self.history[-2:])
        most = budget // 4 if self.summary_tokens is None else self.summary_tokens
        room = max(0, min(most, budget - self._count(system) - self._count(plain) - recent - 12))
        summary = self._within(list(self.summary), room)
        messages: list[ChatMessage] = []
        for _ in range(3):  # the summary grows as history is left out; settles quickly
            while True:
                user = ChatMessage("user", self.message.render(self.llm.count_tokens,
                                                               summary))
                try:
                    messages = fit_history(system, self.history, user, budget=budget,
                                           count=self._count)
                    break
                except InputError:
                    if not summary:
                        raise  # the message itself is too long
                    summary = summary[1:]  # a summary never makes a message too long
            left_out = self.history[:len(self.history) - (len(messages) - 2)]
            wanted = self._within(fold(self.summary, left_out), room)
            if wanted == summary:
                break
            summary = wanted
        return messages, summary

    def _within(self, lines: list[str], room: int) -> list[str]:
        """The lines the message is about (sharing its words; a small model copies what it
        is shown, so the rest stays out), the most telling that fit ``room`` tokens, in
        order."""
        asked = content_words(self.message.text)
        lines = [line for line in lines
                 if asked & content_words(line.split(": ", 1)[-1])]
        cost = [self.llm.count_tokens(line) + 1 for line in lines]
        while lines and sum(cost) > room:
            drop = min(range(len(lines)), key=lambda i: (salience(lines[i]), i))
            del lines[drop], cost[drop]
        return lines

    def __call__(self, ctx: JobContext) -> Completion:
        if self.message.canned is not None:
            self.partial.append(self.message.canned)
            ctx.emit(self.message.canned)
            return Completion(self.message.canned, 1, 0.0, 0.0)
        messages, summary = self._fit()
        t0 = time.perf_counter()
        first: float | None = None
        guard = LeakGuard(self.system)
        stream = CleanStream()  # no prompt markup ever leaves, not even half of it
        letter = LetterStream(self.identity.names if self.identity else frozenset(),
                              reader=self.reader, spoken=self.spoken)
        persona = (IdentityStream(self.identity, whole_words=True) if self.identity
                   else None)
        params = self.params.with_(stop=tuple(dict.fromkeys((*self.params.stop, *STOP))))
        tokens = 0
        lead = self.message.lead or recalled(self.message.text, summary)
        if lead:
            self._emit(ctx, lead + "\n\n")
        ctx.pause()  # (a call holds the model while the lead's first words are spoken)
        # (a reply that has signed off has ended: the model is stopped)
        for piece in self.llm.stream_chat(messages, params,
                                          lambda: ctx.cancelled or letter.ended):
            ctx.pause()
            if first is None:
                first = time.perf_counter() - t0
            tokens += 1
            if guard.feed(piece):  # reciting its instructions: stop, keep none of it
                self.partial.clear()
                raise InputError("reply recited the system prompt", user_message=(
                    "I can't share my instructions. Ask me something else!"))
            shown = stream.feed(letter.feed(piece))
            self._emit(ctx, persona.feed(shown) if persona else shown)
        rest = stream.feed(letter.close()) + stream.close()
        self._emit(ctx, persona.feed(rest) + persona.close() if persona else rest)
        text, truncated = stream.text, False
        if persona is not None and persona.cut:
            text = persona.kept.strip()
        if ((letter.changed or (persona is not None and persona.cut)) and not text
                and not lead and self.identity and self.identity.introduction):
            text = self.identity.introduction  # nothing left in character
            self._emit(ctx, text)
        if (tokens >= params.max_tokens and not ctx.cancelled
                and not letter.ended):  # ran out of room mid-reply
            text, truncated = end_at_sentence(text)
        if lead:
            text = f"{lead}\n\n{text}" if text.strip() else lead
        return Completion(text, tokens, first, time.perf_counter() - t0, truncated=truncated)

    def _emit(self, ctx: JobContext, text: str) -> None:
        if text:
            self.partial.append(text)
            ctx.emit(text)
