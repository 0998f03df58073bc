"""``doppel train prepare``: a story dataset in the stories feature's prompt format.

Sources are JSONL files (one ``{"title", "text", "language"?, "id"?}`` per line), plain-text
files (one story each) and, optionally, the stories users starred. Each story is cleaned,
kept if it is 100-2,000 words, deduplicated (exact and near, MinHash), given a genre,
characters and a prompt by rules, written as::

    [GENRE] fantasy [CHARACTERS] Mia, Pip [PROMPT] ... [STORY] ...

and assigned to train/validation/test (81/9/10) by a hash of its text, so the split is the
same on every run and a story never moves between splits when others are added.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.llm.base import ChatMessage, LLMBackend, SamplingParams
from engine.stories.options import GENRES

SPLITS = (("train", 81), ("validation", 9), ("test", 10))
MIN_STORIES = 10
"""Fewer than this cannot give every split a story."""

_GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "fantasy": ("dragon", "magic", "wizard", "witch", "fairy", "giant", "spell", "enchanted",
                "troll", "elf", "princess", "king", "queen", "castle"),
    "animals": ("fox", "wolf", "lion", "bear", "mouse", "rabbit", "bird", "dog", "cat", "frog",
                "crow", "hare", "tortoise", "duck", "owl", "horse", "goat", "ant"),
    "bedtime": ("sleep", "bed", "dream", "moon", "night", "stars", "blanket", "yawn"),
    "friendship": ("friend", "friends", "together", "share", "shared", "kind", "help"),
    "adventure": ("journey", "sea", "forest", "mountain", "treasure", "ship", "explore",
                  "cave", "travel"),
    "funny": ("laugh", "silly", "giggle", "funny", "joke"),
    "science fiction": ("robot", "space", "rocket", "planet", "alien", "machine"),
    "mystery": ("mystery", "secret", "clue", "hidden", "disappeared", "strange"),
}
_NOT_NAMES = frozenset(
    "the a an and but so then once one when there he she it they we i you his her their "
    "this that in on at of to for with from by as if all no yes oh mr mrs my our what why "
    "how who where after before one day every now soon".split())


@dataclass(frozen=True)
class Example:
    id: str
    genre: str
    characters: str
    prompt: str
    story: str
    language: str
    source: str
    split: str

    def formatted(self) -> str:
        return (f"[GENRE] {self.genre} [CHARACTERS] {self.characters} [PROMPT] {self.prompt} "
                f"[STORY] {self.story}")


@dataclass
class PrepareReport:
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    genres: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    words: list[int] = field(default_factory=list)
    fields_from: Counter[str] = field(default_factory=Counter)
    """How each derived field was made: ``"llm"`` or ``"rules"``."""


Labeler = Callable[[str], dict[str, str]]
"""Story text -> the genre, characters and prompt it could derive (a subset)."""

_LABEL_SYSTEM = ("You label children's stories for a dataset. Reply with exactly three lines "
                 "and nothing else.")


def llm_labeler(llm: LLMBackend, max_chars: int = 1500) -> Labeler:
    """Genre, characters and prompt asked of a model; answers that do not fit are dropped
    (the rules fill those fields)."""
    genres = ", ".join(GENRES)

    def label(text: str) -> dict[str, str]:
        story = text[:max_chars]
        messages = [ChatMessage("system", _LABEL_SYSTEM), ChatMessage("user", (
            f"Story:\n{story}\n\nReply in this form:\nGenre: one of {genres}\n"
            "Characters: the main characters' names, at most three, comma-separated\n"
            "Prompt: one sentence saying what the story is about"))]
        reply = "".join(llm.stream_chat(messages, SamplingParams(max_tokens=80, temperature=0,
                                                                 seed=0), lambda: False))
        return parse_labels(reply)

    return label


def parse_labels(reply: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in reply.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(" *-").lower(), " ".join(value.split()).strip(" .*\"'")
        if key == "genre" and value.lower() in GENRES:
            out["genre"] = value.lower()
        elif key == "characters" and value:
            names = [n.strip() for n in value.split(",") if n.strip()]
            if 0 < len(names) <= 3 and all(len(n.split()) <= 3 for n in names):
                out["characters"] = ", ".join(names)
        elif key == "prompt" and 3 <= len(value.split()) <= 40:
            out["prompt"] = value
    return out


def clean(text: str) -> str:
    """Paragraphs kept, hard line-wraps joined, spaces normalised."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def genre_of(text: str) -> str:
    words = Counter(re.findall(r"[a-z]+", text.lower()))
    scores = {g: sum(words[w] for w in vocab) for g, vocab in _GENRE_WORDS.items()}
    best = max(scores, key=lambda g: (scores[g], g))
    return best if scores[best] >= 2 else "fairy tale"


def characters_of(text: str, most: int = 3) -> str:
    """Capitalised words seen at least twice and at least once mid-sentence (so not just
    a sentence's first word), leaving out common words."""
    seen = Counter(m.group(1) for m in re.finditer(r"\b([A-Z][a-z]{2,})\b", text))
    mid = {m.group(1) for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,})\b", text)}
    names = [(n, c) for n, c in seen.most_common() if c >= 2 and n in mid
             and n.lower() not in _NOT_NAMES]
    return ", ".join(n for n, _ in names[:most])


def prompt_of(text: str, limit: int = 160) -> str:
    first = " ".join(re.split(r"(?<=[.!?।])\s", text.strip(), maxsplit=1)[0].split())
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + " ..."


