"""The chat model as a second pass over what the rules missed: a message that speaks of
its writer ("I'm deaf in one ear", "My wife and I adopted a beagle") but gave the rules
nothing is shown to the model, which writes the facts as short first-person sentences.

A small model copies its examples and makes things up, so a sentence is kept only when it
is grounded: first person, a statement, no passing state, and nearly every content word of
it is in the message. Its slot comes from the rules when they can read the sentence, else
it is a note. Runs as a batch job after the reply (``[memory] user_facts_model``);
``bench/user_memory.py --model`` measures it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.llm.base import ChatMessage, LLMBackend, SamplingParams
from engine.scheduler import JobContext
from engine.usermemory.extract import PASSING, STOP_WORDS, Extraction, Fact, fact_in

INSTRUCTIONS = (
    "You find facts a person tells about themselves. Answer only with short sentences "
    "that start with \"I\" or \"My\", one per line, copied from their message. If the "
    "message tells nothing lasting about them, answer NONE.")
EXAMPLES = (("I'm 34 and my son Leo started school.", "I am 34.\nMy son Leo started school."),
            ("Can you send me the report?", "NONE"))
GROUNDED = 0.8
"""Share of a sentence's content words that must be in the message."""
_WORD = re.compile(r"[a-z0-9]+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|my|me)\b", re.IGNORECASE)
_PRONOUNS = frozenset("i i'm im i've ive my me mine myself".split())


def worth_asking(text: str, found: Extraction) -> bool:
    """The rules found nothing in a statement that speaks of its writer."""
    t = text.strip()
    return (not found.facts and not found.forget and bool(_FIRST_PERSON.search(t))
            and not t.endswith("?") and 3 <= len(t.split()) <= 80)


def _content(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower().replace("'", ""))
            if w not in STOP_WORDS and w not in _PRONOUNS]


def grounded(sentence: str, message: str) -> Fact | None:
    """``sentence`` as a fact of the message's writer, or None when it is not one."""
    s = sentence.strip().strip("-*• ").strip()
    if not re.match(r"^(?:I|My|I'm|I've)\b", s) or s.endswith("?") or len(s.split()) > 25:
        return None
    words = _content(s)
    if not words or re.search(r"\b(?:would|could|might|should|will|wish|if)\b|'d\b", s,
                              re.IGNORECASE):
        return None  # nothing, or a wish or a what-if
    said = set(_content(message))
    if sum(w in said for w in words) / len(words) < GROUNDED:
        return None
    state = re.match(r"^i(?:'m| am) (?:so |very |really |just |a bit |quite )*(\w+)", s,
                     re.IGNORECASE)
    if state and state.group(1).lower() in PASSING:
        return None
    clause = s.rstrip(".!")
    ruled = fact_in(clause)
    if ruled is not None:
        return ruled
    if len(words) < 2:
        return None  # "I love it": about nothing the rules could name
    return Fact("note:" + " ".join(words[:4]), clause)


def parse(answer: str, message: str) -> list[Fact]:
    facts: dict[str, Fact] = {}
    for line in answer.splitlines():
        if line.strip().upper().startswith("NONE"):
            break
        for sentence in re.split(r"(?<=[.!])\s+", line):
            fact = grounded(sentence, message)
            if fact is not None:
                facts[fact.slot] = fact
    return list(facts.values())


@dataclass(frozen=True)
class ModelPass:
    """The job on the LLM thread: the facts the model finds in ``message``."""

    llm: LLMBackend
    message: str
    max_tokens: int = 48

    def prompt(self) -> list[ChatMessage]:
        messages = [ChatMessage("system", INSTRUCTIONS)]
        for asked, answered in EXAMPLES:
            messages += [ChatMessage("user", asked), ChatMessage("assistant", answered)]
        return [*messages, ChatMessage("user", self.message)]

    def facts(self, should_stop: Callable[[], bool]) -> list[Fact]:
        params = SamplingParams(max_tokens=self.max_tokens, temperature=0.0)
        answer = "".join(self.llm.stream_chat(self.prompt(), params, should_stop))
        return parse(answer, self.message)

    def __call__(self, ctx: JobContext) -> list[Fact]:
        return self.facts(lambda: ctx.cancelled)
