"""What a story request may ask for, with defaults for whatever is left out."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.errors import InputError, shown
from engine.llm.base import SamplingParams
from engine.reply_text import visible

GENRES = ("adventure", "fantasy", "fairy tale", "mystery", "science fiction", "animals",
          "friendship", "bedtime", "funny", "educational")
AGE_GROUPS = ("3-5", "6-8", "9-12")
LANGUAGES = {"en": "English", "hi": "Hindi"}
"""Language codes and the names used in prompts. Hindi is written in Devanagari."""
LANGUAGE_ALIASES = {"english": "en", "hindi": "hi", "हिंदी": "hi", "हिन्दी": "hi"}
LENGTHS = {"short": 220, "medium": 450, "long": 800}
"""Token budgets per length."""
PRESETS = ("greedy", "top_k", "top_p", "best_of_n")
MAX_FIELD = 500


@dataclass(frozen=True)
class StoryRequest:
    genre: str = "adventure"
    characters: str = ""
    prompt: str = ""
    age_group: str = "6-8"
    language: str = "en"
    length: str = "short"
    preset: str = "top_p"
    best_of: int = 3

    @property
    def language_name(self) -> str:
        return LANGUAGES[self.language]

    @property
    def max_tokens(self) -> int:
        return LENGTHS[self.length]


def normalise(request: StoryRequest, custom_genres: list[str]) -> StoryRequest:
    """Check and canonicalise a request; raises InputError with a kind, clear message."""
    genre = " ".join(visible(request.genre).lower().replace("_", " ").split()) or "adventure"
    genre = {"sci-fi": "science fiction", "scifi": "science fiction",
             "fairytale": "fairy tale"}.get(genre, genre)
    known = {g.lower(): g for g in custom_genres}
    if genre not in GENRES and genre not in known:
        options = ", ".join([*GENRES, *custom_genres])
        raise InputError(f"unknown genre {shown(genre)!r}", user_message=(
            f"I don't know the genre '{shown(genre)}'. Try one of: {options}."))
    age = request.age_group.strip().replace("\u2013", "-") or "6-8"  # an en dash too
    if age not in AGE_GROUPS:
        raise InputError(f"bad age {age!r}", user_message="Age group must be 3-5, 6-8 or 9-12.")
    lang = request.language.strip().lower() or "en"
    lang = LANGUAGE_ALIASES.get(lang, lang)
    if lang not in LANGUAGES:
        raise InputError(f"bad language {lang!r}",
                         user_message="I can write stories in English (en) or Hindi (hi).")
    length = request.length.strip().lower() or "short"
    if length not in LENGTHS:
        raise InputError(f"bad length {length!r}",
                         user_message="Length must be short, medium or long.")
    preset = request.preset.strip().lower().replace("-", "_") or "top_p"
    if preset not in PRESETS:
        raise InputError(f"bad preset {preset!r}",
                         user_message=f"Sampling must be one of: {', '.join(PRESETS)}.")
    for name, value in (("characters", request.characters), ("prompt", request.prompt)):
        if len(value) > MAX_FIELD:
            raise InputError(f"{name} too long", user_message=(
                f"The {name} are too long ({len(value)} characters; at most {MAX_FIELD})."
                if name == "characters" else
                f"The prompt is too long ({len(value)} characters; at most {MAX_FIELD})."))
    if not 1 <= request.best_of <= 8:
        raise InputError("best_of out of range", user_message="best-of-N takes N from 1 to 8.")
    return replace(request, genre=known.get(genre, genre), age_group=age, language=lang,
                   length=length, preset=preset,
                   characters=visible(request.characters).strip(),
                   prompt=visible(request.prompt).strip())


def sampling_for(request: StoryRequest, seed: int | None) -> SamplingParams:
    base = SamplingParams(max_tokens=request.max_tokens, seed=seed, repeat_penalty=1.15)
    if request.preset == "greedy":
        return base.with_(temperature=0.0, top_k=1)
    if request.preset == "top_k":
        return base.with_(temperature=0.9, top_k=40, top_p=1.0, min_p=0.0)
    return base.with_(temperature=0.8, top_k=0, top_p=0.92, min_p=0.05)
