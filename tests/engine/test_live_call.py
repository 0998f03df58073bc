"""A live call: real Silero VAD, real Whisper tiny.en, real Piper, the FakeLLM at the model
boundary, real SQLite. Audio goes in as a browser sends it (16 kHz PCM frames); the test
waits for the call's events, never for time (the call's clock is the test's)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from engine.call import LiveCall
from engine.call_events import STAGES, CallEvent
from engine.engine import Engine, UserRef
from engine.grounding import CALL_RULES, CALL_SUMMARY_TOKENS, UNQUOTED_CALL_TOKENS
from engine.memory.ingest import Ingestor
from engine.scheduler import Priority
from engine.voice.audio import decode
from engine.voice.tts import PiperTTS
from engine.voice.vad import RATE, WINDOW, Endpointer, SileroVAD, Turn
from tests.auxil.eventually import HANG_S, eventually
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.speech import call_audio, call_silence, speech_wav, words_heard

USER = UserRef("web", "caller", "Caller")
QUESTION = "What did Jeff say about the rent roll for the property?"
FOLLOW_UP = "Please tell me about the insurance policy instead."
ANSWER = ["The rent roll came on Friday morning. ", "Jeff said the tenants paid in full. ",
          "He will send the new lease next week."]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Call:
    """A LiveCall and the events it emitted, in order."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.events: list[CallEvent] = []
        self.arrived = asyncio.Event()
        self.call = LiveCall(engine, USER, self.emit, clock=clock)

    async def emit(self, event: CallEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def send(self, pcm: bytes, frame_ms: int = 20) -> None:
        """In frames as a microphone gives them (any size: 20 ms here, not a VAD window)."""
        step = RATE * frame_ms // 1000 * 2
        for i in range(0, len(pcm), step):
            await self.call.feed(pcm[i:i + step])

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    async def next(self, kind: str, after: int = 0) -> CallEvent:
        """The first ``kind`` event at index ``after`` or later, once it has come."""
        return await self.next_of((kind,), after)

    async def next_of(self, kinds: tuple[str, ...], after: int = 0) -> CallEvent:
        """The first event of one of ``kinds`` at index ``after`` or later."""
        async with asyncio.timeout(HANG_S):
            while True:
                for e in self.events[after:]:
                    if e.kind in kinds:
                        return e
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def call(engine: Engine) -> AsyncIterator[Call]:
    clock = Clock()
    c = Call(engine, clock)
    c.clock = clock  # type: ignore[attr-defined]
    await c.call.start()
    yield c
    await c.call.close()


def test_endpointer_starts_and_ends_speech_on_silero() -> None:
    vad, ends = SileroVAD(), Endpointer(end_ms=480)
    audio = np.concatenate([np.zeros(RATE, np.float32), decode(speech_wav(QUESTION)),
                            np.zeros(RATE, np.float32)])
    turns = [(i, t) for i in range(len(audio) // WINDOW)
             if (t := ends.step(vad(audio[i * WINDOW:(i + 1) * WINDOW]))) is not Turn.NOTHING]
    kinds = [t for _, t in turns]
    assert kinds[0] is Turn.STARTED and kinds[-1] is Turn.ENDED
    assert Turn.PAUSED in kinds and kinds.count(Turn.STARTED) == 1
    start_s, end_s = turns[0][0] * WINDOW / RATE, turns[-1][0] * WINDOW / RATE
    assert 0.9 < start_s < 1.4  # speech begins after the second of silence
    assert end_s > start_s + 1.5 and ends.silent_ms >= 480
    # noise below speech level never starts a turn
    hiss = np.random.default_rng(3).normal(0, 0.003, RATE * 2).astype(np.float32)
    quiet = Endpointer()
    assert all(quiet.step(vad(hiss[i:i + WINDOW])) is Turn.NOTHING
               for i in range(0, len(hiss) - WINDOW, WINDOW))


async def test_question_is_heard_and_answered_aloud_and_kept_in_history(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("".join(ANSWER))
    await call.send(call_silence(0.5) + call_audio(QUESTION) + call_silence(1.0))
    heard = await call.next("heard")
    assert words_heard(QUESTION, heard.text) >= 0.8
    assert call.kinds()[0] == "speech"
    done = await call.next("done")
    audio = [e for e in call.events if e.kind == "audio"]
    assert [e.text.strip() for e in audio] == [a.strip() for a in ANSWER]
    assert audio[0].latency_s is not None and all(e.latency_s is None for e in audio[1:])
    assert all(e.rate == PiperTTS().sample_rate and e.pcm is not None and len(e.pcm) > e.rate
               for e in audio)
    spoken = np.concatenate([e.pcm for e in audio if e.pcm is not None])
    resampled = np.interp(np.arange(0, len(spoken), audio[0].rate / 16000),
                          np.arange(len(spoken)), spoken.astype(np.float32) / 32768)
    said = await engine.voice.transcribe_pcm(resampled.astype(np.float32))
    assert words_heard("".join(ANSWER), said) >= 0.8  # the audio says the answer
    assert done.text == "".join(ANSWER) and done.message_id is not None
    history = await engine.history(USER)
    assert [(m.role, m.content) for m in history] == [("user", heard.text),
                                                      ("assistant", "".join(ANSWER))]
    assert "the rent roll" in fake_llm.prompts[-1][-1].content.lower()


@pytest.mark.parametrize(("answer", "spoken"), [
    # The first clause long enough to sound whole goes to TTS alone, before its sentence
    # ends; the rest sentence by sentence.
    ("Well, as I said to Jeff on Friday, the rent roll is fine. The tenants paid in full.",
     ["Well, as I said to Jeff on Friday,", "the rent roll is fine.",
      "The tenants paid in full."]),
    # A first sentence too short to say alone goes with what follows; a long one with no
    # clause end is cut before a conjunction.
    ("Fine. I am not sure what the rent roll says but Jeff will know. He called.",
     ["Fine. I am not sure what the rent roll says", "but Jeff will know.", "He called."]),
])
async def test_the_first_clause_is_spoken_alone_and_each_stage_is_timed(
        call: Call, fake_llm: FakeLLM, answer: str, spoken: list[str]) -> None:
    fake_llm.replies.append(answer)
    await call.send(call_silence(0.5) + call_audio(QUESTION) + call_silence(1.0))
    await call.next("done")
    audio = [e for e in call.events if e.kind == "audio"]
    assert [e.text for e in audio] == spoken
    first = audio[0]
    assert first.stages is not None and list(first.stages) == list(STAGES)
    assert first.stages["first_audio"] == first.latency_s
    assert all(e.stages is None for e in audio[1:])


async def test_a_quoted_answer_is_heard_before_the_model_goes_on(
        memory_engine: Engine, fake_llm: FakeLLM) -> None:
    """On two cores the model reading its prompt would slow the quote's synthesis: it waits
    until the quote's first words are out."""
    persona = memory_engine.personas.get("allen")
    await Ingestor(memory_engine.memory, persona).run(persona.source_files())
    asked_at_first_audio: list[int] = []

    class Watched(Call):
        async def emit(self, event: CallEvent) -> None:
            if event.kind == "audio" and not asked_at_first_audio:
                asked_at_first_audio.append(len(fake_llm.prompts))
            await super().emit(event)

    c = Watched(memory_engine, Clock())
    await c.call.start()
    try:
        before = len(fake_llm.prompts)
        await c.send(call_silence(0.5) + call_audio(
            "Who did you want as general contractor for the house?") + call_silence(1.0))
        done = await c.next("done")
    finally:
        await c.call.close()
    audio = [e for e in c.events if e.kind == "audio"]
    assert audio[0].text == "On 23 Apr 2001 I wrote to Johnnie:"  # its first clause
    assert asked_at_first_audio == [before]  # the model had not begun
    assert len(fake_llm.prompts) > before and done.text.endswith(fake_llm.default)


async def test_a_call_answer_no_quote_opens_reads_little_memory(
        memory_engine: Engine, fake_llm: FakeLLM) -> None:
    """Memory matched, but no sentence of it answers: the person waits while the model
    reads its turn, so a call's turn carries only the closest lines of memory."""
    question = "What do you like about trading?"
    persona = memory_engine.personas.get("allen")
    await Ingestor(memory_engine.memory, persona).run(persona.source_files())
    grounded = await memory_engine.ground(persona, question, "web:t")
    assert grounded.hits and not grounded.message.lead
    user = UserRef("web", "t")
    await (await memory_engine.chat(user, question)).result()
    typed = fake_llm.prompts[-1][-1].content
    await (await memory_engine.chat(user, question, brief=True)).result()
    spoken = fake_llm.prompts[-1][-1].content  # (the fake model's tokens are words)
    assert "SOURCE 1" in spoken and spoken.endswith(question)
    assert len(spoken.split()) <= UNQUOTED_CALL_TOKENS + len(question.split()) + 8
    assert len(typed.split()) > 2 * len(spoken.split())


async def test_transcript_so_far_is_shown_while_the_person_talks(
        call: Call, fake_llm: FakeLLM) -> None:
    long_question = ("I wanted to ask you about the rent roll for the Stagecoach property, "
                     "and whether Jeff has sent the insurance papers to the appraiser yet.")
    audio = call_audio(long_question)
    half = len(audio) // 4 * 2
    await call.send(audio[:half])  # still talking: the words so far come while they talk
    await call.next("partial")
    await call.send(audio[half:] + call_silence(1.0))
    heard = await call.next("heard")
    partials = [e for e in call.events[: call.events.index(heard)] if e.kind == "partial"]
    assert partials, call.kinds()
    first_words = set(partials[0].text.lower().split())
    assert 0 < len(partials[0].text.split()) < len(heard.text.split())
    assert len(first_words & set(heard.text.lower().split())) >= len(first_words) // 2
    await call.next("done")


async def test_barge_in_stops_the_persona_and_keeps_only_what_was_heard(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.extend(["".join(ANSWER) + FakeLLM.HANG, "About the insurance."])
    await call.send(call_audio(QUESTION) + call_silence(1.0))
    await call.next("audio")
    first = call.events[-1]
    assert first.kind == "audio" and first.text.strip() == ANSWER[0].strip()
    # the person talks over the first sentence (the clock has not moved: nothing more of
    # the answer was heard, however far the synthesis got)
    mark = len(call.events)
    await call.send(call_audio(FOLLOW_UP) + call_silence(1.0))
    await call.next("barge_in", mark)
    cut = await call.next("done", mark)
    assert cut.text == ANSWER[0].strip() and cut.message_id is not None
    heard = await call.next("heard", mark)
    assert words_heard(FOLLOW_UP, heard.text) >= 0.8
    assert call.kinds().index("barge_in") < call.kinds().index("heard", mark)
    await call.next("done", call.events.index(heard))
    rows = [(m.role, m.content, m.status) for m in await engine.history(USER)]
    assert rows[1] == ("assistant", ANSWER[0].strip(), "cancelled")
    assert rows[2:] == [("user", heard.text, "complete"),
                        ("assistant", "About the insurance.", "complete")]
    # the model's next prompt has the answer as it was heard, not as it was written
    assert ANSWER[1].strip() not in " ".join(m.content for m in fake_llm.prompts[-1])
    assert ANSWER[0].strip() in " ".join(m.content for m in fake_llm.prompts[-1])


async def test_talked_over_while_a_whole_answer_still_plays_keeps_what_was_heard(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    """The answer is written and its audio sent in full (the model was quicker than the
    speech), but the person talks over it as it plays: the history keeps what was heard."""
    fake_llm.replies.extend(["".join(ANSWER), "About the insurance."])
    await call.send(call_audio(QUESTION) + call_silence(1.0))
    done = await call.next("done")
    assert done.text == "".join(ANSWER)  # written in full, all of it sent; still playing
    mark = len(call.events)
    await call.send(call_audio(FOLLOW_UP) + call_silence(1.0))
    await call.next("barge_in", mark)
    cut = await call.next("done", mark)
    assert cut.text == ANSWER[0].strip() and cut.message_id == done.message_id
    heard = await call.next("heard", mark)
    await call.next("done", call.events.index(heard))
    rows = [(m.role, m.content, m.status) for m in await engine.history(USER)]
    assert rows[1] == ("assistant", ANSWER[0].strip(), "cancelled")
    assert rows[3] == ("assistant", "About the insurance.", "complete")


async def test_talking_on_before_the_answer_is_heard_makes_one_turn(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.gate.clear()  # the model holds its first answer: nothing is heard of it
    fake_llm.replies.append("One answer to both.")  # the first never starts
    await call.send(call_audio(QUESTION) + call_silence(0.7))
    first = await call.next("heard")
    mark = len(call.events)
    await asyncio.to_thread(fake_llm.started.wait)
    await call.send(call_audio(FOLLOW_UP) + call_silence(1.0))
    await call.next("barge_in", mark)
    cut = await call.next("done", mark)
    assert (cut.text, cut.message_id) == ("", None)
    fake_llm.gate.set()
    both = await call.next("heard", mark)
    assert both.text.startswith(first.text) and words_heard(FOLLOW_UP, both.text) >= 0.8
    await call.next("done", call.events.index(both))
    rows = [(m.role, m.content) for m in await engine.history(USER)]
    assert rows == [("user", both.text), ("assistant", "One answer to both.")]


async def test_a_click_is_not_a_turn(call: Call, engine: Engine) -> None:
    click = call_audio(QUESTION)[: 2 * RATE // 10]  # 100 ms of a word
    await call.send(call_silence(0.3) + click + call_silence(1.0))
    await call.send(call_audio("Hello there, are you listening?") + call_silence(1.0))
    heard = await call.next("heard")
    assert "hello" in heard.text.lower()
    assert "ignored" in call.kinds()[: call.kinds().index("heard")] or \
        call.kinds().count("speech") == 1
    await call.next("done")
    assert len(await engine.history(USER)) == 2


async def test_a_call_turn_reads_a_short_prompt_and_answers_briefly(
        make_config: Any, fake_llm: FakeLLM) -> None:
    engine = Engine(make_config(voice={"call_history": 2, "call_max_tokens": 10},
                                llm={"max_tokens": 48}), llm=fake_llm)
    await engine.start()
    try:
        user = UserRef("web", "brief")
        for i in range(3):
            await (await engine.chat(user, f"Message number {i}")).result()
        long = " ".join(f"word{i}" for i in range(30))
        fake_llm.replies.extend([long])
        brief = await (await engine.chat(user, "A spoken question", brief=True)).result()
        prompt = fake_llm.prompts[-1]
        assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
        assert prompt[1].content == "Message number 2"
        assert len(brief.text.split()) == 10
        assert prompt[0].content.endswith(CALL_RULES)  # the call's rules, every turn alike
        fake_llm.replies.append(long)
        await (await engine.chat(user, "Another spoken question", brief=True)).result()
        assert fake_llm.prompts[-1][0] == prompt[0]
        fake_llm.replies.append(long)
        full = await (await engine.chat(user, "A typed question")).result()
        assert len(fake_llm.prompts[-1]) > 4 and len(full.text.split()) == 30
    finally:
        await engine.stop()


async def test_a_call_turn_carries_little_of_the_earlier_summary(make_config: Any) -> None:
    """What scrolled out of the conversation comes back as summary lines that share the
    message's words: a typed turn may carry a quarter of the context of them, a call's turn
    only ``CALL_SUMMARY_TOKENS`` (the person waits while the model reads them)."""
    llm = FakeLLM(default="Noted, the gas market is calm.", n_ctx=800)
    engine = Engine(make_config(voice={"call_history": 2}, llm={"max_tokens": 48}), llm=llm)
    await engine.start()
    try:
        user = UserRef("web", "summary")
        for i in range(60):  # (more than the 100 rows of history a conversation keeps)
            await (await engine.chat(user, f"Report {i}: the gas market today is up {i} "
                                           "cents on the cold weather.")).result()

        def earlier() -> list[str]:
            return llm.prompts[-1][-1].content.split("<<<END>>>")[0].split()

        await (await engine.chat(user, "How is the gas market today?")).result()
        typed = earlier()
        await (await engine.chat(user, "How is the gas market today?", brief=True)).result()
        spoken = earlier()
        assert spoken[0] == typed[0] == "<<<EARLIER"
        assert len(spoken) <= CALL_SUMMARY_TOKENS + 8 < len(typed)
    finally:
        await engine.stop()


async def test_the_answer_is_asked_for_at_the_pause_and_kept_once_the_turn_is_sure(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    said = "I live in Portland. What should I see there this weekend?"
    fake_llm.replies.append("See the rose garden on Saturday morning.")
    await call.send(call_audio(said) + call_silence(0.3))  # a pause, not yet the end
    await asyncio.to_thread(fake_llm.started.wait)  # the model is already asked...
    assert "heard" not in call.kinds()  # ...but nothing is said before the turn is sure
    assert await engine.user_memories.all(USER, "allen") == []  # nor anything kept
    await call.send(call_silence(0.7))
    heard = await call.next("heard")
    done = await call.next("done")
    assert done.text == "See the rose garden on Saturday morning."
    assert len(fake_llm.prompts) == 1  # the guess was the answer: asked once
    rows = [(m.role, m.content) for m in await engine.history(USER)]
    assert rows == [("user", heard.text), ("assistant", done.text)]
    kept = await engine.user_memories.all(USER, "allen")
    assert any("portland" in m.about.lower() for m in kept), kept


async def test_speaking_on_after_a_pause_undoes_the_guessed_answer(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.extend(["Guessed too early.", "The whole answer."])
    await call.send(call_audio("Tell me about the rent roll") + call_silence(0.3))
    await asyncio.to_thread(fake_llm.started.wait)
    await call.send(call_audio("for the big house on the hill please.") + call_silence(1.0))
    heard = await call.next("heard")
    assert words_heard("about the rent for the big house on the hill", heard.text) >= 0.8
    done = await call.next("done")
    assert done.text == "The whole answer."
    rows = [(m.role, m.content) for m in await engine.history(USER)]
    assert rows == [("user", heard.text), ("assistant", "The whole answer.")]
    assert "hill" not in fake_llm.prompts[0][-1].content.lower()  # the guess
    assert "hill" in fake_llm.prompts[-1][-1].content.lower()
    # the undone exchange is not in the prompt of the answer
    assert sum("about the rent" in m.content.lower() for m in fake_llm.prompts[-1]) == 1


async def test_hanging_up_while_the_persona_thinks_leaves_nothing_half_done(
        engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.gate.clear()
    c = Call(engine, Clock())
    await c.call.start()
    await c.send(call_audio(QUESTION) + call_silence(1.0))
    await c.next("heard")
    await asyncio.to_thread(fake_llm.started.wait)
    await c.call.close()  # before a word of the answer was heard
    fake_llm.gate.set()
    await engine.settled()
    assert await engine.history(USER) == []  # undone: as if never asked
    assert engine.scheduler.stats()["llm"]["running"] == 0


def held(engine: Engine, resource: str) -> threading.Event:
    """Another person's job that holds ``resource`` until the event is set (a busy
    machine), queued ahead of what comes next."""
    release = threading.Event()
    engine.scheduler.submit(resource, lambda ctx: release.wait(HANG_S), user="web:other",
                            kind="busy", priority=Priority.INTERACTIVE)
    return release


async def test_a_turn_after_a_long_pause_is_its_own_answered_after_the_first(
        call: Call, engine: Engine, fake_llm: FakeLLM) -> None:
    """Issue 32: with the answer slow to come, a person who waits 3 s and asks something
    else gets both questions answered, in order; they are not merged into one."""
    fake_llm.gate.clear()  # a busy machine: the first answer is slow to begin
    fake_llm.replies.extend(["The first answer.", "The second answer."])
    await call.send(call_audio(QUESTION) + call_silence(0.7))
    first = await call.next("heard")
    await asyncio.to_thread(fake_llm.started.wait)
    mark = len(call.events)
    await call.send(call_silence(2.5) + call_audio(FOLLOW_UP) + call_silence(1.0))
    await call.next("speech", mark)
    fake_llm.gate.set()
    done = await call.next("done", mark)
    assert done.text == "The first answer."
    second = await call.next("heard", call.events.index(done))
    assert words_heard(FOLLOW_UP, second.text) >= 0.8
    assert words_heard(QUESTION, second.text) < 0.5  # not both in one
    assert (await call.next("done", call.events.index(second))).text == "The second answer."
    assert "barge_in" not in call.kinds()
    rows = [(m.role, m.content) for m in await engine.history(USER)]
    assert rows == [("user", first.text), ("assistant", "The first answer."),
                    ("user", second.text), ("assistant", "The second answer.")]


async def test_a_calls_superseded_jobs_never_fill_the_persons_share(
        make_config: Any, fake_llm: FakeLLM) -> None:
    """Issue 32: on a busy machine the call's own earlier work (the model reading ahead
    after an answer, a transcript so far) was still queued when the next turn needed a
    transcript, and the per-person cap refused it: the turn was lost in silence."""
    engine = Engine(make_config(engine={"max_pending_per_user": 2},
                                voice={"call_partial_s": 0.3}), llm=fake_llm)
    await engine.start()
    c = Call(engine, Clock())
    await c.call.start()
    try:
        fake_llm.replies.extend(["The first answer.", "The second answer."])
        fake_llm.gate.clear()
        await c.send(call_audio(QUESTION) + call_silence(1.0))
        await asyncio.to_thread(fake_llm.started.wait)
        model = held(engine, "llm")  # after this answer, the model is busy for a while
        fake_llm.gate.set()
        done = await c.next("done")
        await eventually(lambda: engine.scheduler.stats()["llm"]["queued"] == 1)  # reading
        speech = held(engine, "stt")  # ahead waits; so will the next transcripts
        mark = len(c.events)
        await c.send(call_audio(FOLLOW_UP) + call_silence(1.0))
        speech.set()
        model.set()
        got = await c.next_of(("heard", "ignored"), mark)
        assert got.kind == "heard" and words_heard(FOLLOW_UP, got.text) >= 0.8
        assert (await c.next("done", c.events.index(got))).text == "The second answer."
        assert done.text == "The first answer."
    finally:
        await c.call.close()
        await engine.stop()


async def test_a_blank_transcript_is_no_question(call: Call, engine: Engine,
                                                 fake_llm: FakeLLM) -> None:
    """Whisper's notes on sounds ("[BLANK_AUDIO]", "(silence)") are no words: a turn of
    them is ignored, never asked of the model (which answered "(The message is blank.)")."""
    from engine.voice.stt import heard_words

    assert heard_words(" [BLANK_AUDIO] ") == heard_words(" . ") == ""
    assert heard_words("(upbeat music) Hello there.") == "Hello there."
    fake_llm.replies.append("(The message is blank.)")
    await call.send(call_audio("Hello, can you hear me?") + call_silence(1.0))
    done = await call.next("done")
    assert not [e for e in call.events if e.kind == "audio"]  # a note, not spoken
    assert done.text == "(The message is blank.)"