_RULES: dict[str, Callable[[str], str]] = {
    "genre": genre_of, "characters": characters_of, "prompt": prompt_of}
"""The rule that derives each field a source story may lack."""


def split_of(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100
    edge = 0
    for name, share in SPLITS:
        edge += share
        if bucket < edge:
            return name
    return SPLITS[-1][0]


def read_sources(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Stories from .jsonl and .txt files (folders are searched)."""
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if any(part.upper().startswith("LICENSE") for part in f.parts[-2:]):
                continue  # licence texts beside a corpus are not stories
            if f.suffix == ".jsonl":
                with f.open(encoding="utf-8") as lines:
                    for n, line in enumerate(lines, 1):
                        if line.strip():
                            row = json.loads(line)
                            yield {"id": row.get("id") or f"{f.stem}-{n}", "source": f.name,
                                   "text": row.get("text", ""),
                                   "language": row.get("language", "en")}
            elif f.suffix == ".txt":
                yield {"id": f.stem, "source": f.name, "language": "en",
                       "text": f.read_text(encoding="utf-8", errors="replace")}


def prepare(stories: Iterable[dict[str, Any]], *, min_words: int = 100,
            max_words: int = 2000, near_duplicate: float = 0.9,
            labeler: Labeler | None = None) -> tuple[list[Example], PrepareReport]:
    """Clean, filter, deduplicate and split; fields the source lacks come from ``labeler``
    (the configured LLM) where it gives a usable answer, else from rules."""
    from engine.memory.chunk import DuplicateFilter  # MinHash (datasketch): only here

    report = PrepareReport()
    dups = DuplicateFilter(near_duplicate)
    examples: list[Example] = []
    for row in stories:
        report.read += 1
        text = clean(str(row.get("text", "")))
        words = len(text.split())
        if words < min_words or words > max_words:
            report.dropped[f"length outside {min_words}-{max_words} words"] += 1
            continue
        reason, h, mh = dups.check(text)
        if reason:
            report.dropped[reason] += 1
            continue
        dups.add(h, mh)
        missing = [k for k in _RULES if not row.get(k)]
        labels = labeler(text) if labeler and missing else {}
        derived = {k: row.get(k) or labels.get(k) or rule(text) for k, rule in _RULES.items()}
        for k in missing:
            report.fields_from["llm" if k in labels else "rules"] += 1
        ex = Example(id=str(row["id"]), genre=derived["genre"],
                     characters=derived["characters"], prompt=derived["prompt"], story=text,
                     language=str(row.get("language", "en")), source=str(row.get("source", "")),
                     split=split_of(text))
        examples.append(ex)
        report.kept += 1
        report.splits[ex.split] += 1
        report.genres[ex.genre] += 1
        report.languages[ex.language] += 1
        report.words.append(words)
    if len(examples) < MIN_STORIES:
        raise InputError(f"{len(examples)} stories", user_message=(
            f"Only {len(examples)} stories are left after cleaning; at least {MIN_STORIES} "
            "are needed for a train/validation/test split."))
    return examples, report


def write_dataset(examples: list[Example], report: PrepareReport, out: Path) -> None:
    """``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` and ``dataset_card.md``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, _ in SPLITS:
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for ex in sorted((e for e in examples if e.split == name), key=lambda e: e.id):
                f.write(json.dumps({**asdict(ex), "text": ex.formatted()},
                                   ensure_ascii=False) + "\n")
    edges = [0, 150, 300, 600, 1000, 2000]
    bins = [f"{a}-{b}" for a, b in itertools.pairwise(edges)]
    hist = Counter(next((f"{a}-{b}" for a, b in itertools.pairwise(edges) if a < w <= b),
                        f">{edges[-1]}") for w in report.words)
    lines = [
        "# Story dataset", "",
        f"{report.kept} stories kept of {report.read} read "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(report.dropped.items())) or 'none dropped'}).",
        "", "| split | stories |", "|---|---|",
        *[f"| {name} | {report.splits[name]} |" for name, _ in SPLITS],
        "", "| genre | stories |", "|---|---|",
        *[f"| {g} | {n} |" for g, n in report.genres.most_common()],
        "", "| language | stories |", "|---|---|",
        *[f"| {lang} | {n} |" for lang, n in report.languages.most_common()],
        "", "| words | stories |", "|---|---|",
        *[f"| {k} | {hist[k]} |" for k in bins if hist[k]],
        "", "Format: `[GENRE] ... [CHARACTERS] ... [PROMPT] ... [STORY] ...`; where the "
        "source had no genre, characters or prompt they were derived "
        f"({', '.join(f'{n} by {k}' for k, n in sorted(report.fields_from.items())) or 'none'}).",
    ]
    (out / "dataset_card.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


async def favourite_stories(db: Any) -> list[dict[str, Any]]:
    """Stories users starred (their own genre, characters and prompt), for the dataset."""
    from sqlalchemy import select

    from engine.storage.models import Favourite, Story

    async with db.session() as s:
        rows = (await s.scalars(select(Story).join(Favourite, Favourite.story_id == Story.id)
                                .where(Story.status == "complete").distinct())).all()
    return [{"id": f"favourite-{r.id}", "source": "favourites", "text": r.content,
             "language": r.language, "genre": r.genre, "characters": r.characters,
             "prompt": r.prompt} for r in rows]
