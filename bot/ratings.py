"""``/stats`` for the operator: how replies and stories are rated, per persona and model."""

from __future__ import annotations

from engine.api import Engine, NotAllowed, UserRef


async def stats_text(engine: Engine, user: UserRef, *, local: bool = False) -> str:
    """Only for ``[engine] admins`` (``local``: the console, run by the operator)."""
    if not local and not engine.is_operator(user):
        raise NotAllowed(f"{user.key} asked for /stats",
                         user_message="Only the operator ([engine] admins) sees the ratings.")
    rows = await engine.feedback.stats()
    if not rows:
        return "No ratings yet: 👍 / 👎 under replies and stories add them."
    lines = [f"{a.kind} · {a.persona or 'stories'} · {a.model}: {a.rate:.0%} liked "
             f"({a.good} 👍, {a.bad} 👎)" for a in rows]
    return "Ratings:\n" + "\n".join(lines)
