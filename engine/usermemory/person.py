"""A clause the user wrote about themselves ("my daughter Mia is five"), told back about
them ("their daughter Mia is five") or to them ("your daughter Mia is five")."""

from __future__ import annotations

import re

_FIRST = re.compile(r"\b(I'm|I am|I've|I have|I was|I'd|I|me|my|mine|myself)\b",
                    re.IGNORECASE)
_THIRD = {"i'm": "they're", "i am": "they are", "i've": "they've", "i have": "they have",
          "i was": "they were", "i'd": "they'd", "i": "they", "me": "them", "my": "their",
          "mine": "theirs", "myself": "themselves"}
_SECOND = {"i'm": "you're", "i am": "you are", "i've": "you've", "i have": "you have",
           "i was": "you were", "i'd": "you'd", "i": "you", "me": "you", "my": "your",
           "mine": "yours", "myself": "yourself"}


def _swap(clause: str, table: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        word = m.group(0)
        # "I" is only a pronoun when upper case; "me"/"my" are lower case mid-sentence.
        if word.lower() == "i" and word != "I":
            return word
        return table[" ".join(word.lower().split())]

    out = _FIRST.sub(sub, clause)
    return out[:1].upper() + out[1:] if out else out


def third(clause: str) -> str:
    """About the user, for the model: "Their daughter Mia is five."""
    return _finish(_swap(clause, _THIRD))


def second(clause: str) -> str:
    """To the user: "Your daughter Mia is five."""
    return _finish(_swap(clause, _SECOND))


def _finish(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
