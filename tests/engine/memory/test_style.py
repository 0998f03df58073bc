"""The style profile measured from the person's own mail."""

from __future__ import annotations

from engine.memory.clean import strip_mail
from engine.memory.parse import parse_file
from engine.memory.style import build_profile
from tests.conftest import CORPUS


def test_phrases_are_the_persons_habits_not_names_or_addresses() -> None:
    docs = parse_file(CORPUS / "enron-allen-p" / "sent_mail.mbox")
    profile = build_profile([strip_mail(d.text)[0] for d in docs])
    assert "let me know" in profile.phrases
    assert not any(p in profile.phrases for p in ("enron com", "phillip allen", "ect com"))
    assert all(not p.endswith(" com") for p in profile.phrases)
    assert (profile.greeting, profile.sign_off) == ("<Name>,", "Phillip")
