"""Split text into ~N-token chunks on paragraph and sentence bounds, with overlap; find repeats."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # datasketch imports scipy (~0.4 s): only once a text is checked
    from datasketch import MinHash

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
NUM_PERM = 64
SCHEME = "affine32"
"""Stored signatures are only comparable under the same hashing scheme: fixed here."""


def split_units(text: str) -> list[str]:
    """Paragraphs, with long paragraphs split further into sentences."""
    units: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para:
            units.extend(s.strip() for s in _SENTENCE.split(para) if s.strip())
            units[-1] += "\n"  # remember the paragraph end for re-joining
    return units


def unit_counter(texts: list[str], count_many: Callable[[list[str]], list[int]],
                 count: Callable[[str], int]) -> Callable[[str], int]:
    """``count``, with the units of ``texts`` counted beforehand in one ``count_many`` call
    (a tokenizer's batch call: no loop in Python for the sentences ``chunk_text`` asks of)."""
    units = list({u for text in texts for u in split_units(text)})
    known = dict(zip(units, count_many(units), strict=True))

    def counted(text: str) -> int:
        n = known.get(text)
        return count(text) if n is None else n

    return counted


def chunk_text(text: str, size: int, overlap: int, count: Callable[[str], int]) -> list[str]:
    """Chunks of about ``size`` tokens; each repeats up to ``overlap`` tokens of the last one.

    A single sentence longer than ``size`` is cut by words.
    """
    units: list[tuple[str, int]] = []
    for unit in split_units(text):
        n = count(unit)
        if n <= size:
            units.append((unit, n))
            continue
        words = unit.split()
        step = max(1, int(len(words) * size / n))
        for i in range(0, len(words), step):
            piece = " ".join(words[i:i + step])
            units.extend(_by_chars(piece, count(piece), size, count))
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    total = 0
    for unit, n in units:
        if current and total + n > size:
            chunks.append(_join(current))
            keep: list[tuple[str, int]] = []
            kept = 0
            for u in reversed(current):
                if kept + u[1] > overlap:
                    break
                keep.insert(0, u)
                kept += u[1]
            current, total = keep, kept
        current.append((unit, n))
        total += n
    if current:
        chunks.append(_join(current))
    return chunks


def _by_chars(piece: str, n: int, size: int,
              count: Callable[[str], int]) -> list[tuple[str, int]]:
    """A piece still longer than ``size`` tokens (a word without spaces: a hash, a base64
    blob, a 5 MB line) cut by characters, so that no chunk is ever over ``size``."""
    if n <= size:
        return [(piece, n)]
    step = max(1, int(len(piece) * size / n * 0.9))
    out = []
    for i in range(0, len(piece), step):
        part = piece[i:i + step]
        out.extend(_by_chars(part, count(part), size, count) if len(part) > 1 else
                   [(part, count(part))])
    return out


WINDOW_UNITS = 3
"""Sentences (or short paragraphs) in one window..."""
WINDOW_STEP = 2
"""...and how far the next one starts: windows overlap by one."""
SUBJECT_CHARS = 200
"""Of a subject, this much goes with each embedded text (a 1 MB subject must not)."""


def embedding_text(text: str, subject: str = "") -> str:
    """What a chunk's vector is made of: the subject carries meaning the body often leaves
    out."""
    return f"{subject[:SUBJECT_CHARS]}\n{text}" if subject else text


def sentence_windows(text: str, subject: str = "") -> list[str]:
    """Short overlapping windows of a chunk, each with its subject: a question worded
    differently still matches the one sentence that answers it, where the whole chunk's
    vector is a blur of everything else in it. A chunk of one window has none (its own
    vector is that window's)."""
    units = _window_units(text)
    head = f"{subject[:SUBJECT_CHARS]}\n" if subject else ""
    return [head + " ".join(units[i:i + WINDOW_UNITS]) for i in _window_starts(len(units))]


Span = tuple[int, int]
"""A range of characters of a text: ``text[start:end]``."""


def window_spans(text: str, subject: str = "") -> list[list[Span]]:
    """Where each of ``sentence_windows(text, subject)`` lies in ``embedding_text(text,
    subject)``: the subject's range and the window's sentences' range, in the same order.
    A window's vector is pooled from the chunk's own pass over those ranges (one pass of
    the embedder, not one more per window)."""
    units = _window_units(text)
    starts = _window_starts(len(units))
    if not starts:
        return []
    head = f"{subject[:SUBJECT_CHARS]}\n" if subject else ""
    found: list[Span] = []
    at = 0
    for unit in units:  # units are pieces of the text, in order
        start = text.index(unit, at)
        at = start + len(unit)
        found.append((len(head) + start, len(head) + at))
    lead = [(0, len(head) - 1)] if head else []
    return [[*lead, (found[i][0], found[min(i + WINDOW_UNITS, len(found)) - 1][1])]
            for i in starts]


def _window_units(text: str) -> list[str]:
    return [u.strip() for u in split_units(text) if u.strip()]


def _window_starts(units: int) -> range:
    """The first unit of each window; none when the text is one window or less."""
    if units <= WINDOW_UNITS:
        return range(0)
    return range(0, units - WINDOW_UNITS + WINDOW_STEP, WINDOW_STEP)


def _join(units: list[tuple[str, int]]) -> str:
    return "".join(
        u.rstrip("\n") + ("\n\n" if u.endswith("\n") else " ") for u, _ in units
    ).strip()


def content_hash(text: str) -> str:
    """Hash of the text with case and whitespace normalised: exact repeats collide."""
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


def _shingles(text: str) -> list[bytes]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < 5:
        return [" ".join(words).encode()]
    return [" ".join(words[i:i + 5]).encode() for i in range(len(words) - 4)]


def minhash(text: str) -> MinHash:
    from datasketch import MinHash

    m = MinHash(num_perm=NUM_PERM, scheme=SCHEME)
    m.update_batch(_shingles(text))
    return m


class DuplicateFilter:
    """Exact (normalised hash) and near (MinHash LSH over 5-word shingles) duplicate detection."""

    def __init__(self, threshold: float) -> None:
        from datasketch import MinHashLSH

        self.hashes: set[str] = set()
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._n = 0

    def load(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        """Seed with stored chunks: (content hash, MinHash signature bytes)."""
        from datasketch import MinHash

        for h, sig in items:
            self.hashes.add(h)
            if sig:
                m = MinHash(num_perm=NUM_PERM, scheme=SCHEME,
                            hashvalues=np.frombuffer(sig, dtype=np.uint64))
                self._insert(m)

    def check(self, text: str) -> tuple[str | None, str, MinHash]:
        """(reason it is a duplicate or None, its content hash, its MinHash)."""
        h = content_hash(text)
        m = minhash(text)
        if h in self.hashes:
            return "exact duplicate", h, m
        if self.lsh.query(m):
            return "near duplicate", h, m
        return None, h, m

    def add(self, h: str, m: MinHash) -> None:
        self.hashes.add(h)
        self._insert(m)

    def _insert(self, m: MinHash) -> None:
        self._n += 1
        self.lsh.insert(str(self._n), m)


def signature_bytes(m: MinHash) -> bytes:
    return np.asarray(m.hashvalues, dtype=np.uint64).tobytes()
