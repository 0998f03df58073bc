"""Is what the model wrote a story? Checks that hold whatever the model: the script of the
language asked for, loops, and length. The story job holds text back until these pass."""

from __future__ import annotations

import re
from collections import Counter

_LETTER = r"(?:[^\W_]|[\u0900-\u0963\u0966-\u097f])"  # with Devanagari's vowel signs
_WORD = re.compile(rf"{_LETTER}+(?:['\u2019]{_LETTER}+)?")
_DEVANAGARI = ("\u0900", "\u097f")


_ECHOED_TAG = re.compile(
    r"\[\s*(genre|age|language|length|characters|prompt|story|title)\b[^\]}\n]{0,200}"
    r"(?:[\]}]|$)\s*:?\s*|<sep>\s*", re.IGNORECASE | re.MULTILINE)


def strip_echoed_tags(text: str) -> str:
    """The prompt's tags a small model echoes back ("[Age: 3-5 (very simple words)]",
    "[TITLE] The River", "<sep>") taken out of a story's text."""
    return _ECHOED_TAG.sub("", text)


def script_share(text: str, language: str) -> float:
    """The share of letters in the script of ``language`` (Devanagari for Hindi, Latin for
    English); 1.0 for text without letters."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    if language == "hi":
        ours = sum(1 for c in letters if _DEVANAGARI[0] <= c <= _DEVANAGARI[1])
    else:
        ours = sum(1 for c in letters if c.isascii())
    return ours / len(letters)


def right_script(text: str, language: str, least: float = 0.6) -> bool:
    return script_share(text, language) >= least


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def min_words(max_tokens: int) -> int:
    """Fewer words than this is not a story of the length asked for (a quarter of the
    budget, at about 0.75 words a token, and never under 40)."""
    return max(40, int(max_tokens * 0.75 / 4))


class LoopGuard:
    """Watches a story grow and says when the model has started to go round in circles: a
    run of ``span`` words, or a sentence of four or more words, written for the
    ``times``-th time. (A refrain sung three times, as stories for small children have, is
    not a loop; a model that loops repeats itself many more times.)"""

    def __init__(self, span: int = 8, times: int = 4) -> None:
        self.span, self.times = span, times
        self._words: list[str] = []
        self._grams: Counter[tuple[str, ...]] = Counter()
        self._sentences: Counter[str] = Counter()

    def sentence(self, text: str) -> bool:
        """Add a finished sentence (or line); True when the story now loops."""
        ws = words(text)
        looped = False
        if len(ws) >= 4:
            key = " ".join(ws)
            self._sentences[key] += 1
            looped = self._sentences[key] >= self.times
        for w in ws:
            self._words.append(w)
            if len(self._words) >= self.span:
                gram = tuple(self._words[-self.span:])
                self._grams[gram] += 1
                looped = looped or self._grams[gram] >= self.times
        return looped

    def runs_on(self, unfinished: str) -> bool:
        """True when text not yet ended by a sentence mark already repeats itself (a loop
        with no full stop: "and the others, and the others, and the others ...")."""
        ws = words(unfinished)
        if len(ws) < self.span * self.times:
            return False
        grams = Counter(tuple(ws[i:i + self.span]) for i in range(len(ws) - self.span + 1))
        return max(grams.values()) >= self.times
