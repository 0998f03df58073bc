"""Durable facts a user states about themselves, found by rules (the bundled 135M model
cannot be trusted to extract them): "my name is", "call me", "I live in", "I work as", "I
have a ...", "my <someone> is ...", "I love / don't like ...", "I'm allergic to ...",
"I'm vegetarian", "remember that ...", and "forget that I ..." to drop one.

Each fact has a *slot* (``name``, ``home``, ``my:daughter``, ``likes:jazz``, ...): a newer
fact in the same slot replaces the older one ("I live in Leeds" after "I live in York";
"I don't like jazz any more" after "I love jazz"). Questions, wishes and passing states
("I'm tired", "I'd like to", "if I lived ...") are not facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
NAME = r"([A-Z][a-zà-ÿ'-]+(?: [A-Z][a-zà-ÿ'-]+)?)"
ANY_NAME = r"([A-Za-zà-ÿ][a-zà-ÿ'-]+(?: [A-Z][a-zà-ÿ'-]+)?)"
"""After "my name is" / "call me" a name may be written in lower case."""
STOP_WORDS = frozenset(
    "a an the this that these those it its to of in on at for with and or but so very "
    "really quite just also too some any all my your his her their our is are was were be "
    "been am do does did not no".split())
PASSING = frozenset(
    "tired sorry sure fine ok okay good great well bad sick ill happy sad glad bored busy "
    "back here there home ready done going trying thinking looking wondering hungry "
    "thirsty cold hot late early afraid confused curious excited worried interested "
    "lost stuck new listening asking talking working waiting leaving coming right wrong "
    "not still just also so really very about in on at".split())
DIETS = frozenset("vegetarian vegan pescatarian pescetarian teetotal".split())
DURABLE_STATES = frozenset(
    "married divorced single engaged widowed retired pregnant left-handed right-handed "
    "diabetic deaf blind colorblind colourblind".split())
OBJECT_PRONOUNS = frozenset("you it this that them him her these those".split())


@dataclass(frozen=True)
class Fact:
    slot: str
    clause: str
    """In the user's own (first) person: "my daughter Mia is five"."""


@dataclass(frozen=True)
class Extraction:
    facts: list[Fact]
    forget: list[str]
    """What the user asked to be forgotten ("forget that I live in York": "I live in York")."""


TRAILING = re.compile(r"\s+(?:any ?more|now|these days|at all|very much|so much|a lot|too|"
                      r"either|lately|really|as well)$", re.IGNORECASE)


def _head(phrase: str) -> str:
    """The word a noun phrase is about: "a little brown dog called Rex" -> "dog"."""
    phrase = TRAILING.sub("", phrase.strip().rstrip(".!,;"))
    words = re.split(r"\s+(?:called|named|who|that|which|with|from|in|at|of|and|i|we|"
                     r"he|she|they|,)\b|,", phrase.strip(), maxsplit=1,
                     flags=re.IGNORECASE)[0].split()
    words = [w.strip(".,!?;:'\"").lower() for w in words]
    words = [w for w in words if w and w not in STOP_WORDS and not w.isdigit()
             and w not in ("two", "three", "four", "five", "six", "little", "big", "old",
                           "young", "older", "younger", "baby", "new", "lovely", "cute")]
    return words[-1] if words else ""


LEAD = re.compile(r"^(?:well|so|oh|hey|hi|hello|hello there|hi there|by the way|btw|also|"
                  r"and|actually|anyway|ok|okay)[,!]?\s+", re.IGNORECASE)
CLAUSES = re.compile(r",\s*|\s+and\s+(?=(?:i|i'm|i've|my)\b)", re.IGNORECASE)


def _clean(sentence: str) -> str:
    s = sentence.strip().strip("\"'").rstrip(".!;")
    while (shorter := LEAD.sub("", s)) != s:
        s = shorter
    return s.strip()


RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^(?i:my name is|my name's|i am called|i'm called|call me|"
                rf"you can call me|please call me) {ANY_NAME}\b"), "name"),
    (re.compile(r"^i(?:'m| am) (\d{1,3})(?: years old| years| yo)?$", re.IGNORECASE), "age"),
    (re.compile(r"^i (?:live|am living|'m living) in (.+)", re.IGNORECASE), "home"),
    (re.compile(r"^i(?:'ve| have)? moved to (.+)", re.IGNORECASE), "home"),
    (re.compile(r"^i(?:'m| am) from (.+)", re.IGNORECASE), "from"),
    (re.compile(r"^i (?:work|am working|'m working) (?:as|at|for|in) (.+)", re.IGNORECASE),
     "work"),
    (re.compile(r"^my (?:job|work|profession) is (.+)", re.IGNORECASE), "work"),
    (re.compile(r"^my birthday is (.+)", re.IGNORECASE), "birthday"),
    (re.compile(r"^i was born (?:on|in) (.+)", re.IGNORECASE), "born"),
    (re.compile(r"^i(?:'m| am) allergic to (.+)", re.IGNORECASE), "allergy"),
]


