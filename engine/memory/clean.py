"""Keep what the person wrote: drop quoted replies, forwards, signatures, disclaimers, footers."""

from __future__ import annotations

import re

from engine.reply_text import visible

# A line where quoted or forwarded material begins: everything from it on is dropped.
_CUT_LINE = re.compile(
    r"""^\s*(
        -{2,}\s*(original|forwarded)\s+message\s*-{2,}        # Outlook, Gmail, AOL
      | -{2,}\s*message\s+d'origine\s*-{2,}                    # French Outlook
      | -{2,}\s*urspr.ngliche\s+nachricht\s*-{2,}             # German Outlook
      | -{5,}\s*forwarded\s+by\b.*                            # Lotus Notes forward
      | begin\s+forwarded\s+message:?
      | -*\s*on\s.{0,200}\bwrote:\s*                          # Gmail, Apple, Yahoo
      | le\s.{0,200}\ba\s+écrit\s*:\s*
      | _{10,}\s*                                              # Outlook reply rule
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# "On Mon, Apr 2, 2012 at 6:26 PM, Megan <x@y.com>" + "wrote:" on the next line.
_ON_WROTE_SPLIT = re.compile(r"^\s*on\s.{0,200}$\n^.{0,120}\bwrote:\s*$", re.I | re.M)
# Outlook / Hotmail quoted header block: "From: ..." followed within two lines by Sent/Date/To.
_HEADER_BLOCK = re.compile(
    r"^\s*>?\s*from:\s.*$\n(^.*$\n){0,2}^\s*>?\s*(sent|date|to):\s", re.I | re.M
)
# Lotus Notes reply header: 'Jane Doe <jd@x.com> on 10/03/2000 10:02:13 AM' then 'To:'.
_NOTES_HEADER = re.compile(
    r"^.{1,160}\son\s\d{1,2}/\d{1,2}/\d{2,4}\s\d{1,2}:\d{2}(:\d{2})?\s?(am|pm)?\s*$\n"
    r"(^\s*$\n)?^\s*to:\s", re.I | re.M,
)
_SIGNATURE = re.compile(r"^-- ?$", re.M)
_DISCLAIMER = re.compile(
    r"(this (e-?mail|message|communication)[^.]{0,200}"
    r"(confidential|privileged|intended (solely )?for))"
    r"|(if you (are not|have received this)[^.]{0,80}(intended recipient|in error))"
    r"|(to unsubscribe\b)|(mailing list\b.{0,80}\blistinfo\b)",
    re.IGNORECASE,
)


def strip_mail(text: str) -> tuple[str, list[str]]:
    """The person's own part of a mail body, and what was removed (for the ingest report)."""
    removed: list[str] = []
    text = visible(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\xa0", " ")

    cut = len(text)
    for pattern, reason in ((_ON_WROTE_SPLIT, "quoted reply"), (_HEADER_BLOCK, "quoted reply"),
                            (_NOTES_HEADER, "quoted reply")):
        m = pattern.search(text)
        if m and m.start() < cut:
            cut, why = m.start(), reason
    pos = 0
    for line in text.split("\n"):
        if pos >= cut:
            break
        if _CUT_LINE.match(line):
            low = line.lower()
            why = "forwarded block" if ("forward" in low or "begin" in low) else "quoted reply"
            cut = pos
            break
        pos += len(line) + 1
    if cut < len(text):
        removed.append(why)
        text = text[:cut]

    kept = [ln for ln in text.split("\n") if not ln.lstrip().startswith(">")]
    if len(kept) != text.count("\n") + 1:
        removed.append("quoted lines")
    text = "\n".join(kept)

    sig = _SIGNATURE.search(text)
    if sig:
        removed.append("signature")
        text = text[: sig.start()]

    paragraphs = re.split(r"\n\s*\n", text)
    clean = [p for p in paragraphs if not _DISCLAIMER.search(p)]
    if len(clean) != len(paragraphs):
        removed.append("disclaimer or footer")
    return normalise("\n\n".join(clean)), removed


def normalise(text: str) -> str:
    """Trim trailing spaces, collapse runs of blank lines and of spaces; drop control and
    invisible characters (NULs, zero-width spaces)."""
    text = visible(text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.split("\n")]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|tr|sv)\s*(\[\d+\])?\s*:\s*)+", re.I)


def thread_key(subject: str) -> str:
    """A thread key from the subject: reply/forward prefixes removed, case folded."""
    return " ".join(_SUBJECT_PREFIX.sub("", subject).split()).lower()
