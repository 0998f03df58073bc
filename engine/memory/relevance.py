"""Does memory have something on the question? Evidence that carries over from one
person's mail to another's: meaning (cosine similarity of the best chunk and of the best
window of a few sentences) and keywords, where how much a keyword says is measured
against the persona's own memory (its inverse document frequency).

- a question about a time memory does not cover ("Did you sell it in 2004?", "your talk
  in February 2002" when the mail ends in January) has nothing;
- a question nothing in memory is even near in meaning has nothing;
- otherwise the evidence is weighed together (:data:`WEIGHTS`): closeness in meaning, how
  much the words the best passage shares with the question tell (a vague question whose
  words are everywhere, "Which message?", tells little), and how much of the question
  memory never mentions at all ("Who won the 2018 World Cup?", "your knee surgery").
  A stranger's paraphrase shares few words with the mail and is only moderately close in
  meaning, so neither alone decides.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_YEAR = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?\s+"
                         r"(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?(19[5-9]\d|20\d\d)\b", re.IGNORECASE)


def terms(text: str) -> list[str]:
    return _WORD.findall(text.lower())


MIN_DOCS = 20
"""Below this many chunks, how rare a word is says little: every word weighs the same."""


@dataclass
class TermStats:
    """How many chunks of a persona's memory contain each word, and the years (and months,
    counted as ``year * 12 + month - 1``) it spans."""

    docs: int
    df: Counter[str]
    years: tuple[int, int] | None = None
    months: tuple[int, int] | None = None

    @classmethod
    def build(cls, texts: Iterable[str], dates: Iterable[tuple[int, int] | int] = ()
              ) -> TermStats:
        """``dates``: (year, month) of each mail, or a year alone."""
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            n += 1
            df.update(set(terms(text)))
        given = list(dates)
        years = sorted(d[0] if isinstance(d, tuple) else d for d in given)
        months = sorted(d[0] * 12 + d[1] - 1 for d in given if isinstance(d, tuple))
        return cls(n, df, (years[0], years[-1]) if years else None,
                   (months[0], months[-1]) if months else None)

    def idf(self, word: str) -> float:
        f = self.df.get(word, 0)
        return math.log(1 + (self.docs - f + 0.5) / (f + 0.5))

    @property
    def max_idf(self) -> float:
        return self.idf("\0")


def rarity(stats: TermStats | None) -> tuple[Callable[[str], float], float]:
    """Each word's IDF and the largest possible IDF; with too few chunks to tell (or no
    statistics), every word weighs 1."""
    if stats is None or stats.docs < MIN_DOCS:
        return (lambda _word: 1.0), 1.0
    return stats.idf, stats.max_idf


WEIGHTS = {"window": 0.354, "cosine": 0.306, "unseen": -0.389, "information": 1.0}
"""How each piece of evidence counts (a logistic regression fitted on kaminski-stranger's
factual questions, answerable against unanswerable; scaled so that information weighs 1)."""


@dataclass(frozen=True)
class Gate:
    min_score: float = 0.30
    """Cosine similarity of the best window below which nothing in memory is near the
    question in meaning."""
    threshold: float = 0.97
    """The weighed evidence (:data:`WEIGHTS`) at which memory has something: the value at
    which at most 5% of kaminski-stranger's answerable questions are refused (2 of 44).
    Lower answers more questions and refuses fewer it cannot answer."""


@dataclass(frozen=True)
class Evidence:
    """What the best candidates say about a question, in numbers between 0 and 1."""

    cosine: float
    """The best cosine similarity of any candidate."""
    information: float
    """In the candidate holding most of the question's words (IDF-weighted), those words'
    IDF summed, over the largest possible: below 1, a question too vague to look up
    ("Which message?")."""
    unseen: float
    """Share of the question's words (IDF-weighted) that no chunk of memory contains."""
    out_of_time: bool
    """The question names years (or a month of a year), none within what memory spans."""
    coverages: tuple[float, ...] = ()
    """Each passage's share of the question's words (IDF-weighted)."""
    window: float = -1.0
    """The best cosine similarity of any candidate's window (-1: as ``cosine``)."""

    @property
    def closeness(self) -> float:
        return max(self.cosine, self.window)

    def weight(self) -> float:
        """The evidence weighed together (:data:`WEIGHTS`)."""
        return (WEIGHTS["window"] * self.closeness + WEIGHTS["cosine"] * self.cosine
                + WEIGHTS["unseen"] * self.unseen
                + WEIGHTS["information"] * self.information)

    def relevant(self, gate: Gate) -> bool:
        if self.out_of_time or self.closeness < gate.min_score:
            return False
        return self.weight() >= gate.threshold


def _out_of_time(question: str, stats: TermStats | None) -> bool:
    """The question names years, or months of years, none of them within memory's span."""
    if stats is None or stats.years is None:
        return False
    dated = [(int(y), _MONTHS.index(m.lower()[:3]))
             for m, y in _MONTH_YEAR.findall(question)]
    if dated and stats.months is not None:
        first, last = stats.months
        return not any(first <= y * 12 + m <= last for y, m in dated)
    years = {int(y) for y in _YEAR.findall(question)}
    return bool(years) and not any(stats.years[0] <= y <= stats.years[1] for y in years)


def weigh(question: str, passages: list[str], cosines: list[float],
          stats: TermStats | None, content: list[str], windows: list[float] | None = None
          ) -> Evidence:
    """The evidence for ``question`` (its content words ``content``) in ``passages``
    (the best candidates, with their cosine similarity and their best window's)."""
    best_cos = max(cosines, default=0.0)
    best_window = max(windows or [], default=-1.0)
    out_of_time = _out_of_time(question, stats)
    words = list(dict.fromkeys(w for w in content if not _YEAR.fullmatch(w)))
    if not words:
        return Evidence(best_cos, 0.0, 0.0, out_of_time, tuple(0.0 for _ in passages),
                        best_window)
    idf, top = rarity(stats)
    mass = sum(idf(w) for w in words)
    unseen = (sum(idf(w) for w in words if stats.df.get(w, 0) == 0) / mass
              if stats is not None and stats.docs >= MIN_DOCS else 0.0)
    coverage = support = information = 0.0
    shares = []
    for text, cos in zip(passages, cosines, strict=True):
        present = set(terms(text))
        found = [w for w in words if w in present]
        share = sum(idf(w) for w in found) / mass
        shares.append(share)
        if (share, cos) > (coverage, support):
            coverage, support = share, cos
            information = sum(idf(w) for w in found) / top
    return Evidence(best_cos, information, unseen, out_of_time, tuple(shares), best_window)
