"""Split long replies for platform limits (Telegram 4,096, Discord 2,000 characters)."""

from __future__ import annotations

import re

_BOUNDS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?।])\s+"),
           re.compile(r"\s+"))


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most ``limit`` characters, cut at the best bound available: paragraph,
    line, sentence, word, and only as a last resort inside a word."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = 0
        for bound in _BOUNDS:
            ends = [m.start() for m in bound.finditer(window) if 0 < m.start() <= limit]
            if ends:
                cut = ends[-1]
                break
        if cut < limit // 3:  # no decent bound: a hard cut beats a tiny first part
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts
