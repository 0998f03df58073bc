"""What a message asks of the persona's memory, decided by rules that do not depend on
one person's mail: a fact to look up, conversation that needs no memory, or an attempt to
make the persona break role or hand over other people's details."""

from __future__ import annotations

import re
from enum import Enum

from engine.memory.retrieve import content_words


class Intent(Enum):
    FACT = "fact"
    """Asks about facts, events, people, numbers or dates: memory answers, or the persona
    says it does not remember."""
    CHAT = "chat"
    """Greetings, small talk, opinions, questions about the user or the conversation:
    answered in persona, with memory if it has something, never refused."""
    INJECTION = "injection"
    """Tries to override the persona's instructions or to harvest contact details."""
    IDENTITY = "identity"
    """"Who are you?": the persona's profile answers it, so that nothing about the person
    is invented."""


_INJECTION = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules|prompt|guidelines|above"
    r"|everything (above|before))\b",
    r"\b(system|hidden|secret|initial|original)\s+(prompt|instructions?|message)\b",
    r"\byour\s+(instructions|prompt|rules)\b",
    r"\b(developer|maintenance|debug|admin|god|jailbreak)\s+mode\b",
    r"^\s*\W*(system|admin|developer)\s*(override|:)",
    r"\bforget (that )?you(?:'re| are)\b",
    r"\byou are (now|no longer)\b",
    r"\b(pretend|act as if) (that )?you\b",
    r"\b(every|all|each|list)\b.{0,40}\b(e-?mail address(es)?|phone numbers?|(home )?addresses"
    r"|contact (details|info)|passwords?|social security|credit card)",
    r"\b(social security|ssn|credit card|bank account|debit card|passport|driver'?s licen[cs]e)"
    r"( numbers?| details)?\b|\b(your|the) (passwords?|pin( code)?)\b",
)]

_IDENTITY = re.compile(
    r"\bwho (are|r) (you|u)\b|\btell me (a bit |a little )?about (yourself|your (job|work"
    r"|background))\b|\bintroduce yourself\b|\bdescribe yourself\b"
    r"|\bwhat do you do( for (a living|work))?\W*$|\bwho am i talking to\b"
    r"|\bwhat('s| is) your (name|job|job title|role|occupation|profession|line of work"
    r"|background)\b|\bwhat (should i|do (people|your friends)) call you\b"
    r"|\b(what|which) company do you work (for|at)\b|\bwho do you work for\b"
    r"|\bwhere do you (live|work)\b|\bwhere are you (from|based)\b"
    r"|\bare you (a |an )?(real( person)?|human|person|bot|robot|ai|chatgpt|gpt)\b"
    r"|\b(which|what) (ai |language )?(model|llm|bot|ai) are you\b"
    r"|\bwho (made|built|created|programmed) you\b|\bis your name\b", re.IGNORECASE)

_CHAT = [re.compile(p, re.IGNORECASE) for p in (
    r"^\W*(hi|hello|hey|yo|hiya|howdy|good (morning|afternoon|evening|night)|thanks?"
    r"|thank you|cheers|bye|goodbye|see you|ok|okay|sure|cool|great|nice|lol|haha)\b",
    r"\bhow are (you|things)( doing| going| today| holding up)?\s*([?!.,]|$)"
    r"|\bhow('s| is) it going\b|\bwhat'?s up\b|\bhow do you do\b",
    r"\bare you (still )?(there|around|awake|busy|free|ok|okay|alright)\b",
    r"\bwhat are you (doing|up to|working on|thinking|reading|busy with)\b",
    r"\b(what|how) do you (think|feel|reckon)\b|\bwhat'?s your (opinion|view|take)\b",
    r"\b(do|would) you (like|love|enjoy|prefer|recommend|suggest|mind)\b",
    r"\b(can|could|would|will) you (help|explain|tell me a|write|give me (some )?advice)\b",
    r"\bshould (i|we)\b|\bwhat should (i|we)\b",
    # Advice on the asker's own life: answered in persona, never "I don't remember".
    r"\b(any|some) (advice|tips|pointers)\b|\bwhat would you (weigh|do|choose|pick|advise)\b",
    r"\bhow do you (keep going|stay (sane|motivated|calm|focused)|cope|unwind|recharge)\b",
    r"^\W*(i|i'm|i've|i am|i have|i just|i was|i got)\b[^?]{0,200}[.!]\s+\w[^.!]*\?\s*$",
    # Opinions, personality, advice: conversation, answered in persona.
    r"\btell me a (joke|story|fun fact)\b|\bin your (opinion|view|experience)\b"
    r"|\bany thoughts on\b|\bis it worth\b|\bbest advice\b|\bwhat would you tell\b",
    r"\bwhat motivates you\b|\bdo you have (any )?(regrets|hobbies|a favou?rite)\b"
    r"|\bhow would you describe\b|\bhow do you (handle|stay|deal with|manage) (stress|"
    r"pressure|organi[sz]ed|busy|conflict|difficult)",
    r"\bhow('s| is| was) (the weather|your (day|week|weekend|morning|evening))\b",
    r"\b(my name|who am i|about me|remember me|call me)\b",
    r"\bwhat are you\b",
    r"\bwhat (did|do) (i|we) (just )?(say|said|talk|ask)",
)]


def classify(message: str, persona_name: str = "") -> Intent:
    text = message.strip()
    if any(p.search(text) for p in _INJECTION):
        return Intent.INJECTION
    if _IDENTITY.search(text):
        return Intent.IDENTITY
    if any(p.search(text) for p in _CHAT):
        return Intent.CHAT
    return Intent.FACT if asks_for_facts(text, persona_name) else Intent.CHAT


def asks_for_facts(message: str, persona_name: str = "") -> bool:
    """A question with content words ("What did Lucy pay in May?"), as opposed to small talk
    ("Hi Phillip, how are you?") or a statement. Greetings and the persona's own name are
    not content."""
    text = message.strip().lower()
    question = text.endswith("?") or text.split(" ", 1)[0] in _QUESTION_WORDS
    if not question:
        return False
    ignore = _SMALL_TALK | set(re.findall(r"\w+", persona_name.lower()))
    return any(w not in ignore for w in content_words(message))


_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how did do does is are was were can could "
    "will would should have has had tell".split()
)
_SMALL_TALK = frozenset(
    "hi hello hey dear good morning afternoon evening day today doing going well fine "
    "ok okay thanks thank cheers yes yeah sure great nice".split()
)
