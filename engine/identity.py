"""The persona stays itself: a sentence of the model's reply that gives the persona another
name, another job, another model's identity or a home its profile and memory never
mention is cut before anyone sees it.

A small model slips into the characters of its training data ("I'm Emily, a marketing
specialist", "I'm SmolLM, trained by Hugging Face"); the prompt alone does not stop it.
The check runs sentence by sentence on what the model writes (``IdentityStream``), so a
sentence is shown once it is whole and found to be in character.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import regex

from engine.reply_text import SENTENCE_END

_NAME_CLAIM = regex.compile(
    r"\b(?i:my name is|my name's|i am|i'm|im|call me|i go by|name's)\s+"
    r"([A-Z][a-z]+(?:[ -][A-Z][a-z]+)?)\b")
_NOT_A_NAME = frozenset(
    "a an the not so sorry glad happy here there just still afraid sure also really very "
    "going always never only in at on from with about fine good great well ok okay yes no "
    "thankful grateful excited curious interested busy back new old available ready "
    "honestly actually currently hoping looking working writing".split())
_OCCUPATIONS = (
    "specialist|manager|engineer|developer|programmer|assistant|teacher|professor|nurse|"
    "doctor|physician|lawyer|attorney|consultant|analyst|writer|author|journalist|student|"
    "designer|marketer|scientist|researcher|chatbot|bot|chef|cook|accountant|banker|broker|"
    "trader|salesman|saleswoman|salesperson|representative|agent|clerk|secretary|receptionist|"
    "artist|musician|singer|actor|actress|photographer|pilot|driver|farmer|architect|"
    "pharmacist|therapist|psychologist|counselor|coach|trainer|librarian|editor|blogger|"
    "influencer|entrepreneur|founder|ceo|cto|executive|director|officer|administrator|"
    "technician|mechanic|electrician|plumber|carpenter|builder|contractor|soldier|police|"
    "detective|firefighter|waiter|waitress|cashier|intern|volunteer|housewife|retiree|"
    "economist|mathematician|statistician|quant|physicist|chemist|biologist|professional|"
    "expert|advisor|adviser|planner|strategist|coordinator|supervisor|owner|investor"
)
_JOB_CLAIM = regex.compile(
    r"\b(?:i am|i'm|im|i work as|i worked as|i've worked as|i have worked as|i'm working as|"
    r"my job is|my role is|i serve as|as)\s+(?:an?|the)\s+((?:[\w-]+\s+){0,3}?)"
    rf"({_OCCUPATIONS})s?\b", regex.IGNORECASE)
_MODEL_CLAIM = regex.compile(
    r"\b(smollm|hugging ?face|openai|chatgpt|gpt-?\d|anthropic|claude|llama|meta ai|"
    r"language model|(?:i was|i've been|i have been|i am|i'm) (?:trained|created|developed|"
    r"made|built|programmed) by)\b", regex.IGNORECASE)
_HOME_CLAIM = regex.compile(
    r"\b(?i:i live in|i'm from|i am from|im from|i grew up in|i was born in|i'm based in|"
    r"i am based in|i moved to|i reside in)\s+([A-Z][\w-]+(?:\s+[A-Z][\w-]+)?)")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Identity:
    """Who the persona is, as its profile says, and what its memory mentions."""

    names: frozenset[str]
    """The words of its names, lower case ("phillip", "allen")."""
    profile: str
    """Its profile (system prompt, description, introduction, style), lower case."""
    known: Callable[[str], bool] = field(default=lambda _word: False)
    """Whether its memory mentions a word (lower case)."""
    introduction: str = ""
    """What it says instead when nothing of a reply is left (its profile's own words)."""

    @classmethod
    def of(cls, display_name: str, introduction: str, *profile: str,
           known: Callable[[str], bool] | None = None) -> Identity:
        names = frozenset(w.lower() for w in _WORD.findall(display_name))
        return cls(names, " ".join((introduction, *profile)).lower(),
                   known or (lambda _word: False), introduction)

    def contradiction(self, sentence: str) -> str | None:
        """Why ``sentence`` gives the persona another identity, or None."""
        for m in _NAME_CLAIM.finditer(sentence):
            words = [w.lower() for w in _WORD.findall(m.group(1))]
            if words[0] in _NOT_A_NAME:
                continue
            if not any(w in self.names for w in words):
                return f"another name: {m.group(1)}"
        for m in _JOB_CLAIM.finditer(sentence):
            job = m.group(2).lower()
            if job not in self.profile and not self.profile_has_stem(job):
                return f"another job: {m.group(1)}{m.group(2)}".strip()
        model = _MODEL_CLAIM.search(sentence)
        if model and model.group(1).lower() not in self.profile:
            return f"another model's identity: {model.group(1)}"
        for m in _HOME_CLAIM.finditer(sentence):
            place = [w.lower() for w in _WORD.findall(m.group(1))]
            if not any(w in self.profile or self.known(w) for w in place):
                return f"another home: {m.group(1)}"
        return None

    def profile_has_stem(self, job: str) -> bool:
        """"trading" in the profile allows "trader"; "research" allows "researcher"."""
        stem = re.sub(r"(er|or|ist|ian|ant|ent)$", "", job)
        return len(stem) >= 4 and stem in self.profile


def in_character(text: str, identity: Identity) -> tuple[str, list[str]]:
    """``text`` without its sentences that contradict ``identity``; and why each was cut."""
    stream = IdentityStream(identity)
    kept = stream.feed(text) + stream.close()
    return kept.strip(), stream.cut


_CUE = re.compile(
    r"\b(?:i|i'm|im|my|as|call|name's|smollm|hugging|openai|chatgpt|gpt|anthropic|claude|"
    r"llama|meta|language|trained|created|developed|made)\b", re.IGNORECASE)
"""Where a claim about who the persona is can begin: every pattern above starts with one."""
_CLAIMS = (_NAME_CLAIM, _JOB_CLAIM, _MODEL_CLAIM, _HOME_CLAIM)


def _may_claim(text: str) -> bool:
    """``text``, from a cue to where its sentence has got, is a claim or may still become
    one ("I'm Em", "I'm a", "I've been"; not "I'm glad", "I've been going")."""
    return any(claim.match(text, partial=True) for claim in _CLAIMS)


class IdentityStream:
    """Passes a streamed reply on as it comes, except a sentence's part from a word that
    may begin a claim about who the persona is ("I'm ...", "as a ...", "trained by ...")
    to the sentence's end: that part is shown once the sentence is whole and in
    character, and left out otherwise. ``feed`` returns what may be shown now.
    ``whole_words``: what is fed never ends inside a word (``CleanStream``'s output, which
    holds a word until it ends): its last word is shown at once, not one piece later."""

    def __init__(self, identity: Identity, *, whole_words: bool = False) -> None:
        self.identity = identity
        self.whole_words = whole_words
        self.pending = ""
        """The current sentence's part not shown yet..."""
        self.shown = ""
        """...and its part already shown."""
        self.kept = ""
        """Everything passed on so far."""
        self.cut: list[str] = []
        """Why each cut sentence was cut."""

    def feed(self, text: str) -> str:
        self.pending += text
        out = []
        while (end := _sentence_end(self.pending)) is not None:
            rest, self.pending = self.pending[:end], self.pending[end:]
            out.append(self._finish(rest))
        # The unfinished sentence: shown up to a possible claim, and never its last,
        # maybe unfinished word.
        cue = next((m for m in _CUE.finditer(self.pending)
                    if _may_claim(self.pending[m.start():])), None)
        space = (len(self.pending) - 1 if self.whole_words
                 else max(self.pending.rfind(" "), self.pending.rfind("\n")))
        safe = min(cue.start() if cue else len(self.pending), space + 1)
        if safe > 0:
            part, self.pending = self.pending[:safe], self.pending[safe:]
            self.shown += part
            self.kept += part
            out.append(part)
        return "".join(out)

    def close(self) -> str:
        rest, self.pending = self.pending, ""
        return self._finish(rest)

    def _finish(self, rest: str) -> str:
        """The end of a sentence whose beginning (``shown``) may already be out."""
        sentence, self.shown = self.shown + rest, ""
        why = self.identity.contradiction(sentence)
        if why is None:
            self.kept += rest
            return rest
        self.cut.append(why)
        return ""


def _sentence_end(text: str) -> int | None:
    """Where the first whole sentence of ``text`` ends (with the space or line after it),
    once what follows shows that it has ended."""
    newline = text.find("\n")
    m = SENTENCE_END.search(text)
    ends = [i for i in ((m.end() if m and m.end() < len(text) else None),
                        (newline if newline >= 0 else None)) if i is not None]
    if not ends:
        return None
    end = min(ends)
    while end < len(text) and text[end] in " \t\n":
        end += 1
    return end if end < len(text) else None
