"""``/memories``: what the user told the current persona about themselves, and forgetting
one of those (the same words in every adapter). In a server the list is what they told
there; ``/memories server`` shows a server's admins what everyone told the persona there.
"""

from __future__ import annotations

from engine.api import Engine, InputError, NotAllowed, Persona, UserRef

USAGE = ("Use /memories to list them, /memories forget N to forget one (server admins: "
         "/memories server, /memories server forget N).")


async def memories_text(engine: Engine, user: UserRef, persona: Persona, arg: str = "", *,
                        place: str = "", is_admin: bool = False) -> str:
    """``place``: the server the command was given in ("" in private)."""
    words = arg.lower().split()
    if words[:1] == ["server"]:
        return await _server(engine, user, persona, words[1:], place, is_admin)
    memories = engine.user_memories
    if words[:1] == ["forget"]:
        gone = await memories.forget_item(user, persona.name, _number(words), place)
        return f"Forgotten: {gone.to_them}"
    if words:
        raise InputError("bad /memories", user_message=USAGE)
    found = await memories.all(user, persona.name, place)
    if not found:
        return (f"You haven't told {persona.display_name} anything about yourself to keep "
                f"{'in this server ' if place else ''}yet (\u201cmy name is \u2026\u201d, "
                "\u201cremember that \u2026\u201d).")
    lines = [f"{n}. {m.to_them} ({m.told_at:%Y-%m-%d}"
             f"{', in a server' if m.scope and not place else ''})"
             for n, m in enumerate(found, 1)]
    where = " in this server (what you tell me in private stays private)" if place else ""
    return (f"What you told {persona.display_name} about yourself{where}:\n"
            + "\n".join(lines)
            + "\n\n/memories forget N forgets one; \u201cforget that I \u2026\u201d works "
              "in chat too; /forget forgets everything.")


async def _server(engine: Engine, user: UserRef, persona: Persona, words: list[str],
                  place: str, is_admin: bool) -> str:
    if not place:
        raise InputError("/memories server in private", user_message=(
            "/memories server works in a server, for its admins."))
    if not (is_admin or engine.may_manage(user, persona)):
        raise NotAllowed(f"{user.key} is no admin of {place}", user_message=(
            "Only this server's admins can see what everyone told me here."))
    memories = engine.user_memories
    if words[:1] == ["forget"]:
        gone = await memories.forget_in_server(persona.name, place, _number(words))
        return f"Forgotten ({gone.user}): {gone.memory.about}"
    if words:
        raise InputError("bad /memories server", user_message=USAGE)
    found = await memories.in_server(persona.name, place)
    if not found:
        return (f"Nobody has told {persona.display_name} anything about themselves in this "
                "server yet.")
    lines = [f"{n}. {m.user}: {m.memory.about} ({m.memory.told_at:%Y-%m-%d})"
             for n, m in enumerate(found, 1)]
    return (f"What people told {persona.display_name} about themselves in this server:\n"
            + "\n".join(lines) + "\n\n/memories server forget N forgets one.")


def _number(words: list[str]) -> int:
    if len(words) != 2 or not words[1].isdigit():
        raise InputError("bad /memories forget", user_message=USAGE)
    return int(words[1])
