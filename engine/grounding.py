"""What the model is given for one message, and what the engine answers without it: the
intent comes first ("who are you" and injections are answered from the persona's
profile), then memory (a factual question it has nothing on gets the honest "I don't
remember"; one it answers opens with the quoted sentence)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.chat_turn import TurnMessage
from engine.config import MemoryConfig
from engine.memory.evidence import best_quote
from engine.memory.intent import Intent, classify
from engine.memory.prompt import GROUNDED_RULES, PRIVACY_RULES, UNGROUNDED_RULES
from engine.memory.redact import redact_hit
from engine.memory.retrieve import Hit
from engine.memory.service import Memory
from engine.personas import Persona


@dataclass(frozen=True)
class Grounding:
    system: str
    hits: list[Hit]
    message: TurnMessage


async def ground(memory: Memory, cfg: MemoryConfig, persona: Persona, text: str,
                 user_key: str) -> Grounding:
    """The system prompt, the memory hits and the user's turn for one message."""
    system = f"{persona.system_message()}\n\n{PRIVACY_RULES}"
    style = await memory.style(persona.name)
    if style is not None and style.mails:
        system += "\n\nYour writing style, measured from your mail: " + style.describe()
    intent = classify(text, persona.display_name)
    # Decided here, not by a small model that may invent facts about the person or be
    # talked out of its role.
    canned = {Intent.INJECTION: persona.profile.decline_reply,
              Intent.IDENTITY: persona.introduction()}.get(intent)
    if canned:
        return Grounding(system, [], TurnMessage(text, [], canned=canned))
    if not await memory.size(persona.name):
        return Grounding(system, [], TurnMessage(text, []))
    hits = [redact_hit(h, emails=cfg.redact_emails, phones=cfg.redact_phones)
            for h in await memory.recall(persona.name, text, user=user_key)]
    if not hits and intent is Intent.FACT:
        # Memory has nothing on a factual question: the persona says so instead of a model
        # inventing. Conversation (small talk, opinions) goes to the model.
        return Grounding(system, [], TurnMessage(text, [], canned=persona.profile.unknown_reply))
    if not hits:
        return Grounding(f"{system}\n\n{UNGROUNDED_RULES}", [], TurnMessage(text, []))
    quote = best_quote(text, hits, await memory.term_stats(persona.name),
                       memory.gate.min_information)
    return Grounding(f"{system}\n\n{GROUNDED_RULES}", hits,
                     TurnMessage(text, hits, cfg.context_tokens,
                                 lead=quote.render() if quote else ""))
