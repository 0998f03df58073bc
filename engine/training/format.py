"""Training text for a prepared story, in exactly the prompt format ``/story`` sends.

A stage of the curriculum shows the model some of the ``[TAG]`` lines (all of them in the
last stage), so what a model is tuned on is what the bot asks it at serving time. Age group
and length are not in the source stories: they are derived here by simple rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.stories.options import LANGUAGES, LENGTHS, StoryRequest
from engine.stories.prompt import story_prompt
from engine.training.config import STORY_FIELDS

_TAG = {"genre": "GENRE", "age": "AGE", "language": "LANGUAGE", "length": "LENGTH",
        "characters": "CHARACTERS", "prompt": "PROMPT"}


def age_of(story: str) -> str:
    """3-5 / 6-8 / 9-12 from mean sentence length and word length (a readability rule)."""
    sentences = [s for s in re.split(r"[.!?।]+", story) if s.strip()]
    words = story.split()
    if not sentences or not words:
        return "6-8"
    per_sentence = len(words) / len(sentences)
    letters = sum(len(w.strip(".,;:!?\"'")) for w in words) / len(words)
    score = per_sentence + 4 * letters
    return "3-5" if score < 26 else "6-8" if score < 34 else "9-12"


def length_of(story: str) -> str:
    """The shortest ``/story`` length whose token budget (about 0.75 words a token) fits."""
    words = len(story.split())
    for name, tokens in sorted(LENGTHS.items(), key=lambda kv: kv[1]):
        if words <= tokens * 0.75:
            return name
    return max(LENGTHS, key=lambda k: LENGTHS[k])


def request_of(row: dict[str, Any]) -> StoryRequest:
    lang = row.get("language", "en")
    return StoryRequest(genre=row.get("genre") or "fairy tale",
                        characters=row.get("characters", ""), prompt=row.get("prompt", ""),
                        age_group=age_of(row["story"]),
                        language=lang if lang in LANGUAGES else "en",
                        length=length_of(row["story"]))


def prompt_for(row: dict[str, Any], fields: tuple[str, ...] = STORY_FIELDS) -> str:
    """The ``/story`` prompt for this story, keeping only the stage's tag lines."""
    keep = {f"[{_TAG[f]}]" for f in fields} | {"[STORY]"}
    lines = story_prompt(request_of(row)).splitlines()
    return "\n".join(line for line in lines if line.split(" ", 1)[0] in keep)


def read_split(dataset: Path, split: str) -> list[dict[str, Any]]:
    """Rows of ``<dataset>/<split>.jsonl`` as written by ``doppel train prepare``."""
    path = dataset / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(f"missing {path}", user_message=(
            f"{path} is missing: point at a folder made by `doppel train prepare`."))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    if not rows:
        raise InputError(f"empty {path}", user_message=(
            f"{path} has no stories: prepare more stories (each split needs at least one)."))
    return rows


def example_text(row: dict[str, Any]) -> str:
    """A whole training example for a completion model: the full prompt, then the story."""
    return prompt_for(row) + " " + str(row["story"])
