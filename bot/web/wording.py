"""The engine's lines name the bots' commands (``/forget``, ``/voice list``); the web app
shows them naming its own controls instead, so nobody is sent to a bot to do what the page
does."""

from __future__ import annotations

import re

IN_THE_APP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/forget deletes it, /export gives you a copy"),
     "Forget me in Settings deletes it; Download there gives you a copy"),
    (re.compile(r"Let them finish, or /cancel them\."), "Let them finish first."),
    (re.compile(r"/voice list shows them\."), "Settings lists them under Voices."),
    (re.compile(r"e\.g\. /voice clone (\S+?)\."), r'e.g. "\1".'),
    (re.compile(r"Start with /voice clone NAME"), "Start with Clone a voice in Settings"),
    (re.compile(r", or /voice cancel\."), ", or Cancel."),
)


def in_app(text: str) -> str:
    """``text`` as the web app shows it."""
    if "/" not in text:
        return text
    for pattern, words in IN_THE_APP:
        text = pattern.sub(words, text)
    return text
