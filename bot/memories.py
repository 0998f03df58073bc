"""``/memories``: what the user told the current persona about themselves, and forgetting
one of those (the same words in every adapter)."""

from __future__ import annotations

from engine.engine import Engine
from engine.errors import InputError
from engine.personas import Persona
from engine.records import UserRef

USAGE = "Use /memories to list them, /memories forget N to forget one."


async def memories_text(engine: Engine, user: UserRef, persona: Persona, arg: str = "") -> str:
    words = arg.split()
    if words and words[0].lower() == "forget":
        if len(words) != 2 or not words[1].isdigit():
            raise InputError("bad /memories forget", user_message=USAGE)
        gone = await engine.user_memories.forget_item(user, persona.name, int(words[1]))
        return f"Forgotten: {gone.to_them}"
    if words:
        raise InputError("bad /memories", user_message=USAGE)
    found = await engine.user_memories.all(user, persona.name)
    if not found:
        return (f"You haven't told {persona.display_name} anything about yourself to keep "
                "yet (\u201cmy name is \u2026\u201d, \u201cremember that \u2026\u201d).")
    lines = [f"{n}. {m.to_them} ({m.told_at:%Y-%m-%d})" for n, m in enumerate(found, 1)]
    return (f"What you told {persona.display_name} about yourself:\n" + "\n".join(lines)
            + "\n\n/memories forget N forgets one; \u201cforget that I \u2026\u201d works "
              "in chat too; /forget forgets everything.")
