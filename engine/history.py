"""Fit conversation history into the model's context window, counted in tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.errors import InputError
from engine.llm.base import ChatMessage


def fit_history(
    system: ChatMessage,
    history: Sequence[ChatMessage],
    user: ChatMessage,
    budget: int,
    count: Callable[[ChatMessage], int],
) -> list[ChatMessage]:
    """``[system, *newest history that fits, user]`` within ``budget`` tokens.

    The oldest messages are dropped first, and the kept history never starts with an
    assistant turn (its question would be missing). Raises :class:`InputError` when the
    system prompt and the new message alone do not fit.
    """
    used = count(system) + count(user)
    if used > budget:
        raise InputError(
            f"prompt of {used} tokens exceeds the budget of {budget}",
            user_message="That message is too long for me. Please send a shorter one.",
        )
    kept: list[ChatMessage] = []
    for msg in reversed(history):
        cost = count(msg)
        if used + cost > budget:
            break
        used += cost
        kept.append(msg)
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return [system, *kept, user]
