"""The story feature: generate, suggest, remember, find, favourite. Every query is per user."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from engine.conversations import ConversationStore
from engine.errors import FeatureUnavailable, InputError, JobTimeout, ModelError
from engine.llm.base import LLMBackend, LogprobMeter, SamplingParams
from engine.ratelimit import RateLimiter
from engine.records import UserRef
from engine.reply_text import CleanStream, end_at_sentence
from engine.scheduler import Job, JobContext, PositionCallback, Priority, Scheduler
from engine.storage.db import Database
from engine.storage.models import Story, StorySuggestion
from engine.stories import safety
from engine.stories.library import StoryLibrary, StoryRecord
from engine.stories.options import StoryRequest, normalise, sampling_for
from engine.stories.prompt import (
    FALLBACK,
    about_photo,
    parse_suggestions,
    split_title,
    story_messages,
    suggestion_messages,
)
from engine.stories.quality import (
    LoopGuard,
    min_words,
    right_script,
    strip_echoed_tags,
    words,
)
from engine.vision.service import NO_VISION, PhotoReader
from engine.voice.audio import VoiceNote

__all__ = ["Narrator", "Stories", "StoryRecord", "StoryReply"]

SENTENCE_END = re.compile(r"[.!?।\n][\"')\]]?\s")
HOLD_WORDS = 25
"""Words of a story held back until they pass the language and loop checks."""
ATTEMPTS = 3
"""Tries at a story whose start failed those checks (nothing of it was shown)."""
STUB_WORDS = 10
"""Fewer words than this is no story at all (a title, a tag, a link): written again."""
STOP = ("\n[GENRE]",)
"""A story model trained on the /story format starts its next request's tags after a story."""


@dataclass(frozen=True)
class _Output:
    text: str
    tokens: int
    score: float | None
    filtered: bool
    problem: str = ""
    """"" (a story), "language", "loop", "short" (still a story) or "stub" (fewer than
    :data:`STUB_WORDS` words: none; see :mod:`engine.stories.quality`)."""
    shown: bool = False
    """Some of it was streamed to the user."""


def _pick(outs: list[_Output]) -> _Output:
    """The best candidate: a story of the length asked for over a short one, a short one
    over one that loops, then the wrong script, then one the content filter stopped; among
    stories the highest body score, among the rest the longest."""
    if not outs:
        return _Output("", 0, None, False, "short")

    def rank(o: _Output) -> tuple[int, float]:
        grade = 0 if o.filtered else {"language": 1, "loop": 2, "short": 3,
                                      "stub": 3}.get(o.problem, 4)
        return (grade, (o.score if o.score is not None else float("-inf")) if grade == 4
                else float(len(o.text)))

    return max(outs, key=rank)


class StoryReply:
    """A story being written: iterate for text (whole sentences that passed the content
    filter), then ``await result()`` for the stored story, or the reason there is none."""

    def __init__(self, request: StoryRequest, job: Job[_Output],
                 done: asyncio.Task[StoryRecord]) -> None:
        self.request = request
        self.job = job
        self._done = done

    def __aiter__(self) -> AsyncIterator[str]:
        return self.job.chunks()  # result() says how it ended

    async def result(self) -> StoryRecord:
        """The stored story; raises the job's error (cancelled, timeout, ...) if it failed."""
        return await asyncio.shield(self._done)


