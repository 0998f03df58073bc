"""Does memory have something on the question? Evidence that carries over from one
person's mail to another's: meaning (cosine similarity) and keywords must agree, and how
much a keyword says is measured against the persona's own memory (its inverse document
frequency), not against thresholds fitted to one set of questions.

- a question whose most telling words memory never contains ("Who won the 2018 World
  Cup?", "your knee surgery") has nothing, unless a passage is close in meaning (the
  question may just use other words);
- a question about years memory does not cover ("Did you sell it in 2004?") has nothing;
- otherwise memory has something when the best passage is close in meaning, or when it
  contains most of what the question asks (weighted by rarity), including one rare word,
  with meaning not far off ("Who was the general contractor?"); a vague question whose
  words are everywhere ("Which message?") has nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")


def terms(text: str) -> list[str]:
    return _WORD.findall(text.lower())


MIN_DOCS = 20
"""Below this many chunks, how rare a word is says little: every word weighs the same."""


@dataclass
class TermStats:
    """How many chunks of a persona's memory contain each word, and the years it spans."""

    docs: int
    df: Counter[str]
    years: tuple[int, int] | None = None

    @classmethod
    def build(cls, texts: Iterable[str], years: Iterable[int] = ()) -> TermStats:
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            n += 1
            df.update(set(terms(text)))
        span = sorted(years)
        return cls(n, df, (span[0], span[-1]) if span else None)

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


@dataclass(frozen=True)
class Gate:
    min_score: float = 0.45
    """Cosine similarity at which the best passage is close enough in meaning..."""
    min_score_keywords: float = 0.30
    """...or, when keywords agree, the similarity that is still enough."""
    min_coverage: float = 0.75
    """Share of the question's (rarity-weighted) words a passage must contain for keywords
    to agree."""
    min_specificity: float = 0.45
    """How rare the rarest question word in that passage must be (its IDF over the largest
    possible): without one, the question is too vague for memory to answer."""
    min_information: float = 0.65
    """How much the question words in that passage must tell together (IDF summed over
    the largest possible): a vague question is not looked up."""
    max_unseen: float = 0.5
    """Share of the question's (rarity-weighted) words that memory may lack entirely when
    no passage is close in meaning."""


@dataclass(frozen=True)
class Evidence:
    """What the best candidates say about a question, in numbers between 0 and 1."""

    cosine: float
    """The best cosine similarity of any candidate."""
    coverage: float
    """The largest share of the question's words (IDF-weighted) one candidate contains."""
    specificity: float
    """In that candidate, the rarest question word's IDF over the largest possible."""
    information: float
    """In that candidate, the question words' IDF summed, over the largest possible: below
    1, a question too vague to look up ("Which message?")."""
    support: float
    """That candidate's cosine similarity."""
    unseen: float
    """Share of the question's words (IDF-weighted) that no chunk of memory contains."""
    out_of_time: bool
    """The question names years, none of them within the years memory spans."""
    coverages: tuple[float, ...] = ()
    """Each passage's share of the question's words (IDF-weighted)."""

    def relevant(self, gate: Gate) -> bool:
        if self.out_of_time:
            return False
        if self.unseen > gate.max_unseen and self.cosine < gate.min_score:
            return False  # its telling words are not in memory, nor is anything close
        if self.specificity < gate.min_specificity or self.information < gate.min_information:
            return False  # nothing telling in common: too vague to look up
        return self.cosine >= gate.min_score or (
            self.coverage >= gate.min_coverage and self.support >= gate.min_score_keywords)


def weigh(question: str, passages: list[str], cosines: list[float],
          stats: TermStats | None, content: list[str]) -> Evidence:
    """The evidence for ``question`` (its content words ``content``) in ``passages``
    (the best candidates, with their cosine similarity)."""
    best_cos = max(cosines, default=0.0)
    years = {int(y) for y in _YEAR.findall(question)}
    span = stats.years if stats else None
    out_of_time = bool(span and years) and not any(
        span[0] <= y <= span[1] for y in years) if span else False
    words = list(dict.fromkeys(w for w in content if not _YEAR.fullmatch(w)))
    if not words:
        return Evidence(best_cos, 0.0, 0.0, 0.0, 0.0, 0.0, out_of_time,
                        tuple(0.0 for _ in passages))
    idf, top = rarity(stats)
    mass = sum(idf(w) for w in words)
    unseen = (sum(idf(w) for w in words if stats.df.get(w, 0) == 0) / mass
              if stats is not None and stats.docs >= MIN_DOCS else 0.0)
    coverage = specificity = information = support = 0.0
    shares = []
    for text, cos in zip(passages, cosines, strict=True):
        present = set(terms(text))
        found = [w for w in words if w in present]
        share = sum(idf(w) for w in found) / mass
        shares.append(share)
        if (share, cos) > (coverage, support):
            coverage, support = share, cos
            specificity = max((idf(w) for w in found), default=0.0) / top
            information = sum(idf(w) for w in found) / top
    return Evidence(best_cos, coverage, specificity, information, support, unseen,
                    out_of_time, tuple(shares))
