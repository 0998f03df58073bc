"""A live voice call with a persona: the person talks, the persona answers in its voice,
turn by turn, with nothing to press.

Audio comes in as 16 kHz mono 16-bit PCM in frames of any size (``feed``). Silero VAD
marks speech (engine/voice/vad.py). At the first short pause the words so far are already
being transcribed, speculatively; after ``[voice] call_end_silence_ms`` of silence the turn
is over and, unless the person spoke again in between, that transcript is the one answered.
The answer goes through ``Engine.chat`` like any message (same conversation, same history)
and is spoken sentence by sentence as the model writes it (``Voice.speech``); each
sentence's audio is handed out the moment it exists. While the persona talks, speech for
``call_barge_in_ms`` is a barge-in: the reply stops, and what the person heard of it is
what the history keeps. While the person talks, the transcript so far is shown every
``call_partial_s`` of speech.

Speech that resumes before the answer is heard continues the turn if it comes within
``_RESUME_S`` of the turn's end (they were not done); after a longer pause it is a turn of
its own, answered after the one before. Work a turn makes superseded (a transcript so far,
a guess at a pause, the model reading ahead) is cancelled at once, so that the person's own
earlier jobs never fill their share of the queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engine.call_events import CallEvent, Emit, stages
from engine.engine import ChatReply, Engine
from engine.errors import DoppelError
from engine.records import UserRef
from engine.scheduler import Job, Priority
from engine.voice.vad import RATE, WINDOW, Endpointer, SileroVAD, Turn

log = logging.getLogger(__name__)

_PREROLL = 10
"""Windows (320 ms) kept from before speech was detected: its first syllable."""
_MIN_SPEECH_S = 0.25
"""Less voiced audio than this is a noise (a cough, a click), not a turn."""
_RESUME_S = 1.5
"""Speech again this soon after a turn ended, its answer not heard yet, goes on with it."""
SORRY = "Sorry, something went wrong on my side. Please say that again."


@dataclass
class _Guess:
    """At a pause: the words so far, transcribed and, unless the person is talking over
    the persona, already being answered (held back until the turn is sure)."""

    covers: int
    """Samples of the utterance it was made from."""
    task: asyncio.Task[tuple[str, ChatReply | None]]
    words: asyncio.Task[str]
    """Its transcription (``task`` goes on to ask for the answer)."""
    marks: dict[str, float]
    """When its transcript was ready and its answer asked for (``clock``)."""


@dataclass
class _Utterance:
    windows: list[NDArray[np.float32]]
    voiced: int = 0
    """Voiced windows so far."""
    last_voiced: int = 0
    """Samples into the utterance up to the end of its last voiced window."""
    partial_at: int = 0
    """Samples the last partial transcript covered."""
    barging: bool = False
    """It began while the persona was talking: a barge-in once it is long enough."""
    guess: _Guess | None = None
    """What was made of it at its last pause."""

    @property
    def samples(self) -> int:
        return len(self.windows) * WINDOW

    def audio(self) -> NDArray[np.float32]:
        return np.concatenate(self.windows)


class LiveCall:
    """One person on a call with their current persona. ``start``, ``feed`` audio as it
    arrives, ``played`` when the client's playback ran out, ``close`` at hang-up."""

    def __init__(self, engine: Engine, user: UserRef, emit: Emit, *,
                 vad: SileroVAD | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock
        """Seconds; what was heard of a reply is reckoned by it (playback runs in real
        time from the first audio)."""
        self.user = user
        self._emit = emit
        cfg = engine.config.voice
        self.cfg = cfg
        self.vad = vad or SileroVAD()
        self.endpoint = Endpointer(threshold=cfg.call_vad_threshold,
                                   end_ms=cfg.call_end_silence_ms)
        self._barge_windows = max(1, round(cfg.call_barge_in_ms * RATE / 1000 / WINDOW))
        self._pending = np.zeros(0, dtype=np.int16)
        self._at = 0
        """Samples heard since the call began."""
        self._last_voice_at = -RATE * 3600
        """Where the last voiced window ended (``_at``)."""
        self._preroll: deque[NDArray[np.float32]] = deque(maxlen=_PREROLL)
        self._utterance: _Utterance | None = None
        self._speech_end_t = 0.0
        self._partial: asyncio.Task[None] | None = None
        self._control: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._controller: asyncio.Task[None] | None = None
        self._ending = 0
        """Utterances over but not yet answered (transcribing)."""
        self._turn: asyncio.Task[None] | None = None
        self._reply: ChatReply | None = None
        self._asked = ""
        """What the reply being spoken answers."""
        self._spoken: list[tuple[str, float]] = []
        self._first_audio_t: float | None = None
        self._speaking_until = 0.0
        self._carry = ""
        """Words of a turn cut off before any answer was heard: they begin the next one."""
        self._held_disclosure = ""
        """The AI disclosure of an answer asked for on a guess that was dropped."""
        self._background: set[asyncio.Task[None]] = set()
        self._prefilled: Job[None] | None = None
        self._hung_up = asyncio.Event()
        self.closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the speech models (if not yet loaded) and start listening."""
        await self.engine.voice.preload()
        self._controller = asyncio.create_task(self._run_control())

    async def close(self) -> None:
        """Hang up: a reply being spoken stops (what was heard of it is kept)."""
        if self.closed:
            return
        self.closed = True
        self._hung_up.set()
        self._control.put_nowait(None)  # the steps already under way finish first
        if self._controller is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller
        await self._stop_turn()
        if self._partial is not None:
            self._partial.cancel()
        if self._utterance is not None:
            self._drop(self._utterance.guess)
        self._read_ahead(None)
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _run_control(self) -> None:
        """Run the call's steps one after another (a barge-in before the next answer)."""
        while (step := await self._control.get()) is not None:
            await self._guarded("a step", step())

    async def _guarded(self, what: str, work: Awaitable[None]) -> None:
        """Run ``work``; a failure becomes a short notice to the person and a log line."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except DoppelError as exc:
            await self._say("notice", text=exc.user_message)
        except Exception:
            log.exception("live call of %s: %s failed", self.user.key, what)
            await self._say("notice", text=SORRY)

    async def _say(self, kind: str, **fields: object) -> None:
        if self.closed and kind not in ("done", "barge_in"):
            return
        try:
            await self._emit(CallEvent(kind, **fields))  # type: ignore[arg-type]
        except Exception:  # the client went away: the adapter closes the call
            log.debug("live call of %s: could not send %s", self.user.key, kind)

    # -- audio in ---------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """16 kHz mono signed 16-bit little-endian samples, as they were recorded."""
        if self.closed:
            return
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(buf) // WINDOW * WINDOW
        self._pending = buf[whole:].copy()
        for i in range(0, whole, WINDOW):
            self._window(buf[i:i + WINDOW].astype(np.float32) / 32768.0)

    def played(self) -> None:
        """The client has played everything it was sent."""
        if self._turn is None or self._turn.done():
            self._speaking_until = 0.0

    @property
    def persona_talking(self) -> bool:
        """The persona is answering (thinking or speaking) or its audio is still playing."""
        return (self._ending > 0 or (self._turn is not None and not self._turn.done())
                or self.clock() < self._speaking_until)

    @property
    def _audible(self) -> bool:
        """The persona's answer is being spoken (its audio has begun) or still plays."""
        speaking = (self._turn is not None and not self._turn.done()
                    and self._first_audio_t is not None)
        return speaking or self.clock() < self._speaking_until

    def _window(self, window: NDArray[np.float32]) -> None:
        p = self.vad(window)
        self._at += WINDOW
        u = self._utterance
        if u is None:
            self._preroll.append(window)
        else:
            u.windows.append(window)
        turn = self.endpoint.step(p)
        if turn is Turn.STARTED:
            # Talking over an answer that plays, or going on with what they had said: a
            # barge-in. After a longer pause, before the answer is heard: a turn of its own.
            resumes = (self._at - self._last_voice_at) / RATE < _RESUME_S
            u = self._utterance = _Utterance(
                list(self._preroll),
                barging=self.persona_talking and (self._audible or resumes))
            self._preroll.clear()
            self._control.put_nowait(lambda: self._say("speech"))
        if u is None:
            return
        if p >= self.endpoint.on:
            self._last_voice_at = self._at
            u.voiced += 1
            u.last_voiced = u.samples
            self._speech_end_t = self.clock()
            if u.barging and u.voiced >= self._barge_windows:
                u.barging = False
                self._control.put_nowait(self._barge_in)
            if u.samples - u.partial_at >= self.cfg.call_partial_s * RATE:
                self._start_partial(u)
        if turn is Turn.PAUSED:
            self._drop(u.guess)
            self._stop_partial()  # the guess covers more
            ask = (not u.barging and not self.persona_talking and not self._carry
                   and u.voiced * WINDOW >= _MIN_SPEECH_S * RATE)
            words = asyncio.create_task(self._transcribe(u.audio()))
            marks: dict[str, float] = {}
            u.guess = _Guess(u.samples, asyncio.create_task(
                self._guess(u, words, u.samples, ask, marks)), words, marks)
        elif turn is Turn.ENDED or u.samples >= self.cfg.call_max_utterance_s * RATE:
            self._end_utterance(u)

    def _stop_partial(self) -> None:
        if self._partial is not None and not self._partial.done():
            self._partial.cancel()

    def _start_partial(self, u: _Utterance) -> None:
        if self._partial is not None and not self._partial.done():
            return  # one at a time: the next one covers more
        u.partial_at = u.samples
        audio = u.audio()

        async def partial() -> None:
            text = await self._transcribe(audio, Priority.STORY)
            if text and self._utterance is u:
                await self._say("partial", text=" ".join(filter(None, (self._carry, text))))

        self._partial = asyncio.create_task(partial())

    async def _transcribe(self, audio: NDArray[np.float32],
                          priority: Priority = Priority.INTERACTIVE) -> str:
        try:
            return await self.engine.voice.transcribe_pcm(audio, user=self.user.key,
                                                          priority=priority)
        except DoppelError as exc:
            log.info("live call of %s: no transcript (%s)", self.user.key, exc)
            return ""

    async def _guess(self, u: _Utterance, words: asyncio.Task[str], covers: int,
                     ask: bool, marks: dict[str, float]) -> tuple[str, ChatReply | None]:
        """The words up to the pause; and, when ``ask``, the answer to them already asked
        for, so that the model reads and writes while the turn's end is still uncertain."""
        text = await words
        marks["transcript"] = self.clock()
        if not ask or not text or u.last_voiced > covers or self._utterance is not u:
            return text, None  # they spoke on meanwhile
        try:
            self._read_ahead(None)  # the answer asked for now reads the prompt itself
            reply = await self.engine.chat(self.user, text, brief=True, learn=False)
            marks["asked"] = self.clock()
            return text, reply
        except DoppelError:
            return text, None  # the sure turn asks again, and says what is wrong

    def _drop(self, guess: _Guess | None) -> None:
        """Throw a guess away: its transcription stops; an answer it asked for is undone,
        as if never asked."""
        if guess is None:
            return
        guess.words.cancel()  # (a transcript it already has is kept: nothing to stop)

        async def undo() -> None:
            try:
                _, reply = await guess.task
            except BaseException:  # its transcription was cancelled: nothing was asked
                return
            if reply is not None:
                self._held_disclosure = self._held_disclosure or reply.disclosure
                await self.engine.interrupt(reply, "")

        task = asyncio.create_task(undo())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _end_utterance(self, u: _Utterance) -> None:
        self._utterance = None
        self.endpoint.reset()
        self._stop_partial()
        if u.voiced * WINDOW < _MIN_SPEECH_S * RATE:
            self._drop(u.guess)
            self._control.put_nowait(lambda: self._say("ignored"))
            return
        guess = u.guess if u.guess is not None and u.guess.covers >= u.last_voiced else None
        if guess is None:
            self._drop(u.guess)  # they spoke again after the pause: it missed the end
        audio, ended = u.audio()[: u.last_voiced + WINDOW * 2], self._speech_end_t
        marks = {"turn_end": self.clock()}
        self._ending += 1

        async def answer() -> None:
            try:
                if guess is not None:
                    text, reply = await guess.task
                    marks.update(guess.marks)
                else:
                    text, reply = await self._transcribe(audio), None
                    marks["transcript"] = self.clock()
                if reply is not None and self._carry:  # asked without the words before
                    self._drop(guess)
                    reply = None
                text = " ".join(filter(None, (self._carry, text)))
                if self.closed or not text:  # hung up meanwhile, or no words in it
                    if reply is not None:
                        self._drop(guess)
                    await self._say("ignored")
                    return
                self._carry = ""
                await self._after_the_last_turn()
                if self.closed:
                    if reply is not None:
                        self._drop(guess)
                    return
                await self._say("heard", text=text)
                self._read_ahead(None)  # superseded: this turn's prompt is read now
                if reply is None:
                    # a dropped guess's exchange is undone first: not in this prompt
                    await asyncio.gather(*self._background, return_exceptions=True)
                    reply = await self.engine.chat(self.user, text, brief=True)
                    marks["asked"] = self.clock()
                else:
                    await self.engine.learn_from(self.user, reply, text)
                self._reply, self._asked = reply, text
                disclosure, self._held_disclosure = reply.disclosure or self._held_disclosure, ""
                if disclosure:
                    await self._say("disclosure", text=disclosure)
                self._spoken, self._first_audio_t = [], None
                self._turn = asyncio.create_task(self._speak(reply, ended, marks))
            finally:
                self._ending -= 1

        self._control.put_nowait(answer)

    async def _after_the_last_turn(self) -> None:
        """Wait until the answer before is over (a turn of its own asked while the persona
        was still thinking is answered after it), or the call is."""
        last = self._turn
        if last is None or last.done():
            return
        hung_up = asyncio.create_task(self._hung_up.wait())
        try:
            await asyncio.wait({last, hung_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hung_up.cancel()

    # -- the persona's turn -----------------------------------------------------------------

    async def _speak(self, reply: ChatReply, ended: float, marks: dict[str, float]) -> None:
        await self._guarded("the answer", self._answer_aloud(reply, ended, marks))

    async def _answer_aloud(self, reply: ChatReply, ended: float,
                            marks: dict[str, float]) -> None:
        speaker = await self.engine.voice.speaker_for(reply.persona)
        rate = self.engine.voice.sample_rate(speaker)

        async def text() -> AsyncIterator[str]:
            async for piece in reply:
                marks.setdefault("first_text", self.clock())
                yield piece

        def cut() -> None:
            if "first_sentence" not in marks:
                marks["first_sentence"] = self.clock()
                reply.job.hold()  # its first words are synthesised before the model goes on

        speech = self.engine.voice.speech(text(), speaker, user=self.user.key, on_cut=cut,
                                          first_clause=True)
        try:
            async for sentence, pcm in speech:
                now = self.clock()
                first = self._first_audio_t is None
                if first:
                    self._first_audio_t = now
                seconds = len(pcm) / rate
                self._spoken.append((sentence, seconds))
                self._speaking_until = max(now, self._speaking_until) + seconds
                timed = stages(marks, reply.job.wait_s, ended, now) if first else None
                await self._say("audio", text=sentence, pcm=pcm, rate=rate,
                                latency_s=now - ended if first else None, stages=timed)
                if first:  # held for its first words (quoted, or the model's): out now
                    reply.job.release()
        finally:
            reply.job.release()
            await speech.aclose()
        result = await reply.result()  # (still ``_reply``: it may be talked over as it plays)
        await self.engine.voice.count_heard(self.user.key, self._heard_seconds(None))
        if result.error is not None and not result.text:
            await self._say("notice", text=result.error.user_message)
        await self._say("done", text=result.text, message_id=result.message_id)
        await self._prefill()

    def _heard_seconds(self, until: float | None) -> float:
        total = sum(s for _, s in self._spoken)
        if until is None or self._first_audio_t is None:
            return total
        return min(total, max(0.0, until - self._first_audio_t))

    def _heard_text(self, until: float) -> str:
        """The sentences whose audio had begun playing by ``until``."""
        if self._first_audio_t is None:
            return ""
        heard, start = [], self._first_audio_t
        for sentence, seconds in self._spoken:
            if start > until:
                break
            heard.append(sentence.strip())
            start += seconds
        return " ".join(heard)

    async def _barge_in(self) -> None:
        if not self.persona_talking:
            return
        await self._say("barge_in")
        await self._stop_turn()

    async def _stop_turn(self) -> None:
        """Stop the persona's turn (or its answer, written in full, still playing): the
        history keeps what was heard of it."""
        now, playing_until, self._speaking_until = self.clock(), self._speaking_until, 0.0
        turn, reply = self._turn, self._reply
        self._turn = self._reply = None
        written = turn is None or turn.done()
        if turn is not None and not written:
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
        if reply is None or (written and now >= playing_until):  # (all of it was heard)
            return
        said = self._heard_text(now)
        if not said:  # nothing of the answer was heard: they were still talking
            self._carry = " ".join(filter(None, (self._carry, self._asked)))
        result = await self.engine.interrupt(reply, said)
        if not written:  # (a whole answer's time was counted when it was written)
            await self.engine.voice.count_heard(self.user.key, self._heard_seconds(now))
        await self._say("done", text=said, message_id=result.message_id if said else None)
        if not self.closed:
            await self._prefill()

    async def _prefill(self) -> None:
        """While the person listens: the model reads the next turn's prompt up to the new
        question, so it answers that sooner."""
        try:
            self._read_ahead(await self.engine.prefill_call(self.user))
        except Exception:  # only speed is at stake
            log.warning("live call of %s: no prefill", self.user.key, exc_info=True)

    def _read_ahead(self, job: Job[None] | None) -> None:
        """Keep ``job`` as the one reading ahead; the one before is cancelled (superseded:
        on a busy machine it may not have begun)."""
        if self._prefilled is not None:
            self.engine.scheduler.cancel(self._prefilled)
        self._prefilled = job


