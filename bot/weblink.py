"""``/web``: a one-time link that signs the person in to the web app as themselves (the
same words in every adapter)."""

from __future__ import annotations

from engine.api import Engine, UserRef

IN_PRIVATE = "Send /web to me in a private chat: the link signs you in, so it is yours alone."


async def web_link_text(engine: Engine, user: UserRef) -> str:
    link = await engine.web.link(user)
    return (f"Your sign-in link for the web app (it works once, within "
            f"{engine.web.link_minutes} minutes; keep it to yourself):\n{link}")
