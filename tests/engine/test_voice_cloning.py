"""Voice cloning without the XTTS extra: clip checks, who may clone, the voice library, and
long stories read aloud in chapters. (The XTTS flow itself: tests/engine/xtts/.)"""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import Config
from engine.engine import Engine, UserRef
from engine.errors import FeatureUnavailable, InputError, NotAllowed
from engine.personas import load_persona
from engine.stories.options import StoryRequest
from engine.voice.clips import CLIP_RATE, TARGET_DBFS, clean_clip, dbfs, read_clip
from engine.voice.text import chapters
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.speech import speech_seconds, speech_wav, wav_bytes
from tests.conftest import ROOT, MakeConfig


def test_a_good_clip_is_kept_mono_at_the_xtts_rate_and_normalised(tmp_path: object) -> None:
    quiet = speech_wav(gain=0.1)
    clip = clean_clip(quiet)
    assert clip.seconds == pytest.approx(speech_seconds(), abs=0.3)  # the speech, kept whole
    assert clip.loudness_dbfs < TARGET_DBFS - 10  # it was quiet...
    # ...and is normalised: at the target unless the peak limit held it back a little
    assert TARGET_DBFS - 3 < dbfs(clip.audio) <= TARGET_DBFS + 0.01
    assert np.abs(clip.audio).max() <= 0.951
    loud = clean_clip(speech_wav(gain=1.0))
    assert abs(dbfs(loud.audio) - dbfs(clip.audio)) < 0.5  # same level whatever came in
    assert len(clip.audio) == pytest.approx(clip.seconds * CLIP_RATE, abs=2)


def test_stored_clip_reads_back(tmp_path: object) -> None:
    from pathlib import Path

    clip = clean_clip(speech_wav())
    path = Path(str(tmp_path)) / "clip.wav"
    path.write_bytes(clip.wav())
    back = read_clip(path)
    assert back.shape == clip.audio.shape
    assert np.max(np.abs(back - clip.audio)) < 1e-3


@pytest.mark.parametrize(("data", "message"), [
    (lambda: speech_wav(seconds=3), "3.0 s long; voice clips must be 6-30 s"),
    (lambda: wav_bytes(np.zeros(22050 * 8, dtype=np.int16), 22050), "almost silent"),
    (lambda: speech_wav(gain=40), "distorted"),
    (lambda: b"ID3 this is no audio at all" * 50, "couldn't read that audio"),
])
def test_bad_clips_are_refused_with_the_reason(data: object, message: str) -> None:
    with pytest.raises(InputError) as err:
        clean_clip(data(), name="Clip 1")  # type: ignore[operator]
    assert message in err.value.user_message


async def test_cloning_without_xtts_explains_what_it_needs(engine: Engine) -> None:
    persona = engine.personas.default
    with pytest.raises(FeatureUnavailable) as err:
        engine.voices.begin(UserRef("telegram", "1"), persona, "studio", is_admin=True)
    assert "XTTS-v2" in err.value.user_message and "xtts_model_dir" in err.value.user_message
    with pytest.raises(InputError, match="no clone draft"):
        await engine.voices.add_clip(UserRef("telegram", "1"), speech_wav())


async def test_admins_and_owners_manage_voices_others_do_not(
        make_config: MakeConfig, tmp_path: object, fake_llm: FakeLLM) -> None:
    from pathlib import Path

    persona_dir = Path(str(tmp_path)) / "personas" / "ann"
    persona_dir.mkdir(parents=True)
    (persona_dir / "persona.toml").write_text(
        '[persona]\ndisplay_name = "Ann"\nowners = ["discord:7"]\n')
    cfg = make_config(engine={"admins": ["telegram:1"]},
                      personas={"dir": str(persona_dir.parent), "default": "ann"})
    eng = Engine(cfg, llm=fake_llm)
    ann = load_persona(persona_dir)
    voices = eng  # the engine's one rule, which the cloning flow uses too
    assert voices.may_manage(UserRef("telegram", "1"), ann)
    assert voices.may_manage(UserRef("discord", "7"), ann)
    assert voices.may_manage(UserRef("discord", "8"), ann, is_admin=True)
    assert not voices.may_manage(UserRef("discord", "8"), ann)
    assert not voices.may_manage(UserRef("telegram", "7"), ann)  # same id, other platform


async def test_library_keeps_voices_per_persona_and_forget_removes_files(
        engine: Engine) -> None:
    owner, other = UserRef("telegram", "1"), UserRef("telegram", "2")
    library = engine.voice.library
    clip = clean_clip(speech_wav())
    uid = await engine.conversations.user_id(owner)
    first = await library.create(persona="allen", name="studio", created_by=uid,
                                 clips=[clip, clip], consent_speaker="Phillip Allen")
    second = await library.create(persona="allen", name="phone", created_by=uid,
                                  clips=[clip], consent_speaker="Phillip Allen")
    kept = await library.create(persona="storyteller", name="narrator",
                                created_by=await engine.conversations.user_id(other),
                                clips=[clip], consent_speaker="Ann Reader")
    assert len(library.clip_paths(first.id)) == 2
    assert (await library.active("allen")).id == second.id  # type: ignore[union-attr]
    with pytest.raises(InputError, match="exists"):
        await library.create(persona="allen", name="studio", created_by=uid, clips=[clip],
                             consent_speaker="Phillip Allen")

    await library.use(first.id)
    listed = await library.for_persona("allen")
    assert [(v.name, v.active) for v in listed] == [("studio", True), ("phone", False)]
    assert listed[0].consent_speaker == "Phillip Allen" and listed[0].consent_at is not None

    with pytest.raises(NotAllowed):
        await engine.voices.delete(other, first.id)
    await engine.voices.delete(owner, second.id, is_admin=True)
    assert not library.directory(second.id).exists()

    assert await engine.forget(owner)
    assert not library.directory(first.id).exists()
    assert await library.for_persona("allen") == []
    assert library.directory(kept.id).is_dir()  # another user's voice stays
    assert [v.id for v in await library.for_persona("storyteller")] == [kept.id]


def test_chapters_cut_between_paragraphs_and_keep_everything() -> None:
    paragraphs = [f"Paragraph {i}. " + " ".join(["The owl flew over the dark wood."] * 5)
                  for i in range(6)]
    text = "\n\n".join(paragraphs)
    parts = chapters(text, 450)
    assert len(parts) == 3 and all(len(p) <= 450 for p in parts)
    assert "\n\n".join(parts) == text
    long_paragraph = "A sentence that goes on. " * 40
    parts = chapters(long_paragraph, 300)
    assert len(parts) > 1 and all(len(p) <= 300 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(long_paragraph.split())


async def test_long_story_is_read_aloud_in_chapters(make_config: MakeConfig,
                                                    fake_llm: FakeLLM) -> None:
    cfg: Config = make_config(voice={"chapter_chars": 300})
    eng = Engine(cfg, llm=fake_llm)
    await eng.start()
    try:
        user = UserRef("telegram", "5")
        body = "\n\n".join(f"Luna the owl visited friend number {i} in the quiet forest "
                           "tonight, and they shared berries under the moon." for i in range(6))
        fake_llm.replies.append(f"Luna's Long Night\n{body}")
        story = await (await eng.stories.create(user, StoryRequest())).result()
        notes = await eng.stories.narrate(user, story.id)
    finally:
        await eng.stop()
    assert len(notes) >= 2
    assert all(n.duration_s > 3 for n in notes)


def test_persona_owners_come_from_persona_toml() -> None:
    allen = load_persona(ROOT / "persona_data" / "allen")
    assert allen.profile.owners == ()
