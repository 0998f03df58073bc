"""What to draw for a story: a cover and one picture per chapter, with prompts the engine
derives from the story itself.

Characters stay the same across pictures: every prompt carries the same description of
them (the request's characters, else the story's title), and the whole story is drawn
from one seed. A prompt the word filter catches is not drawn (the cover becomes the
neutral card).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.stories import safety

if TYPE_CHECKING:  # the bench imports this on machines without the storage stack
    from engine.stories.service import StoryRecord

SENTENCE = re.compile(r"(?<=[.!?।])\s+")
SCENE_WORDS = 30
"""Words of a chapter's opening that describe its scene (CLIP reads about 77 tokens)."""
CAPTION_WORDS = 12


@dataclass(frozen=True)
class PicturePlan:
    position: int
    """0 for the cover, then 1, 2, ... for the chapters in order."""
    caption: str
    prompt: str
    """What the model draws; empty when it must not be drawn (the word filter caught it)."""


def seed_of(story_id: int) -> int:
    """One seed per story: its pictures share a look."""
    return int.from_bytes(hashlib.sha256(f"story-{story_id}".encode()).digest()[:4], "big")


def chapters(content: str, n: int) -> list[str]:
    """The story cut into ``n`` parts of about equal length at paragraph ends (or sentence
    ends, for a story in one paragraph); fewer when it is short."""
    if n <= 0 or not content.strip():
        return []
    units = [p.strip() for p in re.split(r"\n\s*\n", content) if p.strip()]
    if len(units) < n:
        units = [s.strip() for s in SENTENCE.split(content.strip()) if s.strip()]
    n = min(n, len(units))
    total = sum(len(u.split()) for u in units)
    parts: list[list[str]] = [[] for _ in range(n)]
    seen = 0
    for unit in units:  # a unit goes to the part its middle falls in
        size = len(unit.split())
        k = min(n - 1, int((seen + size / 2) * n / max(total, 1)))
        parts[k].append(unit)
        seen += size
    return ["\n\n".join(p) for p in parts if p]


def _clip(text: str, words: int) -> str:
    got = text.split()
    return " ".join(got[:words]) + ("…" if len(got) > words else "")


def plan_pictures(story: StoryRecord, n_chapters: int, style: str) -> list[PicturePlan]:
    cast = " ".join(story.characters.split())[:160] or story.title
    look = f"{style}; a story ({story.genre}) for children aged {story.age_group}"
    # What matters most comes first: the text encoder reads about 77 tokens.
    plans = [_checked(0, story.title, f"Book cover for \u201c{story.title}\u201d. "
                                      f"Characters: {cast}. {look}")]
    for k, part in enumerate(chapters(story.content, n_chapters), start=1):
        first = SENTENCE.split(part.strip(), maxsplit=2)
        scene = _clip(" ".join(first[:2]), SCENE_WORDS)
        plans.append(_checked(k, _clip(part, CAPTION_WORDS),
                              f"Scene: {scene} Characters: {cast}. {look}"))
    return plans


def _checked(position: int, caption: str, prompt: str) -> PicturePlan:
    return PicturePlan(position, caption, "" if safety.flagged(prompt) else prompt)
