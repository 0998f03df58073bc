"""XTTS-v2 cloning on a tiny random checkpoint (real coqui-tts code; output is noise).

Needs the xtts extra (its own environment: `.ci/setup --dev --xtts`); `.ci/run` runs this
directory there. In the main environment it is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("TTS", reason="the XTTS extra is not installed (.ci/setup --dev --xtts)")

import torch

from engine.engine import Engine, UserRef
from engine.errors import InputError, NotAllowed
from engine.voice.clips import clean_clip
from engine.voice.speaker import Speaker
from engine.voice.xtts import XTTSBackend, split_long
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.speech import speech_seconds, speech_wav
from tests.auxil.xtts_tiny import build_tiny_xtts
from tests.conftest import MakeConfig


@contextmanager
def refused(words: str) -> Iterator[None]:
    """Expect an InputError whose message to the user contains ``words``."""
    with pytest.raises(InputError) as err:
        yield
    assert words in err.value.user_message


SAMPLES_PER_SENTENCE = 41216
"""37 audio codes (gpt_max_audio_tokens - 3) x 4 frames x 256 hop x 24000/22050."""


@pytest.fixture(scope="session")
def tiny_xtts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return build_tiny_xtts(tmp_path_factory.mktemp("xtts") / "model")


@pytest.fixture
def clip_files(tmp_path: Path) -> tuple[Path, ...]:
    paths = []
    for i, gain in enumerate((0.3, 1.0), 1):
        path = tmp_path / f"clip-{i}.wav"
        path.write_bytes(clean_clip(speech_wav(gain=gain)).wav())
        paths.append(path)
    return tuple(paths)


def test_load_condition_stream_and_cache(tiny_xtts: Path, clip_files: tuple[Path, ...],
                                         tmp_path: Path) -> None:
    backend = XTTSBackend(tiny_xtts, device="cpu")
    backend.load()
    assert backend.sample_rate == 24000 and "hi" in backend.languages
    speaker = Speaker("xtts", "v1", clip_files, tmp_path / "cache", "en")
    latent, embedding = backend.conditioning(speaker)
    assert tuple(latent.shape) == (1, 32, 64) and tuple(embedding.shape) == (1, 512, 1)
    [cached] = (tmp_path / "cache").glob("latents-*.pt")

    torch.manual_seed(0)
    chunks = list(backend.stream("Hello there, this is a test.", speaker=speaker))
    assert len(chunks) >= 2 and all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    assert sum(len(c) for c in chunks) == SAMPLES_PER_SENTENCE
    assert np.abs(np.concatenate(chunks)).max() > 0

    # A new process (a new backend) reads the latents from disk instead of computing them.
    again = XTTSBackend(tiny_xtts, device="cpu")
    again._compute = lambda clips: pytest.fail("latents were recomputed")  # type: ignore
    latent2, embedding2 = again.conditioning(speaker)
    assert torch.equal(latent, latent2) and torch.equal(embedding, embedding2)
    # Other clips are another voice: other latents, another cache file.
    other = Speaker("xtts", "v1", clip_files[:1], tmp_path / "cache", "en")
    assert not torch.equal(backend.conditioning(other)[0], latent)
    assert len(list((tmp_path / "cache").glob("latents-*.pt"))) == 2
    assert cached.is_file()

    stops = iter([False, True])
    assert len(list(backend.stream("Stop me early please, now.", lambda: next(stops),
                                   speaker))) == 1
    hindi = backend.synthesize("नमस्ते, यह एक कहानी है।", speaker=Speaker(
        "xtts", "v1", clip_files, tmp_path / "cache", "hi"))
    assert len(hindi) == SAMPLES_PER_SENTENCE
    with refused("cannot speak"):
        backend.synthesize("Hello.", speaker=Speaker("xtts", "v1", clip_files, None, "xx"))


def test_long_sentences_are_cut_below_the_xtts_limit() -> None:
    text = ("Well, the thing about the Stagecoach deal is that nobody, and I mean nobody, "
            "expected the rent roll to come in late again, so we waited; then we called "
            "Jeff, who said the bank wanted another appraisal before the end of the month, "
            "which would push closing into March at the earliest.")
    pieces = split_long(text, 100)
    assert len(pieces) > 2 and all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces) == text


@pytest.fixture
async def xtts_engine(make_config: MakeConfig, fake_llm: FakeLLM,
                      tiny_xtts: Path) -> AsyncIterator[Engine]:
    eng = Engine(make_config(voice={"xtts_model_dir": str(tiny_xtts), "xtts_device": "cpu"},
                             engine={"admins": ["telegram:1"]}), llm=fake_llm)
    await eng.start()
    yield eng
    await eng.stop()


async def test_cloning_flow_end_to_end(xtts_engine: Engine) -> None:
    eng, admin, stranger = xtts_engine, UserRef("telegram", "1"), UserRef("telegram", "2")
    allen = eng.personas.get("allen")
    assert (await eng.voice.speaker_for(allen)).backend == "piper"  # no cloned voice yet

    with pytest.raises(NotAllowed):
        eng.voices.begin(stranger, allen, "studio")
    eng.voices.begin(admin, allen, "studio")
    with refused("6-30 s"):
        await eng.voices.add_clip(admin, speech_wav(seconds=4))
    with refused("at least one clip"):
        await eng.voices.finish(admin, "Phillip Allen")
    await eng.voices.add_clip(admin, speech_wav(gain=0.5))
    draft = await eng.voices.add_clip(admin, speech_wav())
    assert len(draft.clips) == 2 and draft.seconds == pytest.approx(2 * speech_seconds(), abs=0.5)
    with refused("name of the person"):
        await eng.voices.finish(admin, "  ")

    done = await eng.voices.finish(admin, "Phillip Allen")
    voice = done.voice
    assert voice.active and voice.clips == 2 and voice.consent_speaker == "Phillip Allen"
    assert done.sample.ogg.startswith(b"OggS") and done.sample.duration_s > 1
    folder = eng.voice.library.directory(voice.id)
    assert len(list(folder.glob("clip-*.wav"))) == 2
    assert len(list(folder.glob("latents-*.pt"))) == 1

    speaker = await eng.voice.speaker_for(allen)
    assert (speaker.backend, speaker.voice_id) == ("xtts", voice.id)

    async def reply() -> AsyncIterator[str]:
        for piece in ["Jeff, the rent roll ", "came in today. ", "I will call you ",
                      "about the Stagecoach deal tomorrow."]:
            yield piece

    spoken = await eng.voice.speak_stream(reply(), user=admin.key, persona=allen)
    assert spoken.note.duration_s == pytest.approx(2 * SAMPLES_PER_SENTENCE / 24000, abs=0.1)

    second = (await eng.voices.clone(admin, allen, "phone", [speech_wav()], "Phillip Allen"))
    assert second.voice.active
    assert [v.active for v in await eng.voices.list(allen)] == [False, True]
    await eng.voices.use(admin, voice.id)
    assert (await eng.voice.speaker_for(allen)).voice_id == voice.id
    with pytest.raises(NotAllowed):
        await eng.voices.use(stranger, second.voice.id)
    await eng.voices.delete(admin, second.voice.id)
    assert not eng.voice.library.directory(second.voice.id).exists()

    await eng.forget(admin)  # the voices they cloned go with them
    assert not folder.exists()
    assert (await eng.voice.speaker_for(allen)).backend == "piper"


async def test_console_clones_a_voice_and_then_speaks_in_it(
        make_config: MakeConfig, fake_llm: FakeLLM, tiny_xtts: Path, tmp_path: Path) -> None:
    from tests.bot.test_console import run_repl

    clip = tmp_path / "me talking.wav"
    clip.write_bytes(speech_wav())
    config = make_config(voice={"xtts_model_dir": str(tiny_xtts), "xtts_device": "cpu"})
    fake_llm.replies.append("Jeff, the rent roll came in today and looks fine.")
    out = await run_repl(config, fake_llm, f'/voice clone studio "{clip}"\nPhillip Allen\n'
                         "/voice list\nHow is the rent roll?\n/quit\n", voice=True)
    assert "Clip 1 (me talking.wav): 10." in out
    assert "Type their full name to confirm they agreed" in out
    assert "is now Phillip Allen's voice; consent of Phillip Allen recorded. Sample:" in out
    assert " * v" in out and "studio" in out and "consent of Phillip Allen" in out
    assert "(voice note:" in out
    [voice_dir] = config.storage.data_dir.glob("users/*/voice")
    assert len(list(voice_dir.glob("voice-*-sample.ogg"))) == 1
    assert len(list(voice_dir.glob("reply-*.ogg"))) == 1
