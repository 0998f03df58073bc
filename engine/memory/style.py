"""A writing-style profile from the person's own mails, rendered into the system prompt."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_WORD = re.compile(r"[A-Za-z']+")
_STOP = frozenset(
    "a an the and or but if of to in on at for with from by as is are was were be been "
    "it its this that these those i you he she we they me him her us them my your our their "
    "will would can could should may might do does did have has had not no so just also "
    "am pm re fw please thanks thank".split()
)


@dataclass
class StyleProfile:
    mails: int = 0
    greeting: str = ""
    """The most common opening, with names replaced by <Name> (e.g. '<Name>,')."""
    greeting_share: float = 0.0
    sign_off: str = ""
    """The most common closing line (often the signature name)."""
    sign_off_share: float = 0.0
    words_per_mail: float = 0.0
    words_per_sentence: float = 0.0
    exclamations_per_mail: float = 0.0
    questions_per_mail: float = 0.0
    contractions_per_100_words: float = 0.0
    formality: str = ""
    phrases: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleProfile:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> str:
        """Style notes for the system prompt, in the second person."""
        if not self.mails:
            return ""
        lines = [f"(From {self.mails} of your own mails.)"]
        if self.greeting and self.greeting_share >= 0.2:
            lines.append(f"You usually open with \"{self.greeting}\" "
                         f"({self.greeting_share:.0%} of mails).")
        if self.sign_off and self.sign_off_share >= 0.2:
            lines.append(f"You usually sign off with \"{self.sign_off}\".")
        lines.append(f"Your mails average {self.words_per_mail:.0f} words, sentences "
                     f"{self.words_per_sentence:.0f} words; your tone is {self.formality}.")
        if self.exclamations_per_mail < 0.1:
            lines.append("You almost never use exclamation marks.")
        if self.phrases:
            lines.append("Phrases you often use: " + ", ".join(f'"{p}"' for p in self.phrases)
                         + ".")
        return " ".join(lines)


_ADDRESSES = re.compile(r"\S+@\S+|https?://\S+|www\.\S+|\b[\w-]+\.(?:com|net|org|edu|gov)\b",
                        re.IGNORECASE)
_GREETING_WORDS = {"hi", "hello", "dear", "hey", "all", "team", "folks", "everyone", "good"}


def _opening(text: str) -> str:
    first = text.strip().split("\n", 1)[0].strip()
    if len(first.split()) > 4:
        return ""
    return re.sub(r"\b[A-Z][a-z]+\b",
                  lambda m: m.group(0) if m.group(0).lower() in _GREETING_WORDS else "<Name>",
                  first)


def _closing(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    if len(lines) < 2 or len(lines[-1].split()) > 3:
        return ""
    return lines[-1]


def build_profile(mails: Sequence[str]) -> StyleProfile:
    """Compute the profile from cleaned bodies of mails the persona wrote."""
    mails = [m for m in mails if m.strip()]
    if not mails:
        return StyleProfile()
    n = len(mails)
    openings = Counter(o for o in map(_opening, mails) if o)
    closings = Counter(c for c in map(_closing, mails) if c)
    words = [_WORD.findall(m) for m in mails]
    total_words = sum(len(w) for w in words)
    sentences = sum(max(1, len(re.findall(r"[.!?]+(\s|$)", m))) for m in mails)
    contractions = sum(1 for ws in words for w in ws if "'" in w.strip("'"))
    grams: Counter[str] = Counter()
    for mail in mails:
        ws = _WORD.findall(_ADDRESSES.sub(" ", mail))  # "enron com" is not a phrase
        low = [w.lower() for w in ws]
        seen: set[str] = set()
        for size in (2, 3):
            for i in range(len(low) - size + 1):
                gram = low[i:i + size]
                if gram[0] in _STOP or gram[-1] in _STOP:
                    continue
                if all(w[:1].isupper() for w in ws[i:i + size]):
                    continue  # a name ("Phillip Allen", "Kipp Flores") is not style
                seen.add(" ".join(gram))
        grams.update(seen)  # count mails, not repetitions inside one mail
    phrases = [g for g, c in grams.most_common(40) if c >= max(3, n // 50)][:8]
    contraction_rate = 100 * contractions / max(total_words, 1)
    greeting, g_count = openings.most_common(1)[0] if openings else ("", 0)
    sign_off, s_count = closings.most_common(1)[0] if closings else ("", 0)
    return StyleProfile(
        mails=n,
        greeting=greeting,
        greeting_share=g_count / n,
        sign_off=sign_off,
        sign_off_share=s_count / n,
        words_per_mail=total_words / n,
        words_per_sentence=total_words / sentences,
        exclamations_per_mail=sum(m.count("!") for m in mails) / n,
        questions_per_mail=sum(m.count("?") for m in mails) / n,
        contractions_per_100_words=contraction_rate,
        formality="informal" if contraction_rate > 2 else "plain and businesslike",
        phrases=phrases,
    )
