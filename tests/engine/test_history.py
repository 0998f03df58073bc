"""Conversation history is fitted to the context budget in tokens, oldest dropped first."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.history import fit_history
from engine.llm.base import ChatMessage


def words(msg: ChatMessage) -> int:
    return len(msg.content.split()) + 1


SYSTEM = ChatMessage("system", "be nice")  # 3
USER = ChatMessage("user", "what now")  # 3


def turns(n: int) -> list[ChatMessage]:
    out = []
    for i in range(n):
        out.append(ChatMessage("user", f"question {i}"))  # 3
        out.append(ChatMessage("assistant", f"answer {i}"))  # 3
    return out


def test_everything_kept_when_it_fits() -> None:
    history = turns(3)
    assert fit_history(SYSTEM, history, USER, 100, words) == [SYSTEM, *history, USER]


def test_oldest_dropped_first_and_budget_respected() -> None:
    history = turns(5)  # 30 tokens
    kept = fit_history(SYSTEM, history, USER, 6 + 12, words)
    assert kept == [SYSTEM, *history[-4:], USER]
    assert sum(words(m) for m in kept) <= 18


def test_kept_history_never_starts_with_an_assistant_turn() -> None:
    history = turns(3)
    kept = fit_history(SYSTEM, history, USER, 6 + 9, words)  # room for 3 messages
    assert kept == [SYSTEM, *history[-2:], USER]
    assert kept[1].role == "user"


def test_no_history_when_only_system_and_message_fit() -> None:
    assert fit_history(SYSTEM, turns(2), USER, 6, words) == [SYSTEM, USER]


def test_message_too_long_for_context_is_refused_clearly() -> None:
    with pytest.raises(InputError) as err:
        fit_history(SYSTEM, [], ChatMessage("user", "word " * 50), 20, words)
    assert "too long" in err.value.user_message
