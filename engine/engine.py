"""The Engine: one object that adapters receive and call; it owns models, queue and storage."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.achievements import Achievements
from engine.api_tokens import ApiTokens
from engine.chat_turn import ChatTurn
from engine.config import Config
from engine.conversations import ConversationState, ConversationStore
from engine.errors import (
    ConfigError,
    DoppelError,
    InputError,
    JobCancelled,
    JobTimeout,
    ModelError,
    NotAllowed,
    SchedulerStopped,
    UserNotFound,
)
from engine.feedback import Feedback
from engine.grounding import Grounding, base_system, call_system, ground
from engine.identity import Identity
from engine.images.service import Pictures
from engine.inbox import Inbox
from engine.llm.base import ChatMessage, Completion, LLMBackend, SamplingParams
from engine.llm.factory import make_backend
from engine.locking import DataDirLock
from engine.memory.embed import Embedder
from engine.memory.first_build import BuildProgress, build_missing
from engine.memory.retrieve import Hit
from engine.memory.service import EMBED, Memory
from engine.personas import PERSONA_FILE, Persona, PersonaRegistry
from engine.ratelimit import RateLimiter
from engine.records import AskResult, ChatResult, StoredMessage, UserRef
from engine.reply_text import is_blank, visible
from engine.scheduler import Job, JobContext, PositionCallback, Priority, Scheduler
from engine.storage.db import Database
from engine.stories.service import Stories
from engine.usermemory.model_pass import ModelPass, worth_asking
from engine.usermemory.store import Remembered, UserMemories
from engine.vision.service import PhotoReader
from engine.voice.audio import VoiceNote
from engine.voice.cloning import VoiceCloning
from engine.voice.library import VoiceLibrary
from engine.voice.narrate import VoiceNarrator
from engine.voice.service import SpokenReply, Voice
from engine.web_sign_in import WebSignIn

__all__ = ["AskResult", "ChatReply", "ChatResult", "Engine", "StoredMessage", "UserRef"]

log = logging.getLogger(__name__)

LLM = "llm"
STORY_LLM = "story_llm"


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


class Engine:
    """Build it, ``await start()``, hand it to adapters, ``await stop()`` at the end."""

    def __init__(self, config: Config, *, llm: LLMBackend | None = None,
                 embedder: Embedder | None = None) -> None:
        self.config = config
        self.personas = PersonaRegistry.load(config.personas.dir, config.personas.default,
                                             config_name=config.name)
        if llm is None:
            llm = make_backend(config.llm)
        self.llm = llm
        self._persona_llms = self._persona_models()
        self.sampling = SamplingParams.from_config(config.llm)
        self.db = Database(config.storage.effective_database_url)
        self.conversations = ConversationStore(self.db)
        self.inbox = Inbox(self.db)
        self.user_memories = UserMemories(self.db, self.conversations)
        self.feedback = Feedback(self.db, self.conversations, self._model_of,
                                 lambda: self.stories.llm.description)
        self.api_tokens = ApiTokens(self.db, self.conversations)
        self.web = WebSignIn(self.db, self.conversations, config)
        self.rate = RateLimiter(config.engine.rate_per_minute, config.engine.rate_burst)
        self.scheduler = Scheduler(config.engine)
        self.scheduler.add_resource(LLM, workers=config.llm.workers)
        self._story_llm: LLMBackend | None = None
        self.scheduler.add_resource(EMBED, workers=1)
        self.stories = Stories(
            self.db, self.scheduler, self.conversations, *self._story_model(config),
            timeout_s=config.engine.story_timeout_s)
        self.pictures = Pictures(config.images, self.db, self.scheduler, self.conversations)
        self.voice = Voice(config.voice, self.scheduler,
                           VoiceLibrary(self.db, config.storage.data_dir))
        self.voices = VoiceCloning(config, self.personas, self.conversations, self.voice,
                                   self.may_manage)
        self.stories.narrator = VoiceNarrator(self.voice, self._narrator_persona)
        self.achievements = Achievements(self.db, self.conversations, self.stories.timezone,
                                         self.stories.clock)
        self.voice.on_note = self._listened
        self.stories.photos = PhotoReader(config.vision, self.scheduler)
        self.stories.rate = self.rate
        self.memory = Memory(config.memory, config.storage.data_dir, self.db, self.scheduler,
                             embedder=embedder)
        self._lock = DataDirLock(config.storage.data_dir)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._disclosed: set[tuple[str, str]] = set()
        self.building: dict[str, BuildProgress] = {}
        """Personas whose memory is being built at start, and how far it got."""
        self._building_task: asyncio.Task[None] | None = None
        self._interrupted: set[int] = set()
        """Conversations whose last reply a crash cut off (found at start)."""
        self._warming: list[asyncio.Task[None]] = []
        """Models loaded in the background while the adapters start."""
        self.generated_tokens = 0
        self.generation_s = 0.0
        """Totals over completed replies, for tokens/s in metrics."""
        self.started = False
        self.exclusive = True

    def _persona_models(self) -> dict[str, LLMBackend]:
        """The chat model with each persona's own LoRA (``persona.toml`` ``[model]``); a
        LoRA this model cannot take (another base model, a model server) is left out with
        a warning. A lora_path that names no file stops the start."""
        out: dict[str, LLMBackend] = {}
        for p in self.personas.all():
            lora = p.model.lora_path
            if lora is None:
                continue
            where = p.directory / PERSONA_FILE
            if not lora.is_file():  # checked here, not on loading: `train persona` mends it
                raise ConfigError(f"{where}: [model] lora_path: {lora} is not a file (make one "
                                  f"with `doppel train persona {p.name}`)")
            try:
                out[p.name] = self.llm.with_lora(lora, p.model.lora_scale)
            except ConfigError as exc:
                # The persona still speaks, without its fine-tune: the same persona folder
                # serves a llama.cpp model, another model or a model server.
                log.warning("%s: [model] lora_path: %s; %s answers without its fine-tune",
                            where, exc, p.name)
        return out

    def _model_of(self, persona: str) -> str:
        """What writes ``persona``'s replies, as ratings record it."""
        return (self.llm_for(self.personas.get(persona)).description
                if persona in self.personas.names() else self.llm.description)

    def llm_for(self, persona: Persona) -> LLMBackend:
        """The model that writes this persona's replies (the chat model, with the persona's
        fine-tune when it has one)."""
        return self._persona_llms.get(persona.name, self.llm)

    def _story_model(self, config: Config) -> tuple[LLMBackend, str]:
        """The chat model, or a separate story model on its own worker when configured."""
        if config.stories.model_path is None and config.stories.lora_path is None:
            return self.llm, LLM
        from engine.llm.llama_cpp import LlamaCppBackend

        story_cfg = replace(config.llm, model_path=config.stories.model_path
                            or config.llm.model_path, lora_path=config.stories.lora_path,
                            n_gpu_layers=config.stories.n_gpu_layers)
        self._story_llm = LlamaCppBackend(story_cfg)
        self.scheduler.add_resource(STORY_LLM, workers=1)
        return self._story_llm, STORY_LLM

    async def start(self, *, load_llm: bool = True, exclusive: bool = True,
                    background_ingest: bool = False) -> None:
        """Open storage, start the workers, load the model (``load_llm=False`` for tools that
        only need memory, such as ``doppel ingest``). A persona whose memory is not built
        yet gets it built now; with ``background_ingest`` (a bot) while people already
        talk, each told how far it got.

        ``exclusive=False`` is for commands that only read or change records in the
        database (``persona show``, ``story history``, ``users``, ``export``): they run beside
        a server on the same data dir (SQLite in WAL mode allows that), never load a model,
        never open the embedded vector store and never touch the server's unfinished work.
        """
        t0 = time.perf_counter()
        self.exclusive = exclusive
        if exclusive:
            self._lock.acquire()
        else:
            self.memory.shared, load_llm = True, False
        await self.db.start()
        if exclusive:
            await self._recover()
        await self.scheduler.start()
        if load_llm:
            await self.scheduler.run_on(LLM, self.llm.load)
            for tuned in self._persona_llms.values():
                await self.scheduler.run_on(LLM, tuned.load)
            if self._story_llm is not None:
                await self.scheduler.run_on(STORY_LLM, self._story_llm.load)
            if self.config.memory.auto_ingest and background_ingest:
                self._building_task = asyncio.create_task(self._build_memories())
            elif self.config.memory.auto_ingest:
                await self._build_memories()
        for name in self.personas.names() if exclusive else []:
            if await self.memory.size(name):  # warm the embedder while adapters start
                self._warming.append(asyncio.create_task(self.memory.preload()))
                break
        self.started = True
        log.info("engine ready in %.2fs: %s, personas %s (default %s)",
                 time.perf_counter() - t0, self.llm.description,
                 ", ".join(self.personas.names()), self.personas.default_name)

    async def _recover(self) -> None:
        """Work the last process left unfinished (it was killed): replies and stories."""
        self._interrupted = await self.conversations.recover_interrupted()
        if self._interrupted:
            log.warning("%d conversation(s) had a reply cut off by the last shutdown; their "
                        "users are told when they write next", len(self._interrupted))
        if stories := await self.stories.recover_interrupted():
            log.warning("%d stor%s cut off by the last shutdown; kept with the text "
                        "written so far", stories, "y was" if stories == 1 else "ies were")

    def warm_speech(self) -> None:
        """Load the speech models in the background now (a long-running bot, ``[voice]
        preload``), not on the first voice note."""
        self._warming.append(asyncio.create_task(self.voice.preload()))

    async def _build_memories(self) -> None:
        await build_missing(self.memory, self.personas.all(), self.building)

    async def drain(self) -> None:
        """Shutdown, first step: refuse new work, drop queued jobs, give running ones
        ``[engine] shutdown_grace_s`` to finish, then cancel them (their text is kept)."""
        await self.scheduler.stop()

    async def _listened(self, key: str, seconds: float) -> None:
        """A voice note was made for ``key``: it counts towards their listening time (the
        engine's own work, "system" and "operator:...", does not)."""
        if ":" in key and not key.startswith(("operator:", "system")):
            await self.achievements.listened(UserRef.parse(key), seconds)

    async def settled(self) -> None:
        """Return once the work that follows replies is done (storing them, reading them
        for facts about their writer)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Finish or cancel running jobs, store their replies, release the model and database."""
        if self._building_task is not None:  # the next start goes on where it stopped
            self._building_task.cancel()
            await asyncio.gather(self._building_task, return_exceptions=True)
        await self.scheduler.stop()
        for warming in self._warming:
            try:
                await warming
            except Exception:  # the next use loads (and reports) it again
                log.exception("warming up a model failed")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stories.drain()
        self.llm.close()
        self.pictures.close()
        if self.stories.photos is not None:
            self.stories.photos.close()
        if self._story_llm is not None:
            self._story_llm.close()
        await self.db.close()
        if self.exclusive:
            self._lock.release()
        self.started = False
        log.info("engine stopped")

    # -- personas ---------------------------------------------------------------------------

    async def current_persona(self, user: UserRef, chat_key: str = "", *,
                              server: str = "") -> Persona:
        """The persona the user chose for this chat; then, in a server, the server's
        persona (set by its admins), elsewhere the user's global choice; else the default."""
        name = await self.conversations.persona_choice(user, chat_key, fallback=not server)
        if name is None and server:
            name = await self.conversations.setting(_server(server), "persona")
        if name in self.personas.names():
            return self.personas.get(name)
        return self.personas.default

    async def set_server_persona(self, server: str, name: str) -> Persona:
        """The persona a server's channels talk to unless a user chose another there
        (adapters let only the server's admins call this)."""
        persona = self.personas.get(name)
        await self.conversations.set_setting(_server(server), "persona", persona.name)
        return persona

    def persona(self, name: str) -> Persona:
        """A persona by name (any case); PersonaNotFound names the ones there are."""
        return self.personas.get(name)

    def _narrator_persona(self) -> Persona:
        name = self.config.stories.narrator_persona
        return self.personas.get(name) if name else self.personas.default

    async def set_persona(self, user: UserRef, name: str, chat_key: str = "") -> Persona:
        persona = self.personas.get(name)
        self.check_access(user, persona)
        await self.conversations.set_persona_choice(user, persona.name, chat_key)
        return persona

    async def reply_mode(self, user: UserRef) -> str:
        """``text``, ``voice`` or ``both``: the user's choice, else the configured default."""
        return await self.conversations.setting(user, "reply_mode") or \
            self.config.voice.reply_mode

    async def set_reply_mode(self, user: UserRef, mode: str) -> str:
        mode = mode.strip().lower()
        if mode not in ("text", "voice", "both"):
            raise InputError(f"bad reply mode {mode!r}",
                             user_message="Reply mode is text, voice or both.")
        await self.conversations.set_setting(user, "reply_mode", mode)
        return mode

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
        exchange = await self.conversations.begin_exchange(state, text)
        history = list(state.history)[:-1]  # the prompt takes the new message separately
        params = params or self.sampling
        voice = self.config.voice
        if brief:
            history = _last(history, voice.call_history)
            params = params.with_(max_tokens=min(params.max_tokens, voice.call_max_tokens))
        partial: list[str] = []
        try:
            place = server or chat_key
            told = (await self.user_memories.learn(user, p.name, text, exchange[0], place)
                    if learn else None)
            if told is not None and told.forgotten:
                notice = " ".join(filter(None, (notice, "Forgotten: " + " ".join(
                    m.to_them for m in told.forgotten))))
            facts = await self.user_memories.recall(user, p.name, text, place)
            grounded = await self.ground(p, text, user.key, facts,
                                         voice.call_context_tokens if brief else None)
            if brief:
                grounded = grounded.for_call()
            system, hits, message = grounded.system, grounded.hits, grounded.message
            job = self.scheduler.submit(
                LLM,
                ChatTurn(self.llm_for(p), system, history, message, params,
                         partial, tuple(state.summary), await self.identity(p)),
                user=user.key,
                kind="chat",
                priority=Priority.INTERACTIVE,
                timeout_s=self.config.engine.chat_timeout_s,
                on_position=on_position,
            )
        except BaseException:  # refused (queue full, ...): nothing of it stays stored
            await self.conversations.abort_exchange(state, exchange)
            raise
        task = asyncio.create_task(self._store_reply(job, partial, state, hits, exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if (told is not None and self.config.memory.user_facts_model
                and worth_asking(text, told.found)):
            self._read_for_facts(user, p, text, exchange[0], place)
        disclosure = await self._disclose(user, p)
        return ChatReply(p, job, hits, task, " ".join(x for x in (disclosure, notice) if x),
                         await self.reply_mode(user), state, exchange)

    async def prefill_call(self, user: UserRef) -> None:
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

        self.scheduler.submit(LLM, run, user=user.key, kind="prefill", priority=Priority.BATCH,
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

    # -- access -----------------------------------------------------------------------------

    def may_manage(self, user: UserRef, persona: Persona, *, is_admin: bool = False) -> bool:
        """Admins (by platform role, or in ``[engine] admins``) and the persona's owners."""
        return is_admin or persona.managed_by(user.key, self.config.engine.admins)

    def check_access(self, user: UserRef, persona: Persona, *, is_admin: bool = False) -> None:
        """An ``owner_only`` persona talks only to its owners and admins."""
        if persona.profile.owner_only and not self.may_manage(user, persona,
                                                                is_admin=is_admin):
            raise NotAllowed(f"{user.key} may not use {persona.name}", user_message=(
                f"{persona.display_name} is a private persona: only its owner can talk "
                "to it."))

    def visible_personas(self, user: UserRef, *, is_admin: bool = False) -> list[Persona]:
        """The personas this user may talk to (private ones only for their owners)."""
        return [p for p in self.personas.all() if not p.profile.owner_only
                or self.may_manage(user, p, is_admin=is_admin)]

    def user_files(self, user: UserRef) -> Path:
        """The folder for files made for this user (voice notes an adapter keeps);
        ``forget`` removes it."""
        digest = hashlib.sha256(user.key.encode()).hexdigest()[:24]
        return self.config.storage.data_dir / "users" / digest

    async def export(self, user: UserRef) -> bytes:
        """Everything stored about the user, as a zip (``/export``)."""
        from engine.export import PersonaFace, export_user

        user_id = await self.conversations.find_user_id(user)
        if user_id is None:
            raise UserNotFound(user.key)
        faces = [PersonaFace(p.name, p.display_name, p.profile.avatar)
                 for p in self.personas.all()]
        return await export_user(self.db, user_id, self.voice.library.root, user, faces)

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

    async def _persona(self, user: UserRef, chat_key: str, name: str | None) -> Persona:
        return self.personas.get(name) if name else await self.current_persona(user, chat_key)

    async def _store_reply(self, job: Job[Completion], partial: list[str],
                           state: ConversationState, hits: list[Hit],
                           exchange: tuple[int, int]) -> ChatResult:
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
        message_id = await self.conversations.finish_reply(state, exchange[1], text,
                                                           status=status, tokens=tokens)
        return ChatResult(
            status=status, text=text, message_id=message_id, tokens=tokens, error=error,
            wait_s=job.wait_s, run_s=job.run_s,
            first_token_s=completion.first_token_s if completion else None,
            sources=hits,
        )

    async def favourite_message(self, user: UserRef, message_id: int) -> StoredMessage:
        return await self.conversations.favourite_message(user, message_id)

    async def forget(self, user: UserRef) -> bool:
        """Delete everything stored about the user: messages, stories, favourites, saved
        prompts, custom genres, settings and the voices they cloned (clips and latents).
        Their running requests are cancelled first."""
        self.cancel(user)
        self.voices.cancel(user)
        self._disclosed = {d for d in self._disclosed if d[0] != user.key}
        uid = await self.conversations.find_user_id(user)  # forgetting creates no one
        voice_ids = await self.voice.library.ids_created_by(uid) if uid is not None else []
        forgotten = await self.conversations.forget(user)
        await self.inbox.forget_user(user.key)
        for voice_id in voice_ids:
            self.voice.forget_voice(voice_id)
        self.voice.library.remove_files(voice_ids)
        shutil.rmtree(self.user_files(user), ignore_errors=True)
        await self.db.scrub()
        return forgotten

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

    def cancel(self, user: UserRef) -> int:
        """Cancel the user's queued and running requests (``/cancel``)."""
        return self.scheduler.cancel_user(user.key)

    # -- history ----------------------------------------------------------------------------

    async def history(
        self, user: UserRef, *, chat_key: str = "", persona: str | None = None, limit: int = 20
    ) -> list[StoredMessage]:
        """The newest ``limit`` messages of the user's open conversation, oldest first."""
        p = await self._persona(user, chat_key, persona)
        return await self.conversations.recent(user, p.name, chat_key, limit)

    async def said_so_far(self, user: UserRef, *, chat_key: str = "",
                          persona: str | None = None) -> int:
        """How many messages the user has sent in their open conversation (up to the kept
        history's length): how long an exchange is, for platforms that move long ones to
        a thread of their own."""
        p = await self._persona(user, chat_key, persona)
        state = await self.conversations.open(user, p.name, chat_key)
        return sum(1 for m in state.history if m.role == "user")

    async def reset(self, user: UserRef, *, chat_key: str = "", persona: str | None = None) -> int:
        """Start a fresh conversation; the old one stays stored but is no longer in the prompt."""
        p = await self._persona(user, chat_key, persona)
        return await self.conversations.close(user, p.name, chat_key)


def _last(history: Sequence[ChatMessage], n: int) -> list[ChatMessage]:
    """The last ``n`` messages of ``history`` (a live call's prompt holds no more)."""
    return list(history[-n:]) if n > 0 else []


def _server(server: str) -> UserRef:
    """The settings of a server (Discord guild, Telegram group) live on a pseudo-user."""
    return UserRef("server", server)


def _status_of(error: DoppelError | None) -> str:
    """The stored status of a reply that ended with ``error``."""
    if error is None:
        return "complete"
    if isinstance(error, JobTimeout):
        return "timeout"
    if isinstance(error, JobCancelled | SchedulerStopped):
        return "cancelled"
    return "error"
