"""The Engine: one object that adapters receive and call; it owns models, queue and storage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from engine.chat_turn import ChatTurn
from engine.conversations import ConversationState
from engine.core import LLM, EngineCore
from engine.errors import (
    DoppelError,
    InputError,
    JobCancelled,
    JobTimeout,
    ModelError,
    SchedulerStopped,
)
from engine.grounding import CALL_SUMMARY_TOKENS, Grounding, base_system, call_system, ground
from engine.identity import Identity
from engine.llm.base import ChatMessage, Completion, SamplingParams
from engine.memory.retrieve import Hit
from engine.personas import Persona
from engine.records import AskResult, ChatResult, SourceCard, StoredMessage, UserRef
from engine.reply_text import is_blank, visible
from engine.scheduler import Job, JobContext, PositionCallback, Priority
from engine.storage.db import StorageFull, is_full
from engine.usermemory.model_pass import ModelPass, worth_asking
from engine.usermemory.store import Remembered
from engine.voice.audio import VoiceNote
from engine.voice.service import SpokenReply

__all__ = ["AskResult", "ChatReply", "ChatResult", "Engine", "StoredMessage", "UserRef"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")




class ChatReply:
    """A reply being generated: iterate it for text chunks, then ``await result()``.

    Iteration ends quietly if the job is cancelled, times out or fails; ``result()``
    says which, and the reply (with any partial text) is stored either way.
    """

    def __init__(self, persona: Persona, job: Job[Completion], sources: list[Hit],
                 done: asyncio.Task[ChatResult], disclosure: str = "",
                 reply_mode: str = "text", state: ConversationState | None = None,
                 exchange: tuple[int, int] | None = None) -> None:
        self.persona = persona
        self.state = state
        self.exchange = exchange
        """The conversation it is stored in, and the ids of the message and the reply."""
        self.reply_mode = reply_mode
        """``text``, ``voice`` or ``both``: how this user wants replies (their setting)."""
        self.job = job
        self.sources = sources
        """What memory gave the model, in citation order ([1] is ``sources[0]``)."""
        self._done = done
        self.disclosure = disclosure
        """What adapters show before the reply: the AI disclosure on a persona's first reply
        to this user, and a note when a crash cut off the previous reply."""

    @property
    def position(self) -> int | None:
        return self.job.position

    def __aiter__(self) -> AsyncIterator[str]:
        return self.job.chunks()  # the outcome, with any error, comes from result()

    async def result(self) -> ChatResult:
        return await asyncio.shield(self._done)


class Engine(EngineCore):
    """Build it, ``await start()``, hand it to adapters, ``await stop()`` at the end
    (``engine.lifecycle.open_engine`` does all three)."""

    # -- chat -------------------------------------------------------------------------------

    async def chat(
        self,
        user: UserRef,
        text: str,
        *,
        chat_key: str = "",
        server: str = "",
        persona: str | None = None,
        on_position: PositionCallback | None = None,
        params: SamplingParams | None = None,
        brief: bool = False,
        learn: bool = True,
    ) -> ChatReply:
        """Queue the persona's reply to ``text``; the exchange is stored as it completes.
        ``server``: the server a shared chat is in (a group chat is its own; what the user
        tells about themselves there is kept for that server, see ``UserMemories``).
        ``brief``: a spoken turn of a live call, where the wait is heard: a shorter prompt
        (``[voice] call_context_tokens`` of memory, the last ``call_history`` messages)
        and a shorter answer (``call_max_tokens``). ``learn=False``: what the message tells
        about its writer is not kept yet (a call's guess at a turn; ``learn_from`` keeps it
        once the turn is sure).

        Raises InputError for empty or over-long text, and QueueFull / UserQueueFull when
        the request cannot be queued (nothing is stored then).
        """
        text = self._check_text(text)
        self.rate.take(user.key)
        p = await self._persona(user, chat_key, persona)
        self.check_access(user, p)
        state = await self.conversations.open(user, p.name, chat_key)
        notice = ""
        if state.conversation_id in self._interrupted:
            self._interrupted.discard(state.conversation_id)
            notice = ("My last reply to you was cut off when I restarted; ask again if you "
                      "still need it.")
        if (build := self.building.get(p.name)) is not None:
            notice = " ".join(filter(None, (notice, (
                f"I'm still reading my memory for the first time ({build.percent}% done), "
                "so I may not remember everything yet."))))
        async def store() -> tuple[tuple[int, int], list[ChatMessage], tuple[str, ...]]:
            """The exchange's ids, and the conversation as it was once it was stored: the
            history before the new message (the prompt takes it apart) and the summary."""
            ids = await self.conversations.begin_exchange(state, text)
            return ids, list(state.history)[:-1], tuple(state.summary)

        # The exchange is committed while the prompt is made (neither needs the other):
        # the model is asked a database write's time sooner.
        storing = asyncio.ensure_future(store())
        params = params or self.sampling
        voice = self.config.voice
        if brief:
            params = params.with_(max_tokens=min(params.max_tokens, voice.call_max_tokens))
        partial: list[str] = []
        try:
            place = server or chat_key
            told = (await self.user_memories.learn(user, p.name, text, None, place,
                                                   keep=False) if learn else None)
            if told is not None and told.forgotten:
                notice = " ".join(filter(None, (notice, "Forgotten: " + " ".join(
                    m.to_them for m in told.forgotten))))
            facts = await self.user_memories.recall(user, p.name, text, place)
            grounded = await self.ground(p, text, user.key, facts,
                                         voice.call_context_tokens if brief else None)
            if brief:
                grounded = grounded.for_call()
            system, hits, message = grounded.system, grounded.hits, grounded.message
            exchange, history, summary = await storing  # (failed: nothing queued or kept)
            if brief:
                history = _last(history, voice.call_history)
            job = self.scheduler.submit(
                LLM,
                ChatTurn(self.llm_for(p), system, history, message, params,
                         partial, summary, await self.identity(p),
                         summary_tokens=CALL_SUMMARY_TOKENS if brief else None,
                         reader=user.display_name or "", spoken=brief),
                user=user.key,
                kind="chat",
                priority=Priority.INTERACTIVE,
                timeout_s=self.config.engine.chat_timeout_s,
                on_position=on_position,
                # A call's answer that opens with a quote from memory: the model waits to
                # go on until the call has the quote's first words spoken (``release``);
                # on two cores it would slow their synthesis by half.
                held=brief and bool(message.lead),
            )
        except BaseException:  # refused (queue full, ...): nothing of it stays stored
            if (stored := await _outcome(storing)) is not None:
                await self.conversations.abort_exchange(state, stored[0])
            raise
        shown = " ".join(x for x in (await self._disclose(user, p), notice) if x)
        told_facts = told.found.facts if told is not None else []

        async def answered() -> None:  # what the message tells is kept once it is answered
            await self.user_memories.keep(user, p.name, told_facts, exchange[0], place)

        task = asyncio.create_task(self._store_reply(job, partial, state, hits, exchange,
                                                     shown, answered if told_facts else None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if (told is not None and self.config.memory.user_facts_model
                and worth_asking(text, told.found)):
            self._read_for_facts(user, p, text, exchange[0], place)
        return ChatReply(p, job, hits, task, shown, await self.reply_mode(user), state,
                         exchange)

    async def prefill_call(self, user: UserRef) -> Job[None]:
        """Between a live call's turns: have the model read what the next turn's prompt
        begins with (the system message and the history it will hold), so that the answer
        to the next question starts sooner. Runs behind everything else on the model."""
        p = await self.current_persona(user)
        state = await self.conversations.open(user, p.name, "")
        messages = [ChatMessage("system", call_system(await base_system(self.memory, p))),
                    *_last(state.history, self.config.voice.call_history)]
        llm = self.llm_for(p)

        def run(ctx: JobContext) -> None:
            llm.prefill(messages)

        return self.scheduler.submit(LLM, run, user=user.key, kind="prefill",
                                     priority=Priority.BATCH,
                                     timeout_s=self.config.engine.chat_timeout_s)

    def _read_for_facts(self, user: UserRef, persona: Persona, text: str, message_id: int,
                        place: str) -> None:
        """The model's pass over what the rules missed (engine/usermemory/model_pass.py):
        a batch job, after every waiting reply; its failure costs only the facts."""
        try:
            job = self.scheduler.submit(LLM, ModelPass(self.llm, text), user=user.key,
                                        kind="memory", priority=Priority.BATCH,
                                        timeout_s=self.config.engine.batch_timeout_s)
        except DoppelError as exc:
            log.info("no model pass over %s's message: %s", user.key, exc)
            return

        async def keep() -> None:
            try:
                facts = await job.result()
            except DoppelError as exc:
                log.info("the model pass over %s's message ended: %r", user.key, exc)
                return
            await self.user_memories.keep(user, persona.name, facts, message_id, place)

        task = asyncio.create_task(keep())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disclose(self, user: UserRef, persona: Persona) -> str:
        """The AI disclosure, the first time this persona talks to this user."""
        key = f"disclosed:{persona.name}"
        if (user.key, key) in self._disclosed:
            return ""
        self._disclosed.add((user.key, key))
        if await self.conversations.setting(user, key) is not None:
            return ""
        await self.conversations.set_setting(user, key, datetime.now(UTC).isoformat())
        return (f"I'm an AI persona of {persona.display_name}, not the real person: a "
                "computer writes my replies, and what you send is stored to keep our "
                "conversation going (/forget deletes it, /export gives you a copy).")

    async def ask(self, persona: str, question: str, *,
                  params: SamplingParams | None = None) -> AskResult:
        """Answer one question from the persona's memory, outside any conversation."""
        text = self._check_text(question)
        p = self.personas.get(persona)
        grounded = await self.ground(p, text, "operator:ask")
        system, hits, message = grounded.system, grounded.hits, grounded.message
        job = self.scheduler.submit(
            LLM, ChatTurn(self.llm_for(p), system, [], message, params or self.sampling, [],
                          identity=await self.identity(p)),
            user="operator:ask", kind="ask", priority=Priority.INTERACTIVE,
            timeout_s=self.config.engine.chat_timeout_s,
        )
        completion = await job.result()
        return AskResult(question=text, answer=completion.text.strip(), grounded=bool(hits),
                         sources=hits)

    def _check_text(self, text: str) -> str:
        text = visible(text).strip()
        if is_blank(text):
            raise InputError("empty message", user_message="Say something and I'll answer.")
        limit = self.config.engine.max_message_chars
        if len(text) > limit:
            raise InputError(
                f"message of {len(text)} chars",
                user_message=f"That message is too long ({len(text)} characters; "
                f"the limit is {limit}). Please shorten it.",
            )
        return text

    async def identity(self, persona: Persona) -> Identity:
        """Who ``persona`` is, by its profile and memory: what its replies are checked
        against."""
        stats = await self.memory.term_stats(persona.name)
        return Identity.of(persona.display_name, persona.introduction(),
                           persona.system_message(), persona.profile.description,
                           known=lambda word: stats.df.get(word, 0) > 0)

    async def ground(self, persona: Persona, text: str, user_key: str,
                     facts: Sequence[Remembered] = (),
                     context_tokens: int | None = None) -> Grounding:
        """What the model is given for ``text`` (or the reply decided without it), with at
        most ``context_tokens`` of memory (default ``[memory] context_tokens``)."""
        cfg = self.config.memory
        if context_tokens is not None:
            cfg = replace(cfg, context_tokens=min(cfg.context_tokens, context_tokens))
        return await ground(self.memory, cfg, persona, text, user_key, facts)

    async def _store_reply(self, job: Job[Completion], partial: list[str],
                           state: ConversationState, hits: list[Hit],
                           exchange: tuple[int, int], disclosure: str,
                           answered: Callable[[], Awaitable[None]] | None = None
                           ) -> ChatResult:
        completion: Completion | None = None
        error: DoppelError | None = None
        try:
            completion = await job.result()
        except DoppelError as exc:
            error = exc
        except Exception as exc:
            error = ModelError(str(exc))
        if completion is not None and not completion.text.strip():
            error = ModelError("empty reply", user_message="I had nothing to say to that. "
                                                           "Please try again.")
            completion = None
        status = _status_of(error)
        if isinstance(error, SchedulerStopped):  # never started: as if never asked
            await self.conversations.abort_exchange(state, exchange)
            return ChatResult(status=status, text="", message_id=None, tokens=0, error=error,
                              wait_s=job.wait_s, sources=hits)
        tokens = len(partial)
        if completion is not None:
            self.generated_tokens += completion.tokens
            self.generation_s += completion.total_s
            tokens = completion.tokens
            if completion.truncated:
                status = "truncated"
        text = completion.text if completion else "".join(partial)
        try:
            message_id = await self.conversations.finish_reply(
                state, exchange[1], text, status=status, tokens=tokens, disclosure=disclosure,
                sources=SourceCard.all_of(hits))
        except OperationalError as exc:
            if not is_full(exc):
                raise
            # Shown, not stored: the person is told; the row stays "pending" (the next
            # start marks it interrupted) and the operator is told where.
            log.critical("a reply could not be stored: the disk holding %s is full (free "
                         "space there; the reply's row is marked interrupted at the next "
                         "start)", self.db.path or self.db.safe_url)
            return ChatResult(status="error", text=text, message_id=None, tokens=tokens,
                              error=StorageFull(str(exc)), wait_s=job.wait_s,
                              sources=hits)
        if answered is not None and message_id is not None and error is None:
            try:
                await answered()
            except Exception:  # the reply stands; only what it would have learned is lost
                log.exception("could not keep what %s told", exchange)
        return ChatResult(
            status=status, text=text, message_id=message_id, tokens=tokens, error=error,
            wait_s=job.wait_s, run_s=job.run_s,
            first_token_s=completion.first_token_s if completion else None,
            sources=hits,
        )

    # -- voice ------------------------------------------------------------------------------

    @property
    def voice_caption(self) -> str:
        """What voice messages are captioned with (the AI-voice disclosure)."""
        return self.config.voice.disclosure

    @property
    def max_audio_mb(self) -> float:
        """The largest voice note or audio file the engine listens to."""
        return float(self.config.voice.max_input_mb)

    async def speak_stream(self, pieces: AsyncIterable[str], *, user: UserRef,
                           persona: Persona) -> SpokenReply:
        """Speak a reply while it is written, in ``persona``'s voice."""
        return await self.voice.speak_stream(pieces, user=user.key, persona=persona)

    async def speak(self, text: str, *, user: UserRef, persona: Persona) -> VoiceNote:
        """``text`` as one voice note in ``persona``'s voice (🔊 on an earlier reply)."""
        return await self.voice.speak(text, user=user.key, persona=persona)

    async def transcribe(self, audio: bytes, *, user: UserRef) -> str:
        """The words of a voice note or audio file."""
        return await self.voice.transcribe(audio, user=user.key)

    async def learn_from(self, user: UserRef, reply: ChatReply, text: str) -> None:
        """Keep what ``text`` (asked with ``learn=False``) tells about its writer."""
        if reply.exchange is not None:
            await self.user_memories.learn(user, reply.persona.name, text, reply.exchange[0],
                                           "")

    def abandon(self, reply: ChatReply) -> None:
        """Nobody waits for ``reply`` any more (its stream was dropped): it stops, and what
        was written of it is kept as a cancelled reply."""
        self.scheduler.cancel(reply.job)

    async def interrupt(self, reply: ChatReply, said: str) -> ChatResult:
        """The person talked over ``reply`` (a live call): stop it, and keep of it only
        ``said``, what they heard, as a cancelled reply. With nothing heard ("") the
        exchange is undone, message and all: they went on talking, and what they said
        comes again with the rest."""
        self.scheduler.cancel(reply.job)
        result = await reply.result()
        state = reply.state
        if state is None or reply.exchange is None:
            return result
        if result.message_id is not None and result.text != said:
            await self.conversations.cut_reply(state, result.message_id, said)
        if not said.strip():
            await self.conversations.abort_exchange(state, reply.exchange)
            self.rate.refund(reply.job.user)  # undone: as if never asked
        return result



async def _outcome(task: asyncio.Future[_T]) -> _T | None:
    """What ``task`` gives once it is done; None if it failed or was cancelled."""
    await asyncio.wait([task])
    return None if task.cancelled() or task.exception() is not None else task.result()


def _last(history: Sequence[ChatMessage], n: int) -> list[ChatMessage]:
    """The last ``n`` messages of ``history`` (a live call's prompt holds no more)."""
    return list(history[-n:]) if n > 0 else []


def _status_of(error: DoppelError | None) -> str:
    """The stored status of a reply that ended with ``error``."""
    if error is None:
        return "complete"
    if isinstance(error, JobTimeout):
        return "timeout"
    if isinstance(error, JobCancelled | SchedulerStopped):
        return "cancelled"
    return "error"

