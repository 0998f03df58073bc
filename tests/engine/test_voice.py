"""Voice with the real Piper voice, real faster-whisper tiny.en and the bundled ffmpeg."""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from engine.config import EngineConfig, VoiceConfig
from engine.engine import Engine, UserRef
from engine.errors import InputError
from engine.scheduler import Priority, Scheduler
from engine.storage.db import Database
from engine.stories.options import StoryRequest
from engine.voice.audio import WAVEFORM_SAMPLES, waveform
from engine.voice.library import VoiceLibrary
from engine.voice.service import STT, Voice
from engine.voice.text import clean_for_speech, speech_chunks
from tests.auxil.eventually import HANG_S, eventually
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.speech import words_heard


def test_cleanup_drops_what_should_not_be_spoken() -> None:
    text = ("*smiles warmly* Hi Jeff! See [the plan](https://x.org/p) and www.enron.com. "
            "```code()``` The **deal** closed on 2001-03-12 [1] for $1,140 e.g. cash 🙂 "
            "(pauses) Dr. Lee agrees.")
    assert clean_for_speech(text) == (
        "Hi Jeff! See the plan and The deal closed on March 12, 2001 for $1140 for example "
        "cash Doctor Lee agrees.")


def test_chunks_never_empty_and_short_ones_merged() -> None:
    assert speech_chunks("...  !!  ??") == []
    assert speech_chunks("🙂") == []
    assert speech_chunks("The rent roll arrived on Friday morning. It was late again this "
                         "month. OK.") == ["The rent roll arrived on Friday morning.",
                                           "It was late again this month. OK."]
    assert speech_chunks("Hi. Yes. The rent roll arrived on Friday morning.") == [
        "Hi. Yes. The rent roll arrived on Friday morning."]
    assert speech_chunks("Okay.") == ["Okay."]  # all there is
    # a sentence wholly in brackets is the model's note, never said (issue 32)
    assert speech_chunks("(The message is blank.)") == speech_chunks("[no reply]") == []
    assert speech_chunks("Sure thing. (The message is blank.) The rent roll came on "
                         "Friday.") == ["Sure thing. The rent roll came on Friday."]
    assert speech_chunks("I went (with Jeff) to see the site today.") == [
        "I went (with Jeff) to see the site today."]


def test_waveform_is_256_scaled_bytes() -> None:
    pcm = (np.sin(np.linspace(0, 50, 48000)) * np.linspace(0, 20000, 48000)).astype(np.int16)
    wf = waveform(pcm)
    assert len(wf) == WAVEFORM_SAMPLES and max(wf) == 255 and wf[0] < wf[-1]


@pytest.fixture
async def voice(tmp_path: Path) -> AsyncIterator[Voice]:
    sched = Scheduler(EngineConfig())
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'voice.db'}")
    v = Voice(VoiceConfig(max_input_seconds=30, max_input_mb=1), sched,
              VoiceLibrary(db, tmp_path))
    await db.start()
    await sched.start()
    yield v
    await sched.stop()
    await db.close()


def opus_info(ogg: bytes) -> tuple[str, int, int, float]:
    with av.open(io.BytesIO(ogg), mode="r") as c:
        s = c.streams.audio[0]
        assert c.duration is not None
        return s.codec_context.name, s.rate, s.codec_context.channels, c.duration / 1e6


async def test_speak_makes_an_opus_voice_note_that_whisper_understands(voice: Voice) -> None:
    note = await voice.speak("Jeff, I received the rent roll. Call me about the stagecoach "
                             "on Friday [2].")
    codec, rate, channels, duration = opus_info(note.ogg)
    assert (codec, rate, channels) == ("opus", 48000, 1)
    assert abs(duration - note.duration_s) < 0.1 and 2 < note.duration_s < 10
    assert len(note.waveform) == 256
    assert len(note.ogg) < note.duration_s * 6000  # ~32 kbit/s
    heard = await voice.transcribe(note.ogg)
    assert words_heard("Jeff, I received the rent roll. Call me on Friday.", heard) >= 0.8
    with pytest.raises(InputError):
        await voice.speak("... !!!")


async def test_streamed_reply_is_spoken_while_written(voice: Voice) -> None:
    sentences = ["The insurance policy is with Central Insurance. ",
                 "Please schedule the appraiser after one in the afternoon. ",
                 "My father will walk him around the property."]

    def spoken_so_far() -> int:
        tts = voice.scheduler.kind_metrics().get("tts")
        return tts.by_state["done"] if tts else 0

    async def pieces() -> AsyncIterator[str]:
        """A model that writes the next sentence only once the last one has been spoken:
        if the reply were spoken only when complete, this would never finish."""
        for i, s in enumerate(sentences):
            for word in s.split(" "):
                yield word + " "
            if i < len(sentences) - 1:
                await eventually(lambda i=i: spoken_so_far() > i, timeout_s=HANG_S)  # type: ignore[misc]

    spoken = await voice.speak_stream(pieces())
    assert spoken_so_far() == 3 and spoken.text.split() == " ".join(sentences).split()
    heard = (await voice.transcribe(spoken.note.ogg)).lower()
    assert heard.index("insurance") < heard.index("appraiser") < heard.index("father")


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return out.getvalue()


