"""Pictures kept with each story: drawn by the operator's text-to-image model on its own
scheduler worker (story priority), or a neutral cover card when there is no model, its
prompt was filtered, the model failed or flagged the picture."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.config import ImagesConfig
from engine.conversations import ConversationStore
from engine.errors import DoppelError, JobCancelled
from engine.images.cards import cover_card
from engine.images.diffusion import DiffusionDrawer, Drawn
from engine.images.plan import PicturePlan, plan_pictures, seed_of
from engine.records import UserRef
from engine.scheduler import JobContext, PositionCallback, Priority, Scheduler
from engine.storage.db import Database
from engine.storage.models import Story, StoryPicture
from engine.stories.service import StoryRecord

log = logging.getLogger(__name__)

IMAGE = "image"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}


@dataclass(frozen=True)
class Picture:
    id: int
    story_id: int
    position: int
    """0: the cover; then the chapters in order."""
    caption: str
    source: str
    """``model`` or ``card`` (the neutral cover)."""
    mime: str
    data: bytes

    @property
    def filename(self) -> str:
        return f"story-{self.story_id}-{self.position}.{EXTENSIONS.get(self.mime, 'bin')}"

    @classmethod
    def of(cls, row: StoryPicture) -> Picture:
        return cls(row.id, row.story_id, row.position, row.caption, row.source, row.mime,
                   row.data)


def _draw_all(drawer: DiffusionDrawer, plans: list[PicturePlan], seed: int,
              ctx: JobContext) -> dict[int, Drawn]:
    out: dict[int, Drawn] = {}
    for plan in plans:
        if ctx.cancelled:
            break
        if plan.prompt:
            out[plan.position] = drawer.draw(plan.prompt, seed, lambda: ctx.cancelled)
    return out


class Pictures:
    def __init__(self, config: ImagesConfig, db: Database, scheduler: Scheduler,
                 users: ConversationStore, drawer: DiffusionDrawer | None = None) -> None:
        self.config = config
        self.db = db
        self.scheduler = scheduler
        self.users = users
        self.drawer = drawer or (DiffusionDrawer(config) if config.model_dir else None)
        self._broken = ""
        """Why the model could not be loaded (then every story gets the card)."""
        if self.drawer is not None:
            scheduler.add_resource(IMAGE, workers=1)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def illustrate(self, user: UserRef, story: StoryRecord, *,
                         on_position: PositionCallback | None = None) -> list[Picture]:
        """The story's pictures, drawn now and stored with it (or those it has). Raises
        JobCancelled if the user cancelled the drawing; any other failure gives the card."""
        if not self.enabled:
            return []
        if have := await self.of_story(user, story.id):
            return have
        drawer = None if self._broken else self.drawer
        plans = plan_pictures(story, self.config.chapters if drawer else 0, self.config.style)
        drawn: dict[int, Drawn] = {}
        if drawer is not None and any(p.prompt for p in plans):
            drawn = await self._draw(drawer, user, plans, seed_of(story.id), on_position)
        rows: list[StoryPicture] = []
        for plan in plans:
            got = drawn.get(plan.position)
            if got is not None and got.flagged:
                log.warning("story %d picture %d flagged by the model's safety checker; not "
                            "shown", story.id, plan.position)
            if got is not None and not got.flagged:
                rows.append(StoryPicture(story_id=story.id, position=plan.position,
                                         caption=plan.caption, prompt=plan.prompt,
                                         source="model", mime=got.mime, data=got.data))
            elif plan.position == 0:
                rows.append(StoryPicture(
                    story_id=story.id, position=0, caption=plan.caption, prompt="",
                    source="card", mime="image/png",
                    data=cover_card(story.title, story.genre, story.age_group,
                                    min(self.config.size, 512))))
        try:
            async with self.db.session() as s, s.begin():
                if await s.get(Story, story.id) is None:  # deleted while it was drawn
                    return []
                s.add_all(rows)
        except IntegrityError:  # drawn twice at once (opened twice): the first one stays
            return await self.of_story(user, story.id)
        return [Picture.of(r) for r in rows]

    async def _draw(self, drawer: DiffusionDrawer, user: UserRef, plans: list[PicturePlan],
                    seed: int, on_position: PositionCallback | None) -> dict[int, Drawn]:
        try:
            await self.scheduler.warm(IMAGE, "diffusion", drawer.load)
        except DoppelError as exc:
            self._broken = str(exc)
            log.error("pictures: %s; stories get the neutral cover until a restart", exc)
            return {}
        job = self.scheduler.submit(IMAGE, partial(_draw_all, drawer, plans, seed),
                                    user=user.key, kind="pictures", priority=Priority.STORY,
                                    timeout_s=self.config.timeout_s, on_position=on_position)
        try:
            return await job.result()
        except JobCancelled:
            raise
        except Exception as exc:  # a failed drawing still leaves the story its cover card
            log.warning("pictures for a story failed (%s); it gets the neutral cover", exc)
            return {}

    async def of_story(self, user: UserRef, story_id: int) -> list[Picture]:
        """The pictures of one of the user's stories, cover first (none if not theirs)."""
        uid = await self.users.user_id(user)
        async with self.db.session() as s:
            rows = (await s.scalars(
                select(StoryPicture).join(Story, Story.id == StoryPicture.story_id)
                .where(StoryPicture.story_id == story_id, Story.user_id == uid)
                .order_by(StoryPicture.position))).all()
        return [Picture.of(r) for r in rows]

    def close(self) -> None:
        if self.drawer is not None:
            self.drawer.close()
