"""Redact e-mail addresses and phone numbers from retrieved text before the model (and the
user, in citations) sees it. On by default: a persona quotes its mail, not its contacts."""

from __future__ import annotations

import re
from dataclasses import replace

from engine.memory.retrieve import Hit

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])?"
    r"\d{3,4}[\s.-]\d{3,4}(?![\w-])")


def redact(text: str, *, emails: bool = True, phones: bool = True) -> str:
    if emails:
        text = EMAIL.sub("[email]", text)
    if phones:
        text = PHONE.sub("[phone]", text)
    return text


def redact_hit(hit: Hit, *, emails: bool = True, phones: bool = True) -> Hit:
    if not (emails or phones):
        return hit
    return replace(hit, text=redact(hit.text, emails=emails, phones=phones),
                   subject=redact(hit.subject, emails=emails, phones=phones))
