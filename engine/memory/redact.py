"""Redact e-mail addresses and phone numbers from retrieved text before the model (and the
user, in citations) sees it. On by default: a persona quotes its mail, not its contacts."""

from __future__ import annotations

import re
from dataclasses import replace

import phonenumbers

from engine.memory.retrieve import Hit

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REGION = "US"
"""Where numbers without a country code are read as local ones."""


def _phones(text: str, region: str) -> str:
    """Phone numbers replaced, found by libphonenumber: a number counts only if it is a
    valid number of its country (years, ranges, quantities, policy and invoice numbers
    survive)."""
    found = list(phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID))
    for match in reversed(found):
        text = text[:match.start] + "[phone]" + text[match.end:]
    return text


def redact(text: str, *, emails: bool = True, phones: bool = True,
           region: str = REGION) -> str:
    if emails:
        text = EMAIL.sub("[email]", text)
    if phones:
        text = _phones(text, region)
    return text


def redact_hit(hit: Hit, *, emails: bool = True, phones: bool = True) -> Hit:
    if not (emails or phones):
        return hit
    return replace(hit, text=redact(hit.text, emails=emails, phones=phones),
                   subject=redact(hit.subject, emails=emails, phones=phones))
