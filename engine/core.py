"""The engine's core: what it owns (models, queue, storage, the services) and its life
(start, drain, stop); personas, access and history. ``engine.engine.Engine`` adds chat."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.achievements import Achievements
from engine.api_tokens import ApiTokens
from engine.config import Config
from engine.conversations import ConversationStore, KnownUser
from engine.errors import (
    ConfigError,
    DoppelError,
    InputError,
    NotAllowed,
    PersonaNotFound,
    UserNotFound,
)
from engine.feedback import Feedback
from engine.images.service import Pictures
from engine.inbox import Inbox
from engine.llm.base import LLMBackend, SamplingParams
from engine.llm.factory import make_backend
from engine.locking import DataDirLock
from engine.memory.embed import Embedder
from engine.memory.first_build import BuildProgress, build_missing
from engine.memory.service import EMBED, Memory
from engine.personas import PERSONA_FILE, Persona, PersonaRegistry
from engine.profile import MODEL, Profile
from engine.ratelimit import RateLimiter
from engine.records import EngineStatus, StoredMessage, UserRef
from engine.scheduler import Scheduler
from engine.storage.db import Database
from engine.storage.private import (
    folder_key,
    folder_name,
    has_unkeyed,
    make_private,
    rename_unkeyed,
)
from engine.stories.service import Stories
from engine.usermemory.store import UserMemories
from engine.vision.service import PhotoReader
from engine.voice.cloning import VoiceCloning
from engine.voice.library import VoiceLibrary
from engine.voice.narrate import VoiceNarrator
from engine.voice.service import Voice
from engine.web_sign_in import WebSignIn

log = logging.getLogger(__name__)

LLM = "llm"
STORY_LLM = "story_llm"



class EngineCore:
    """What an engine owns and how it starts and stops (``Engine`` is the one to use)."""

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
        self._folder_key: bytes | None = None
        """The key user folders are named with (``engine.storage.private``), read once."""
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

    async def start(self, profile: Profile = MODEL) -> None:
        """Open storage, start the workers, load the model (not for tools that only need
        memory, such as ``doppel ingest``). A persona whose memory is not built yet gets it
        built now; with ``background_ingest`` (a server) while people already talk, each
        told how far it got.

        A shared profile (not ``exclusive``) is for commands that only read or change
        records in the database (``persona show``, ``story history``, ``users``,
        ``export``): they run beside a server on the same data dir (SQLite in WAL mode
        allows that), never load a model, never open the embedded vector store and never
        touch the server's unfinished work.
        """
        load_llm, exclusive = profile.load_llm, profile.exclusive
        background_ingest = profile.background_ingest
        t0 = time.perf_counter()
        self.exclusive = exclusive
        make_private(self.config.storage.data_dir)
        if exclusive:
            self._lock.acquire()
        else:
            self.memory.shared, load_llm = True, False
        await self.db.start()
        if exclusive:
            await self._recover()
            users_dir = self.config.storage.data_dir / "users"
            if has_unkeyed(users_dir):  # folders from an earlier version: looked up once
                keys = [u.ref.key for u in await self.conversations.find_users()]
                moved = rename_unkeyed(users_dir, self._user_folder_key(), keys)
                log.info("renamed %d user folders to keyed names", moved)
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
        for warming in self._warming:  # stopped before a model was warm: not wanted now
            warming.cancel()
        for warming in self._warming:
            try:
                await warming
            except asyncio.CancelledError:
                pass
            except DoppelError as exc:  # it says what is wrong (a damaged store, ...)
                log.warning("warming up a model failed: %s", exc)
            except Exception:  # the next use loads (and reports) it again
                log.exception("warming up a model failed")
        await self.scheduler.stop()
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

    def find_persona(self, user: UserRef, name: str) -> Persona:
        """The persona ``user`` asks for by name; not found names only those they may use
        (a private persona's name is not told to strangers)."""
        try:
            return self.personas.get(name)
        except PersonaNotFound as exc:
            raise PersonaNotFound(name, [p.name for p in self.visible_personas(user)]
                                  ) from exc

    async def set_persona(self, user: UserRef, name: str, chat_key: str = "") -> Persona:
        persona = self.find_persona(user, name)
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

    # -- what operators see -----------------------------------------------------------------

    def status(self) -> EngineStatus:
        """The queues, the model, the memory builds and the generation speed now."""
        queues = self.scheduler.stats()
        return EngineStatus(
            started=self.started, queues=queues, kinds=self.scheduler.kind_metrics(),
            queued=sum(s["queued"] for s in queues.values()), model=self.llm.description,
            building={name: b.percent for name, b in self.building.items()},
            generated_tokens=self.generated_tokens,
            tokens_per_s=(self.generated_tokens / self.generation_s
                          if self.generation_s else 0.0),
            problem="" if self.db.intact() else self.db.gone)

    def is_operator(self, user: UserRef) -> bool:
        """One of ``[engine] admins``: sees ratings, queues and every persona's voices."""
        return user.key in self.config.engine.admins

    @property
    def data_dir(self) -> Path:
        return self.config.storage.data_dir

    @property
    def grace_s(self) -> float:
        """How long running replies may finish at shutdown (``[engine] shutdown_grace_s``):
        adapters close what stays open (calls, event streams) after it."""
        return self.config.engine.shutdown_grace_s

    @property
    def preloads_speech(self) -> bool:
        """``[voice] preload``: a server loads Piper and Whisper at start."""
        return self.config.voice.preload

    async def find_users(self, query: str = "", *, exact: bool = False) -> list[KnownUser]:
        """Users whose ``platform:id``, id or name matches ``query`` (all when empty);
        ``exact``: only an exact key, id or name (what destructive commands act on)."""
        return await self.conversations.find_users(query, exact=exact)

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
        ``forget`` removes it. Its name is a keyed hash of who they are."""
        return self.config.storage.data_dir / "users" / folder_name(self._user_folder_key(),
                                                                     user.key)

    def _user_folder_key(self) -> bytes:
        if self._folder_key is None:
            self._folder_key = folder_key(self.config.storage.data_dir)
        return self._folder_key

    def stored_file(self, folder: str, name: str) -> Path | None:
        """A file kept in a user's folder (``user_files(user).name``), if it is there; a
        name that is not a plain one is never looked up."""
        if not folder.isalnum() or not name or "/" in name or name.startswith("."):
            return None
        path = self.config.storage.data_dir / "users" / folder / name
        return path if path.is_file() else None

    async def export(self, user: UserRef) -> bytes:
        """Everything stored about the user, as a zip (``/export``)."""
        from engine.export import PersonaFace, export_user

        user_id = await self.conversations.find_user_id(user)
        if user_id is None:
            raise UserNotFound(user.key)
        faces = [PersonaFace(p.name, p.display_name, p.profile.avatar)
                 for p in self.personas.all()]
        return await export_user(self.db, user_id, self.voice.library.root, user, faces,
                                 files=self.user_files(user))

    async def favourite_message(self, user: UserRef, message_id: int) -> StoredMessage:
        return await self.conversations.favourite_message(user, message_id)

    async def forget(self, user: UserRef) -> bool:
        """Delete everything stored about the user: messages, stories, favourites, saved
        prompts, custom genres, settings and the voices they cloned (clips and latents).
        Their running requests are cancelled first."""
        self.cancel(user)
        self.voices.cancel(user)
        self.web.ended(user)  # a live call on one of their sessions ends now
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


    async def _persona(self, user: UserRef, chat_key: str, name: str | None) -> Persona:
        return (self.find_persona(user, name) if name
                else await self.current_persona(user, chat_key))

    def cancel(self, user: UserRef) -> int:
        """Cancel the user's queued and running requests (``/cancel``)."""
        return self.scheduler.cancel_user(user.key)

def _server(server: str) -> UserRef:
    """The settings of a server (Discord guild, Telegram group) live on a pseudo-user."""
    return UserRef("server", server)
