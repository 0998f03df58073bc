"""Redact e-mail addresses and phone numbers from retrieved text before the model (and the
user, in citations) sees it. On by default: a persona quotes its mail, not its contacts."""

from __future__ import annotations

from dataclasses import replace

from engine.contacts import redact
from engine.memory.retrieve import Hit

__all__ = ["redact", "redact_hit"]


def redact_hit(hit: Hit, *, emails: bool = True, phones: bool = True) -> Hit:
    if not (emails or phones):
        return hit
    return replace(hit, text=redact(hit.text, emails=emails, phones=phones),
                   subject=redact(hit.subject, emails=emails, phones=phones))
