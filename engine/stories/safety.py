"""Keep stories age-appropriate: a filter on what is asked and on what is written.

Words are matched whole, after the text is brought to plain letters: Unicode look-alikes
(Cyrillic and Greek letters, full-width ones) to Latin, leetspeak ("k1ll3r", "s3x", "sh!t") to
letters, letters spelled out with separators ("k.i.l.l.s", "f u c k") joined, stretched
letters ("kiiiill") shortened, and a masked letter ("dr*gs") matched as any letter. Fairy-tale
peril (a wolf, a witch, a dragon, a sword fight) is fine; a few phrases that only look bad
("killer whale", "shooting star", "bath bomb") are let through. A request phrased as an
instruction to drop the rules ("ignore previous instructions") is refused too.
``bench/story_safety.py`` measures it on a labelled set.
"""

from __future__ import annotations

import re
import unicodedata

from engine.errors import InputError

# Stems matched whole with their usual endings (kill, kills, killed, killing, killer).
_EN_STEMS = (
    "kill", "murder", "blood", "bloody", "gore", "gory", "gun", "shoot", "stab", "suicide",
    "torture", "rape", "rapist", "sex", "sexy", "sexual", "erotic", "naked", "nude", "nudity",
    "porn", "porno", "nsfw", "horny", "seductive", "undress", "drug", "cocaine", "heroin",
    "meth", "beer", "vodka", "whiskey", "drunk", "alcohol", "cigarette", "behead",
    "corpse", "terrorist", "bomb", "massacre", "fuck", "shit", "bitch", "bastard", "damn",
    "slut", "whore",
)
_ENDINGS = r"(?:s|es|ed|d|ing|er|ers|ings|y)?"
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, _EN_STEMS)) + r")" + _ENDINGS + r"\b")
_PHRASES = re.compile(
    r"\b(?:for (?:adults|grown[- ]?ups)|(?:adults|grown[- ]?ups) only|strip club|"
    r"take?s? off (?:all )?(?:her|his|their) clothes|get(?:s|ting)? high|"
    r"hang (?:your|him|her)self|cuts? (?:him|her|my|your)self|commit suicide|"
    r"in a bad way|races? (?:is|are) (?:worse|better|inferior)|smok\w* (?:weed|pot|joints?)|"
    r"weed (?:joints?|brownies?|gumm\w*))\b")
_RULE_BREAKING = re.compile(
    r"\b(?:ignore|disregard|forget)\b[^.!?\n]{0,40}\b(?:instructions?|rules|prompt|filter)|"
    r"\byou are now\b|\bpretend (?:that )?you are(?: not|n't)\b|\bunfiltered\b|"
    r"\bno (?:rules|filters?)\b")
"""A request that tries to talk the storyteller out of its rules."""
_FINE = re.compile(
    r"\b(?:killer whales?|killing time|shooting stars?|bath bombs?|drug ?stores?|"
    r"blood ?hounds?|blood oranges?|gun ?nera|time killer|(?:bamboo|new|green) shoots|"
    r"root beers?|ginger beers?|naked mole[- ]rats?|horny toads?|heroines?)\b")
"""What only looks like a bad word."""

_LOOKALIKES = str.maketrans(
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441"
    "\u0442\u0443\u0445\u0456\u0457\u0458\u0455\u0501\u03b1\u03b2"
    "\u03b5\u03b9\u03ba\u03bf\u03c1\u03c4\u03c5\u03c7\u03bd",
    "abeekmhopctyxiijsdabeikoptuxv")
"""Cyrillic and Greek letters that look like Latin ones, and the Latin letter each is read as."""
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s", "!": "i", "|": "l", "€": "e"})
_LEETY = re.compile(r"\b[\w@$!|€*]*[a-z][\w@$!|€*]*\b")
"""A word with at least one letter: its digits and symbols may stand for letters."""
_SPELLED = re.compile(r"\b(?:[a-z][ .\-_*·•]){2,}[a-z]\b")
"""Letters one by one with separators: "k.i.l.l", "f u c k"."""
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_MASKED = re.compile(r"\b[a-z]+\*+[a-z*]*\b")

# Hindi (Devanagari) substrings.
_HI = ("हत्या", "खून", "बंदूक", "आत्महत्या", "बलात्कार", "नशा", "शराब", "सेक्स", "नंगा", "लाश", "बम")

REFUSAL = ("That isn't something I can put in a children's story. How about a gentle "
           "adventure, a friendly animal or a bit of magic instead?")
OUTPUT_REFUSAL = ("The story I wrote wasn't right for children, so I put it away. "
                  "Please ask again, maybe with a different idea.")


def plain(text: str) -> str:
    """``text`` as plain lower-case letters: look-alikes, leetspeak, letters spelled out
    with separators and stretched letters undone."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_LOOKALIKES)
    text = _LEETY.sub(lambda m: m.group(0).translate(_LEET), text)
    text = _SPELLED.sub(lambda m: re.sub(r"[ .\-_*·•]", "", m.group(0)), text)
    return _STRETCHED.sub(r"\1", text)


def _masked(text: str) -> list[str]:
    """Words with a masked letter ("dr*gs") that can only be a listed word."""
    found = []
    for token in _MASKED.findall(text):
        shape = re.compile(re.escape(token).replace(r"\*", "[a-z]") + "$")
        found += [stem for stem in _EN_STEMS for word in (stem, stem + "s")
                  if shape.match(word)]
    return found


def flagged(text: str) -> list[str]:
    """The unsuitable words or phrases found in ``text`` (empty when it is fine)."""
    words = plain(text)
    words = _FINE.sub(" ", words)
    found = [m.group(0) for m in _WORDS.finditer(words)]
    found += [m.group(0) for m in _PHRASES.finditer(words)]
    found += _masked(words)
    found += [w for w in _HI if w in text]
    return found


def rule_breaking(text: str) -> bool:
    """Whether ``text`` asks the storyteller to drop its rules."""
    return bool(_RULE_BREAKING.search(plain(text)))


def check_request(*fields: str) -> None:
    """Raise InputError with a kind refusal if any field asks for unsuitable content (or
    asks to be let off the rules)."""
    for text in fields:
        if found := flagged(text):
            raise InputError(f"content filter: {found}", user_message=REFUSAL)
        if rule_breaking(text):
            raise InputError("content filter: a request to drop the rules",
                             user_message=REFUSAL)
