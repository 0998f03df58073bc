"""E-mail addresses and phone numbers: found, and replaced by ``[email]`` / ``[phone]``.
Memory is redacted before the model reads it (``engine.memory.redact``); what the model
writes is too (``engine.reply_text``), so an address it invents or recalls never leaves."""

from __future__ import annotations

import re

import phonenumbers

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REGION = "US"
"""Where numbers without a country code are read as local ones."""
_DIGITS = re.compile(r"\d(?:[\s().+-]*\d){6}")
"""Seven digits or more, however written: the least a phone number has."""


def redact_phones(text: str, region: str = REGION) -> str:
    """Phone numbers replaced, found by libphonenumber: a number counts only if it is a
    valid number of its country (years, ranges, quantities, policy and invoice numbers
    survive)."""
    if not _DIGITS.search(text):
        return text
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
        text = redact_phones(text, region)
    return text
