"""Keep stories age-appropriate: a word filter on what is asked and on what is written."""

from __future__ import annotations

import re

from engine.errors import InputError

# Whole words (English) and substrings (Hindi, Devanagari) that have no place in a story
# for children. Deliberately conservative; operators can extend it in code review.
_EN = (
    "kill", "killed", "killing", "murder", "murdered", "blood", "bloody", "gore", "gun", "guns",
    "shoot", "shooting", "stab", "stabbed", "suicide", "torture", "rape", "sex", "sexy",
    "naked", "nude", "porn", "drugs", "cocaine", "heroin", "meth", "beer", "vodka", "whiskey",
    "drunk", "cigarette", "smoking", "behead", "corpse", "terrorist", "bomb", "fuck", "shit",
    "bitch", "bastard", "damn",
)
_HI = ("हत्या", "खून", "बंदूक", "आत्महत्या", "बलात्कार", "नशा", "शराब", "सेक्स", "नंगा", "लाश", "बम")
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, _EN)) + r")\b", re.IGNORECASE)

REFUSAL = ("That isn't something I can put in a children's story. How about a gentle "
           "adventure, a friendly animal or a bit of magic instead?")
OUTPUT_REFUSAL = ("The story I wrote wasn't right for children, so I put it away. "
                  "Please ask again, maybe with a different idea.")


def flagged(text: str) -> list[str]:
    """The unsuitable words found in ``text`` (empty when it is fine)."""
    found = [m.group(0).lower() for m in _WORDS.finditer(text)]
    found += [w for w in _HI if w in text]
    return found


def check_request(*fields: str) -> None:
    """Raise InputError with a kind refusal if any field asks for unsuitable content."""
    for text in fields:
        if flagged(text):
            raise InputError(f"content filter: {flagged(text)}", user_message=REFUSAL)
