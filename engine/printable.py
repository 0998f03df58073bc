"""Text from users (names, ids, file names) as a terminal may print it: control characters
(ANSI escapes, line breaks, NUL) escaped, never acted on."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every non-printable character as its escape (``\\x1b``, ``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
