"""What scrolled out of a long conversation, kept as a short running summary.

The prompt carries the newest turns that fit the context window; older ones used to be
lost. Each message that leaves the window (the engine's history, or the prompt's token
budget) becomes one line ("They said: ...", "You said: ..."): its first sentence, cut to a few
words. When there are more than :data:`MAX_LINES`, the lines that say least (no numbers,
no names, small talk) go first, the persona's own before the person's (what they told is
what they will ask about); the rest stay in order. Extractive on purpose: the
bundled 135M model cannot be trusted to summarise, and this costs nothing per turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.llm.base import ChatMessage

MAX_LINES = 16
WORDS = 24
SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_SMALL_TALK = re.compile(r"^(?:They|You) said: (?:ok|okay|thanks|thank you|hi|hello|hey|yes|no|"
                         r"sure|great|cool|nice|bye|good)\b", re.IGNORECASE)


def _line(msg: ChatMessage) -> str:
    first = SENTENCE.split(" ".join(msg.content.split()), maxsplit=1)[0]
    words = first.split()
    text = " ".join(words[:WORDS]) + ("…" if len(words) > WORDS else "")
    return f"{'They said' if msg.role == 'user' else 'You said'}: {text}"


THEIRS = 3.0
"""What the person said outweighs the persona's own lines by this much."""


def salience(line: str) -> float:
    """How much a line holds: numbers and names (a few count: a line of figures is not
    worth more than a fact), length; the person's own words more; small talk least."""
    body = line.split(": ", 1)[-1]
    score = 2.0 * min(len(re.findall(r"\d+", body)), 2) + 1.5 * min(len(_NAME.findall(body)), 3)
    score += min(len(body.split()), WORDS) / WORDS
    if line.startswith("They said"):
        score += THEIRS
    return score - (3.0 if _SMALL_TALK.match(line) else 0.0)


def fold(summary: Sequence[str], messages: Sequence[ChatMessage]) -> list[str]:
    """``summary`` with ``messages`` (oldest first) added, at most :data:`MAX_LINES`."""
    lines = [*summary, *(_line(m) for m in messages if m.content.strip())]
    if len(lines) <= MAX_LINES:
        return lines
    # keep the most telling lines; among equals the newer; then back in order
    ranked = sorted(range(len(lines)), key=lambda i: (salience(lines[i]), i), reverse=True)
    keep = sorted(ranked[:MAX_LINES])
    return [lines[i] for i in keep]