def fact_in(sentence: str) -> Fact | None:
    s = _clean(sentence)
    if not s or s.endswith("?") or re.match(
            r"^(?:if|when|maybe|perhaps|do|does|did|can|could|would|should|what|who|where|"
            r"why|how|is|are)\b", s, re.IGNORECASE):
        return None
    low = s.lower()
    for pattern, slot in RULES:
        m = pattern.match(s)
        if m:
            if slot == "allergy":
                return Fact(f"allergy:{_head(m.group(1))}", s)
            if slot == "name":
                return Fact("name", f"my name is {m.group(1)[:1].upper()}{m.group(1)[1:]}")
            return Fact(slot, s)
    m = re.match(rf"^(?i:i'm|i am) {NAME}$", s)
    if m and m.group(1).split()[0].lower() not in PASSING:
        return Fact("name", f"my name is {m.group(1)}")
    m = re.match(r"^i(?:'m| am) (?:a |an )?(\w[\w-]*)$", TRAILING.sub("", low))
    if m and m.group(1) in DIETS:
        return Fact("diet", s)
    if m and m.group(1) in DURABLE_STATES:
        return Fact(f"is:{m.group(1)}", s)
    m = re.match(r"^i(?:'m| am) (?:a|an) (.+)", s, re.IGNORECASE)
    if m and _head(m.group(1)) and _head(m.group(1)) not in PASSING:
        head = _head(m.group(1))
        return Fact("diet" if head in DIETS else f"is:{head}", s)
    m = re.match(r"^i(?:'ve| have)(?: got)? (?:a|an|two|three|four|five|\d+) (.+)", s,
                 re.IGNORECASE)
    if m and _head(m.group(1)):
        return Fact(f"have:{_head(m.group(1))}", s)
    m = re.match(r"^i (?:don't|do not|no longer|never) (?:really )?(?:like|love|enjoy|eat|"
                 r"drink) (.+)", s, re.IGNORECASE) or re.match(
                 r"^i (?:hate|dislike|can't stand) (.+)", s, re.IGNORECASE)
    if m and _head(m.group(1)) and _head(m.group(1)) not in OBJECT_PRONOUNS:
        return Fact(f"likes:{_head(m.group(1))}", s)
    m = re.match(r"^i (?:really |absolutely )?(?:like|love|enjoy|adore) (.+)", s,
                 re.IGNORECASE)
    if m and not re.match(r"^(?:to|it|that|this|you|them|him|her)\b", m.group(1).lower()) \
            and _head(m.group(1)):
        return Fact(f"likes:{_head(m.group(1))}", s)
    # "my <someone> [Name] is / lives / works / hates ...": a statement, not "my note zq-88"
    m = re.match(r"^my (\w+)(?:'s name)?(?: [A-Z][\w'-]+)?(?:'s| (?:is|are|was|were|lives|"
                 r"works|likes|loves|hates|has|goes|plays|studies|turns|turned)\b)(.*)", s,
                 re.IGNORECASE)
    if m and m.group(1).lower() not in ("name", "job", "work", "birthday", "god", "gosh",
                                        "bad", "pleasure", "turn", "question", "point"):
        rest = m.group(2).lower().strip()
        if not re.match(r"^(?:says|said|thinks|thought|asked|told|wants|wanted)\b", rest):
            return Fact(f"my:{m.group(1).lower()}", s)
    return None


_TO_THE_PERSONA = re.compile(
    r"^(?:you|your|always|never|to|from now on|whenever|in (?:every|each|all))\b|"
    r"\byou (?:must|should|shall|have to|need to|will|are to|always|never|can't|cannot)\b|"
    r"\b(?:ignore|disregard|pretend|act as|system prompt|instructions?)\b", re.IGNORECASE)
"""An instruction to the persona ("remember that you must always ..."): not a fact about
the one who writes."""
_NOT_KEPT = re.compile(r"[<>{}\[\]`]|\b(?:passwords?|passcodes?|pins?|api keys?|tokens?|"
                       r"secrets?|credentials?|credit cards?)\b", re.IGNORECASE)
"""Markup, and what nobody should have a chatbot keep: passwords, keys, card numbers."""


def keepable(fact: Fact) -> bool:
    return not _NOT_KEPT.search(fact.clause) and not (
        fact.slot.startswith("note:") and _TO_THE_PERSONA.search(fact.clause))


def extract(text: str) -> Extraction:
    facts: list[Fact] = []
    forget: list[str] = []
    for sentence in SENTENCES.split(text.strip()):
        s = _clean(sentence)
        m = re.match(r"^(?:please |can you |could you )?forget (?:that |about )?(.+)", s,
                     re.IGNORECASE)
        if m:
            forget.append(m.group(1))
            continue
        m = re.match(r"^(?:please )?(?:remember|don't forget|do not forget|note) (?:that )?"
                     r"(.+)", s, re.IGNORECASE)
        if m:
            inner = fact_in(m.group(1))
            words = [w for w in re.findall(r"\w+", m.group(1).lower())
                     if w not in STOP_WORDS and w not in ("i", "me", "you", "we", "us")]
            if inner is not None:
                facts.append(inner)
            elif len(words) >= 2 and not m.group(1).rstrip().endswith("?"):
                # a note of its own ("remember that I take my coffee black"), not "this"
                facts.append(Fact("note:" + " ".join(words[:4]), _clean(m.group(1))))
            continue
        # Each clause on its own ("I'm 7 and I like dinosaurs", "I'm Priya, nice to meet
        # you"); the whole sentence when no clause is a fact alone.
        found = [f for part in CLAUSES.split(s) if (f := fact_in(part)) is not None]
        if not found and (whole := fact_in(s)) is not None:
            found = [whole]
        facts.extend(found)
    slots: dict[str, Fact] = {}
    for fact in facts:  # the last word in one message on a slot stands
        if keepable(fact):
            slots[fact.slot] = fact
    return Extraction(list(slots.values()), forget)
