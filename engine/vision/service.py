"""Reading a photo for a story: cleaned here, described by the vision model on its own
scheduler worker (story priority), the description checked like any story request.
The photo itself is never stored: only the story, whose prompt holds the description."""

from __future__ import annotations

import asyncio
import logging

from engine.config import VisionConfig
from engine.errors import ConfigError, FeatureUnavailable, InputError, ModelError
from engine.records import UserRef
from engine.scheduler import JobContext, Priority, Scheduler
from engine.stories import safety
from engine.vision.backends import VisionBackend, make_vision
from engine.vision.photo import clean_photo

log = logging.getLogger(__name__)

VISION = "vision"
MAX_DESCRIPTION = 400
NO_VISION = ("Stories from a photo need a vision model, and none is set up here: the operator "
             "sets [vision] in config.toml (an OpenAI-compatible vision server, or a "
             "multimodal GGUF with its projector).")
BROKEN = ("I can't read photos right now: the vision model would not load. The operator "
          "can see why in the log.")
UNSUITABLE = ("I can't write a children's story about that photo. Try another picture, or "
              "tell me your idea in words.")


class PhotoReader:
    def __init__(self, config: VisionConfig, scheduler: Scheduler,
                 backend: VisionBackend | None = None) -> None:
        self.config = config
        self.scheduler = scheduler
        self.backend = backend or make_vision(config)
        if self.backend is not None:
            scheduler.add_resource(VISION, workers=1)

    @property
    def available(self) -> bool:
        return self.backend is not None

    async def describe(self, user: UserRef, photo: bytes) -> str:
        """What the photo shows, in a few sentences. Raises FeatureUnavailable without a
        vision model, InputError for a photo that is not one, too large, or unsuitable."""
        backend = self.backend
        if backend is None:
            raise FeatureUnavailable("no [vision] backend", user_message=NO_VISION)
        jpeg = await asyncio.to_thread(clean_photo, photo, max_mb=self.config.max_photo_mb,
                                       max_side=self.config.max_side)
        try:
            await self.scheduler.warm(VISION, "vision", backend.load)
        except ConfigError as exc:
            log.error("stories from a photo: %s", exc)
            raise FeatureUnavailable(str(exc), user_message=BROKEN) from exc

        def read(ctx: JobContext) -> str:
            return backend.describe(jpeg)

        job = self.scheduler.submit(VISION, read, user=user.key, kind="photo",
                                    priority=Priority.STORY, timeout_s=self.config.timeout_s)
        text = " ".join((await job.result()).split())
        if len(text) > MAX_DESCRIPTION:
            text = text[:MAX_DESCRIPTION].rsplit(" ", 1)[0] + "…"
        if not text:
            raise ModelError("empty description", user_message="I couldn't make out that "
                                                               "photo. Please try another.")
        if safety.flagged(text):
            raise InputError(f"photo description flagged: {safety.flagged(text)}",
                             user_message=UNSUITABLE)
        return text

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
