"""Story pictures: the neutral cover without a model, a cover and chapter pictures drawn by
a tiny random diffusers pipeline (tests/auxil/tiny_diffusion.py), the word filter and the
model's own safety checker, and pictures that go with their story (history, /forget,
/export). The story text comes from the FakeLLM at the LLM boundary."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from engine.config import ImagesConfig
from engine.engine import Engine, UserRef
from engine.errors import ConfigError
from engine.images.diffusion import DiffusionDrawer
from engine.images.plan import chapters, plan_pictures, seed_of
from engine.storage.models import StoryPicture
from engine.stories.options import StoryRequest
from engine.stories.service import StoryRecord
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.tiny_diffusion import build_tiny_diffusion
from tests.conftest import MakeConfig

KID = UserRef("telegram", "41", "Kid")
OTHER = UserRef("telegram", "42", "Other")
CAST = "Pip, a small red fox with a blue scarf"
STORY = ("The Lantern Fox\n"
         "Pip the fox found a lantern in the wood. It glowed softly in the dark.\n\n"
         "Pip carried the lantern to the river, where the frogs were lost. They followed "
         "its light all the way home.\n\n"
         "At last Pip hung the lantern by his den. Every night it shone for anyone who "
         "needed it.")


async def write_story(engine: Engine, llm: FakeLLM, user: UserRef = KID) -> StoryRecord:
    llm.replies.append(STORY)
    reply = await engine.stories.create(user, StoryRequest(
        genre="animals", age_group="3-5", characters=CAST, prompt="a fox and a lantern"))
    return await reply.result()


@pytest.fixture
async def drawing(make_config: MakeConfig, tiny_diffusion: Path,
                  fake_llm: FakeLLM) -> AsyncIterator[Engine]:
    """An engine whose stories are drawn by the tiny pipeline, 64 pixels, 2 steps."""
    eng = Engine(make_config(images={"model_dir": str(tiny_diffusion), "size": 64,
                                     "steps": 2}), llm=fake_llm)
    await eng.start()
    yield eng
    await eng.stop()


def image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


async def test_without_a_model_every_story_gets_a_neutral_cover(engine: Engine,
                                                                fake_llm: FakeLLM) -> None:
    story = await write_story(engine, fake_llm)
    pictures = await engine.pictures.illustrate(KID, story)
    assert [(p.position, p.source, p.mime, p.caption) for p in pictures] == [
        (0, "card", "image/png", "The Lantern Fox")]
    assert image(pictures[0].data).size == (512, 512)
    again = await engine.pictures.illustrate(KID, story)  # kept, not drawn twice
    assert [p.id for p in again] == [p.id for p in pictures]
    assert await engine.pictures.of_story(OTHER, story.id) == []  # not theirs


async def test_a_model_draws_a_cover_and_a_picture_per_chapter(drawing: Engine,
                                                               fake_llm: FakeLLM) -> None:
    story = await write_story(drawing, fake_llm)
    pictures = await drawing.pictures.illustrate(KID, story)
    assert [(p.position, p.source) for p in pictures] == [
        (0, "model"), (1, "model"), (2, "model"), (3, "model")]
    for pic in pictures:
        assert pic.mime == "image/jpeg" and image(pic.data).size == (64, 64)
    assert pictures[0].caption == "The Lantern Fox"
    assert pictures[1].caption.startswith("Pip the fox found a lantern")
    assert pictures[3].caption.startswith("At last Pip hung the lantern")
    async with drawing.db.session() as s:
        prompts = (await s.scalars(select(StoryPicture.prompt)
                                   .order_by(StoryPicture.position))).all()
    # The same characters in every picture, each chapter's own scene.
    assert all(f"Characters: {CAST}." in p for p in prompts), prompts
    assert "Scene: Pip carried the lantern to the river" in prompts[2]
    assert len({pic.data for pic in pictures}) == 4


def test_one_seed_per_story_draws_the_same_picture_again(tiny_diffusion: Path) -> None:
    drawer = DiffusionDrawer(ImagesConfig(model_dir=tiny_diffusion, size=64, steps=2))
    first = drawer.draw("a fox with a lantern", seed_of(7))
    assert drawer.draw("a fox with a lantern", seed_of(7)).data == first.data
    assert drawer.draw("a fox with a lantern", seed_of(8)).data != first.data
    assert not first.flagged


def test_chapters_split_at_paragraphs_and_the_word_filter_keeps_prompts_clean() -> None:
    assert [c.split()[0] for c in chapters(STORY.split("\n", 1)[1], 3)] == ["Pip", "Pip",
                                                                           "At"]
    assert len(chapters("One. Two. Three. Four.", 2)) == 2  # one paragraph: at sentences
    assert chapters("Only one sentence", 3) == ["Only one sentence"]
    record = StoryRecord(1, "The Hunt", "A gun went off.\n\nThen all was calm again.",
                         "adventure", "Max", "", "6-8", "en", "short", "complete", "",
                         None)  # type: ignore[arg-type]
    plans = plan_pictures(record, 2, "style")
    assert [bool(p.prompt) for p in plans] == [True, False, True]


async def test_a_picture_the_models_checker_flags_is_never_shown(
        make_config: MakeConfig, tmp_path: Path, fake_llm: FakeLLM) -> None:
    model = build_tiny_diffusion(tmp_path / "flagging", flag_everything=True)
    engine = Engine(make_config(images={"model_dir": str(model), "size": 64, "steps": 1,
                                        "chapters": 2}), llm=fake_llm)
    await engine.start()
    try:
        story = await write_story(engine, fake_llm)
        pictures = await engine.pictures.illustrate(KID, story)
    finally:
        await engine.stop()
    assert [(p.position, p.source) for p in pictures] == [(0, "card")]


async def test_a_model_that_cannot_load_leaves_the_neutral_cover(
        make_config: MakeConfig, tmp_path: Path, fake_llm: FakeLLM,
        caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    engine = Engine(make_config(images={"model_dir": str(broken)}), llm=fake_llm)
    await engine.start()
    try:
        for _ in range(2):
            story = await write_story(engine, fake_llm)
            pictures = await engine.pictures.illustrate(KID, story)
            assert [p.source for p in pictures] == ["card"]
    finally:
        await engine.stop()
    said = [r.getMessage() for r in caplog.records if "neutral cover until" in r.getMessage()]
    assert len(said) == 1 and "[images] model_dir" in said[0]  # told once, not per story


def test_images_config_is_checked_at_start(make_config: MakeConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[images\] model_dir points to .*model_index"):
        make_config(images={"model_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"\[images\] size must be a multiple of 8"):
        make_config(images={"size": 100})


async def test_pictures_go_with_their_story(engine: Engine, fake_llm: FakeLLM) -> None:
    kept = await write_story(engine, fake_llm)
    dropped = await write_story(engine, fake_llm)
    for story in (kept, dropped):
        await engine.pictures.illustrate(KID, story)
    await engine.stories.favourite(KID, kept.id)
    await engine.stories.clear_history(KID, confirm=True)
    assert await engine.pictures.of_story(KID, dropped.id) == []
    assert len(await engine.pictures.of_story(KID, kept.id)) == 1  # a favourite keeps them

    export = zipfile.ZipFile(io.BytesIO(await engine.export(KID)))
    data = json.loads(export.read("doppel-export.json"))
    listed = [p for s in data["stories"] for p in s["pictures"]]
    assert [p["file"] for p in listed] == [f"pictures/story-{kept.id}-0.png"]
    assert image(export.read(listed[0]["file"])).size == (512, 512)

    await engine.forget(KID)
    async with engine.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(StoryPicture)) == 0