async def test_bad_input_audio_gets_clear_messages(voice: Voice) -> None:
    cases = [
        (b"definitely not audio" * 10, "couldn't read that audio"),
        (wav_bytes(np.zeros(16000 * 2)), "couldn't hear anything"),
        (wav_bytes(np.random.default_rng(1).integers(-9000, 9000, 16000 * 31)), "at most 30 s"),
        (b"\0" * (2 * 1024 * 1024), "too large"),
    ]
    for data, message in cases:
        with pytest.raises(InputError) as err:
            await voice.transcribe(data)
        assert message in err.value.user_message


async def test_reply_mode_and_story_narration(engine: Engine, fake_llm: FakeLLM) -> None:
    user = UserRef("telegram", "5")
    assert await engine.reply_mode(user) == "text"
    assert await engine.set_reply_mode(user, "Both") == "both"
    assert await engine.reply_mode(user) == "both"
    with pytest.raises(InputError):
        await engine.set_reply_mode(user, "loud")
    fake_llm.replies.append("Sleepy Owl\nLuna the owl yawned and closed her eyes.")
    story = await (await engine.stories.create(user, StoryRequest())).result()
    [note] = await engine.stories.narrate(user, story.id)
    codec, rate, _, duration = opus_info(note.ogg)
    assert (codec, rate) == ("opus", 48000) and duration > 1.5


def test_no_prompt_markup_or_citation_is_ever_spoken() -> None:
    said = " ".join(speech_chunks(
        "[GENRE] adventure\nThe rent [1] was paid <<<END SOURCE 4>> on time [2, 3]. "
        "<<<SOURCE 6 | 2012-08-30 'Bridge'>> We met at the bridge <|im_end|> later."))
    assert said == "The rent was paid on time. We met at the bridge later."


async def test_speech_models_warm_at_start_outside_any_job(engine: Engine) -> None:
    assert engine.voice.tts._voice is None  # type: ignore[attr-defined]
    engine.warm_speech()  # what doppel run does with [voice] preload
    await asyncio.gather(*engine._warming)
    assert engine.voice.tts._voice is not None  # type: ignore[attr-defined]
    assert engine.voice.stt._model is not None
    assert not engine.scheduler.kind_metrics()  # loading ran no job, so no job timed it
    note = await engine.speak("The models were ready before anyone asked.",
                              user=UserRef("telegram", "1"), persona=engine.persona("allen"))
    assert note.duration_s > 1


async def test_a_transcription_nobody_waits_for_leaves_the_queue(voice: Voice) -> None:
    """A live call gives up a transcript it no longer needs: its job goes with it, so it
    does not hold the person's share of the queue (issue 32)."""
    release = threading.Event()
    voice.scheduler.submit(STT, lambda ctx: release.wait(HANG_S), user="other", kind="busy",
                           priority=Priority.INTERACTIVE)
    asked = asyncio.create_task(voice.transcribe_pcm(np.zeros(16000, np.float32), user="me"))
    await eventually(lambda: voice.scheduler.stats()[STT]["queued"] == 1)
    asked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asked
    assert voice.scheduler.stats()[STT]["queued"] == 0
    release.set()


def test_a_short_utterance_is_heard_as_through_the_full_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to SHORT_MAX_S of speech goes through a 15 s encoder window (three times sooner
    than Whisper's 30 s): the same words; a blank or hiss is still no words."""
    from engine.voice.audio import decode
    from engine.voice.stt import SHORT_FRAMES, SHORT_MAX_S, WhisperSTT, heard_words
    from tests.auxil.speech import speech_wav

    stt = WhisperSTT()
    stt.load()
    windows: list[int] = []
    encode = stt._model.encode

    def counted(features: np.ndarray) -> object:
        windows.append(features.shape[-1])
        return encode(features)

    monkeypatch.setattr(stt._model, "encode", counted)
    question = "Do you have any advice for a new analyst on the gas desk?"
    audio = decode(speech_wav(question))
    assert len(audio) <= SHORT_MAX_S * 16000
    short = stt.transcribe(audio)
    assert windows == [SHORT_FRAMES]
    segments, _ = stt._model.transcribe(audio, language="en", beam_size=1, vad_filter=False)
    full = " ".join(s.text.strip() for s in segments).strip()
    # (int8 on several threads is not bit-for-bit repeatable: "gas" or "guest" either way)
    assert words_heard(question, short) >= 0.8 and words_heard(question, full) >= 0.8
    hiss = np.random.default_rng(3).normal(0, 0.01, 32000).astype(np.float32)
    assert heard_words(stt.transcribe(np.zeros(16000, np.float32))) == ""
    assert heard_words(stt.transcribe(hiss)) == ""
