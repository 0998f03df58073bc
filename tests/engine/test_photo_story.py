"""A story from a photo: the photo cleaned (EXIF gone, scaled down), described by an
OpenAI-compatible vision server on loopback (tests/auxil/llm_api.py, a fake named as one),
the story written about it (FakeLLM); bad photos, no vision model, an unsuitable photo;
and the llama.cpp multimodal path as far as it goes without vision weights."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from engine.config import VisionConfig
from engine.engine import Engine, UserRef
from engine.errors import ConfigError, FeatureUnavailable, InputError
from engine.llm.llama_cpp import bundled_model_path
from engine.stories.options import StoryRequest
from engine.vision.backends import LlamaCppVision
from engine.vision.photo import clean_photo
from engine.vision.service import NO_VISION, UNSUITABLE
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.llm_api import SEEN, FakeLLMServer
from tests.conftest import MakeConfig

KID = UserRef("telegram", "51", "Kid")
STORY = ("Biscuit and the Red Sofa\nBiscuit the dog loved the red sofa by the window. Every "
         "morning the sun warmed it, and every morning Biscuit waited there for his ball.")
CAMERA = "DoppelTestCamera"


def photo(width: int = 1600, height: int = 1200, fmt: str = "JPEG") -> bytes:
    """A photo as a phone sends it: EXIF with the camera and turned by its orientation tag."""
    img = Image.new("RGB", (width, height), (180, 40, 40))
    exif = Image.Exif()
    exif[0x010F] = CAMERA  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to show it upright
    out = io.BytesIO()
    img.save(out, format=fmt, exif=exif)
    return out.getvalue()


@pytest.fixture
def vision_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def seeing(make_config: MakeConfig, vision_server: FakeLLMServer,
                 fake_llm: FakeLLM) -> AsyncIterator[Engine]:
    eng = Engine(make_config(vision={"backend": "openai", "api_base": vision_server.base,
                                     "max_side": 512}), llm=fake_llm)
    await eng.start()
    yield eng
    await eng.stop()


async def test_a_story_is_about_what_the_photo_shows(seeing: Engine, fake_llm: FakeLLM,
                                                     vision_server: FakeLLMServer) -> None:
    fake_llm.replies.append(STORY)
    reply = await seeing.stories.create(KID, StoryRequest(genre="animals", prompt="a dog"),
                                        photo=photo())
    story = await reply.result()
    assert story.title == "Biscuit and the Red Sofa"
    assert story.prompt == f"a dog. A story about what this photo shows: {SEEN}"
    assert f"[PROMPT] a dog. A story about what this photo shows: {SEEN}" in \
        fake_llm.prompts[-1][-1].content
    # What the vision model saw: upright, scaled down, and nothing of the EXIF.
    [seen] = vision_server.photos
    img = Image.open(io.BytesIO(seen))
    assert img.format == "JPEG" and img.size == (384, 512) and not img.getexif()
    assert CAMERA.encode() not in seen
    # The photo is not kept anywhere: not in the database, not in the data dir.
    for path in seeing.config.storage.data_dir.rglob("*"):
        if path.is_file():
            assert CAMERA.encode() not in path.read_bytes(), path


def test_what_is_not_a_photo_gets_a_clear_message() -> None:
    with pytest.raises(InputError) as err:
        clean_photo(b"%PDF-1.4 not a picture", max_mb=10, max_side=512)
    assert "couldn't open that as a photo" in err.value.user_message
    with pytest.raises(InputError) as err:
        clean_photo(photo(fmt="PNG"), max_mb=0.001, max_side=512)
    assert "too large" in err.value.user_message and "at most 0.001 MB" in err.value.user_message
    with pytest.raises(InputError) as err:
        clean_photo(b"", max_mb=10, max_side=512)
    assert "empty" in err.value.user_message
    huge = io.BytesIO()
    Image.new("1", (9000, 9000)).save(huge, format="PNG")  # small file, 81 M pixels
    with pytest.raises(InputError) as err:
        clean_photo(huge.getvalue(), max_mb=10, max_side=512)
    assert "too many pixels" in err.value.user_message
    png = Image.open(io.BytesIO(clean_photo(photo(300, 200, "PNG"), max_mb=10,
                                            max_side=512)))
    assert png.format == "JPEG" and png.size == (200, 300)  # turned upright, not enlarged


async def test_without_a_vision_model_the_bot_says_what_it_needs(engine: Engine) -> None:
    with pytest.raises(FeatureUnavailable) as err:
        await engine.stories.create(KID, StoryRequest(), photo=photo())
    assert err.value.user_message == NO_VISION and "[vision]" in NO_VISION
    assert await engine.stories.history(KID) == []


async def test_a_photo_unsuitable_for_a_childrens_story_is_refused(
        seeing: Engine, vision_server: FakeLLMServer) -> None:
    vision_server.vision_reply = "A man is holding a gun in a dark street."
    with pytest.raises(InputError) as err:
        await seeing.stories.create(KID, StoryRequest(), photo=photo())
    assert err.value.user_message == UNSUITABLE
    assert await seeing.stories.history(KID) == []


def test_vision_config_is_checked_at_start(make_config: MakeConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[vision\] api_base must be an http"):
        make_config(vision={"backend": "openai"})
    with pytest.raises(ConfigError, match=r"\[vision\] mmproj_path must name a file"):
        make_config(vision={"backend": "llama_cpp", "model_path": str(bundled_model_path())})


def test_a_projector_that_is_not_one_fails_clearly_at_load(tmp_path: Path) -> None:
    """No multimodal weights here: the real GGUF loads, and a file that is no projector is
    named as such (also when it is a GGUF, just not a projector)."""
    for name, data in (("garbage.gguf", b"GGUF" + b"\0" * 64),
                       ("model.gguf", bundled_model_path().read_bytes())):
        mmproj = tmp_path / name
        mmproj.write_bytes(data)
        vision = LlamaCppVision(VisionConfig(backend="llama_cpp",
                                             model_path=bundled_model_path(),
                                             mmproj_path=mmproj, n_ctx=512))
        with pytest.raises(ConfigError, match=r"\[vision\] mmproj_path .*not a vision "
                                              r"projector"):
            vision.load()


async def test_a_vision_model_that_will_not_load_is_told_not_crashed(
        make_config: MakeConfig, tmp_path: Path, fake_llm: FakeLLM) -> None:
    mmproj = tmp_path / "mmproj.gguf"
    mmproj.write_bytes(b"GGUF" + b"\0" * 64)
    engine = Engine(make_config(vision={"backend": "llama_cpp",
                                        "model_path": str(bundled_model_path()),
                                        "mmproj_path": str(mmproj), "n_ctx": 512}),
                    llm=fake_llm)
    await engine.start()
    try:
        with pytest.raises(FeatureUnavailable) as err:
            await engine.stories.create(KID, StoryRequest(), photo=photo())
        assert "vision model would not load" in err.value.user_message
    finally:
        await engine.stop()