class _PartialSaver:
    """Saves a story's text so far while it is written: the worker thread hands over the
    latest text; one write at a time, always of the newest text."""

    def __init__(self, db: Database, story_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.db = db
        self.story_id = story_id
        self.loop = loop
        self.latest: str | None = None
        self.task: asyncio.Task[None] | None = None

    def save(self, text: str) -> None:
        """From the worker thread."""
        self.loop.call_soon_threadsafe(self._schedule, text)

    def _schedule(self, text: str) -> None:
        self.latest = text
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self.latest is not None:
            text, self.latest = self.latest, None
            async with self.db.session() as s, s.begin():
                await s.execute(update(Story).where(Story.id == self.story_id,
                                                    Story.status == "pending")
                                .values(content=text))

    async def flush(self) -> None:
        """Wait for the write in flight (the job has ended: no new text comes)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class Narrator:
    """Hook for the voice pipeline: turns a story into voice notes (one per chapter)."""

    async def narrate(self, story: StoryRecord, user: str = "system") -> list[VoiceNote]:
        raise FeatureUnavailable(user_message="Reading stories aloud arrives with voice "
                                              "replies; for now the story is text only.")


class Stories(StoryLibrary):
    """Children's stories: written by the model (with the person's genres and prompts,
    kept in their history, ``StoryLibrary``), suggested, narrated."""

    def __init__(self, db: Database, scheduler: Scheduler, users: ConversationStore,
                 llm: LLMBackend, resource: str, timeout_s: float, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(db, users, clock)
        self.scheduler = scheduler
        self.llm = llm
        self.resource = resource
        self.timeout_s = timeout_s
        self.narrator = Narrator()
        self.photos: PhotoReader | None = None
        """Describes a photo a story is to be about (``[vision]``)."""
        self.rate: RateLimiter | None = None
        self._tasks: set[asyncio.Task[StoryRecord]] = set()

    # -- writing ----------------------------------------------------------------------------

    async def create(self, user: UserRef, request: StoryRequest, *, chat_key: str = "",
                     on_position: PositionCallback | None = None,
                     seed: int | None = None, photo: bytes | None = None) -> StoryReply:
        """Queue a story (below chat in priority); with ``photo``, a story about what the
        photo shows (described first by the vision model; the photo is not kept). Raises
        InputError for a bad or unsuitable request or photo, FeatureUnavailable for a photo
        without a vision model, QueueFull / UserQueueFull when it cannot be queued."""
        req = normalise(request, await self.genre_names(user))
        safety.check_request(req.characters, req.prompt, req.genre)
        if self.rate is not None:
            self.rate.take(user.key, cost=2.0)  # a story is a bigger job than a chat turn
        if photo is not None:
            if self.photos is None:
                raise FeatureUnavailable("no photo reader", user_message=NO_VISION)
            req = replace(req, prompt=about_photo(req.prompt,
                                                  await self.photos.describe(user, photo)))
        uid = await self.users.user_id(user)
        # The row exists while the story is written ('pending', its text saved sentence by
        # sentence): a process killed meanwhile leaves the partial story, found at start.
        row = Story(user_id=uid, chat_key=chat_key, genre=req.genre, status="pending",
                    characters=req.characters, prompt=req.prompt, age_group=req.age_group,
                    language=req.language, length=req.length, sampling=req.preset)
        async with self.db.session() as s, s.begin():
            s.add(row)
        saver = _PartialSaver(self.db, row.id, asyncio.get_running_loop())
        try:
            job = self.scheduler.submit(
                self.resource, self._write_job(req, sampling_for(req, seed), saver.save),
                user=user.key, kind="story", priority=Priority.STORY,
                timeout_s=self.timeout_s, on_position=on_position)
        except BaseException:
            await self._discard(row.id)
            raise
        task = asyncio.create_task(self._store(row.id, req, job, saver))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return StoryReply(req, job, task)

    def _forget(self, task: asyncio.Task[StoryRecord]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # read by StoryReply.result(); never an unhandled warning

    def _write_job(self, req: StoryRequest, params: SamplingParams,
                   on_text: Callable[[str], None] = lambda _text: None,
                   ) -> Callable[[JobContext], _Output]:
        """The writing job; ``on_text`` gets the text so far after each streamed sentence
        (called on the worker thread).

        The first words are held back until they are in the script of the language asked
        for and not going round in circles; a candidate that fails there is thrown away
        unseen and written again (up to :data:`ATTEMPTS` times, repeating less). A loop
        later on ends the story at its last good sentence. ``best_of_n`` writes N
        candidates unseen and keeps the best (:func:`_pick`): long enough, no loop, the
        right script, then the highest mean log-probability of its body (the title left
        out, so a short "title and one line" cannot win on likelihood)."""
        messages = story_messages(req)
        least = min_words(req.max_tokens)

        def candidate(ctx: JobContext, emit: bool, attempt: int) -> _Output:
            meter = LogprobMeter()
            p = params if params.seed is None else params.with_(seed=params.seed + attempt)
            if attempt and emit:  # written again after a bad start: repeat less (greedy
                # decoding would otherwise write the same again)
                p = p.with_(repeat_penalty=max(p.repeat_penalty, 1.15 + 0.15 * attempt))
            p = p.with_(stop=tuple(dict.fromkeys((*p.stop, *STOP))))
            text, pending, tokens, problem = "", "", 0, ""
            released = 0  # characters of ``text`` past the start checks (and emitted)
            guard = LoopGuard()
            stream = CleanStream()  # the prompt's tag lines never reach a title or a voice
            title_end: tuple[float, int] | None = None  # the meter when the title ended

            def out(filtered: bool = False) -> _Output:
                body = ((meter.total - title_end[0], meter.tokens - title_end[1])
                        if title_end else (meter.total, meter.tokens))
                score = body[0] / body[1] if body[1] else meter.mean
                return _Output(text, tokens, score, filtered, problem, emit and released > 0)

            def release(final: bool = False) -> None:
                """Emit the text so far once its start has passed the checks."""
                nonlocal released, problem
                if not released and not final and len(words(text)) < HOLD_WORDS:
                    return  # still holding
                if not released and not right_script(text, req.language):
                    problem = "language"
                    return
                if emit and len(text) > released:
                    ctx.emit(text[released:])
                    on_text(text)
                released = max(len(text), 1)

            for piece in self.llm.stream_chat(messages, p, lambda: ctx.cancelled, meter):
                tokens += 1
                pending += stream.feed(piece)
                # Only whole sentences leave, and only after passing the filter.
                while not problem and (m := SENTENCE_END.search(pending)) is not None:
                    sentence, pending = pending[:m.end()], pending[m.end():]
                    sentence = strip_echoed_tags(sentence)
                    if not sentence.strip() and not text.strip():
                        continue  # nothing but an echoed tag before the story
                    if safety.flagged(sentence):
                        text += sentence
                        return out(filtered=True)
                    if guard.sentence(sentence):
                        problem, pending = "loop", ""
                        break
                    text += sentence
                    if title_end is None and "\n" in sentence and text.strip():
                        title_end = (meter.total, meter.tokens)
                    release()
                if not problem and guard.runs_on(pending):
                    problem, pending = "loop", ""
                if problem:
                    break
            if not problem:
                pending = strip_echoed_tags(pending + stream.close())
                if ctx.cancelled:  # stopped (a timeout keeps the text): whole sentences only
                    pending = ""
                elif tokens >= p.max_tokens:  # cut off: end at a sentence
                    pending = end_at_sentence(text + pending)[0][len(text):]
                if safety.flagged(pending):
                    text += pending
                    return out(filtered=True)
                if guard.sentence(pending):
                    problem = "loop"
                else:
                    text += pending
            if not released and problem != "language" and not right_script(text, req.language):
                problem = "language"  # (a story partly shown passed this check already)
            elif problem == "loop" and len(words(text)) >= least:
                problem = ""  # it went round in circles late: the story ends before that
            elif not problem and len(words(text)) < least:
                problem = "stub" if len(words(text)) < STUB_WORDS else "short"
            if problem in ("", "short") or released:  # a story, or one already shown
                release(final=True)
            return out()

        def run(ctx: JobContext) -> _Output:
            if req.preset != "best_of_n":
                tries: list[_Output] = []
                for attempt in range(ATTEMPTS):
                    tries.append(candidate(ctx, True, attempt))
                    last = tries[-1]
                    if last.problem in ("", "short") or last.shown or last.filtered \
                            or ctx.cancelled:
                        return last  # a short story is still a story: kept as written
                return shown(ctx, _pick(tries))  # all three failed: the best of them
            outs: list[_Output] = []
            for i in range(req.best_of):
                if ctx.cancelled:
                    break  # timed out or cancelled: the best of those written
                outs.append(candidate(ctx, False, i))
            return shown(ctx, _pick(outs))

        def shown(ctx: JobContext, best: _Output) -> _Output:
            """Emit a candidate written unseen, if it is to be kept."""
            if best.text and not best.shown and not best.filtered and best.problem != "language":
                ctx.emit(best.text)
                return replace(best, shown=True)
            return best

        return run

    async def _store(self, story_id: int, req: StoryRequest, job: Job[_Output],
                     saver: _PartialSaver) -> StoryRecord:
        try:
            try:
                out = await job.result()  # errors (cancel, model) propagate
            except JobTimeout as exc:  # keep what was written, if anything was
                if not isinstance(exc.partial, _Output) or not exc.partial.text.strip():
                    raise
                out, unfinished = exc.partial, True
            else:
                unfinished = False
            if out.problem == "language":
                raise FeatureUnavailable("story in another language", user_message=(
                    f"The story model ({self.llm.description}) writes no "
                    f"{req.language_name}: it answered in another language three times. "
                    "A multilingual model can, for example `doppel model pull qwen2.5-7b` "
                    "(an 8 GB GPU, or 16 GB of memory)."))
            if out.filtered:
                raise InputError("story failed the content filter",
                                 user_message=safety.OUTPUT_REFUSAL)
            if not out.text.strip():
                raise ModelError("empty story", user_message="I couldn't think of a story "
                                                             "just now. Please try again.")
        except BaseException:  # a failed story is not kept (the user was told why)
            await saver.flush()
            await self._discard(story_id)
            raise
        await saver.flush()
        title, body = split_title(out.text, req)
        if unfinished:
            title = f"{title[:280]} (unfinished)"
        async with self.db.session() as s, s.begin():
            row = await s.get(Story, story_id)
            if row is None:  # the user was forgotten meanwhile
                raise InputError("story gone", user_message="That story was deleted.")
            row.title, row.content = title[:300], body
            row.status = "interrupted" if unfinished else "complete"
            row.tokens, row.score = out.tokens, out.score
        return StoryRecord.of(row)

    async def _discard(self, story_id: int) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(delete(Story).where(Story.id == story_id))

    async def recover_interrupted(self) -> int:
        """At start: stories still ``pending`` were cut off by a crash. Those with text are
        kept as ``interrupted`` (in the history, marked so); empty ones are dropped."""
        kept = 0
        async with self.db.session() as s, s.begin():
            rows = (await s.scalars(select(Story).where(Story.status == "pending"))).all()
            for row in rows:
                if not row.content.strip():
                    await s.delete(row)
                    continue
                title, body = split_title(row.content, StoryRequest(
                    genre=row.genre, characters=row.characters, prompt=row.prompt))
                row.title = f"{title[:280]} (unfinished)"
                row.content, row.status = body, "interrupted"
                kept += 1
        return kept

    async def narrate(self, user: UserRef, story_id: int) -> list[VoiceNote]:
        return await self.narrator.narrate(await self.open(user, story_id), user.key)

    # -- suggestions ------------------------------------------------------------------------

    async def suggestions(self, user: UserRef, genre: str = "adventure", language: str = "en",
                          age_group: str = "6-8", *, refresh: bool = False) -> list[str]:
        """Five prompt ideas for (genre, language, age group), made by the model once a day
        and cached; ``refresh`` makes new ones ("more suggestions")."""
        req = normalise(StoryRequest(genre=genre, language=language, age_group=age_group),
                        await self.genre_names(user))
        day = self.clock().date().isoformat()
        key = (StorySuggestion.genre == req.genre, StorySuggestion.language == req.language,
               StorySuggestion.age_group == req.age_group, StorySuggestion.day == day)
        async with self.db.session() as s:
            row = await s.scalar(select(StorySuggestion).where(*key))
        if row is not None and not refresh:
            return list(json.loads(row.items))
        messages = suggestion_messages(req.genre, req.language, req.age_group)
        params = SamplingParams(max_tokens=160, temperature=0.9, top_p=0.95)

        def run(ctx: JobContext) -> list[str]:
            pieces = list(self.llm.stream_chat(messages, params, lambda: ctx.cancelled))
            return parse_suggestions("".join(pieces), req.language,
                                     cut_off=len(pieces) >= params.max_tokens)

        job = self.scheduler.submit(self.resource, run, user=user.key, kind="suggestions",
                                    priority=Priority.STORY, timeout_s=self.timeout_s)
        ideas = [i for i in await job.result() if not safety.flagged(i)]
        pool = [f.format(g=req.genre) for f in FALLBACK[req.language]]
        random.Random(f"{day}{req.genre}{req.age_group}{time.monotonic() if refresh else ''}"
                      ).shuffle(pool)
        ideas = (ideas + [p for p in pool if p not in ideas])[:5]
        async with self.db.session() as s, s.begin():
            await s.execute(delete(StorySuggestion).where(*key))
            s.add(StorySuggestion(genre=req.genre, language=req.language,
                                  age_group=req.age_group, day=day, items=json.dumps(ideas)))
        return ideas

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
