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


def _cut_point(text: str) -> tuple[int, str]:
    """Where quoted or forwarded material begins (``len(text)``: nowhere), and which."""
    cut, why = len(text), ""
    for pattern in (_ON_WROTE_SPLIT, _HEADER_BLOCK, _NOTES_HEADER):
        m = pattern.search(text)
        if m and m.start() < cut:
            cut, why = m.start(), "quoted reply"
    pos = 0
    for line in text.split("\n"):
        if pos >= cut:
            break
        if _CUT_LINE.match(line):
            low = line.lower()
            why = "forwarded block" if ("forward" in low or "begin" in low) else "quoted reply"
            return pos, why
        pos += len(line) + 1
    return cut, why


_QUOTED_HEADER = re.compile(r"^\s*(from|sent|date|to|cc|bcc|subject)\s*:", re.I)


def quoted_body(text: str) -> str:
    """The message a mail answers or forwards, as quoted below the sender's own part: its
    header lines dropped, its own quotes and forwards cut as :func:`strip_mail` cuts them;
    "" when the mail quotes nothing."""
    text = visible(text.replace("\r\n", "\n").replace("\r", "\n")).replace("\xa0", " ")
    cut, _ = _cut_point(text)
    if cut >= len(text):
        quoted = [ln.lstrip()[1:] for ln in text.split("\n") if ln.lstrip().startswith(">")]
        return strip_mail("\n".join(quoted))[0] if quoted else ""
    lines = text[cut:].split("\n")[1:]  # the cut line itself ("--- Forwarded by ...")
    head = lines[:30]
    subject = next((i for i, ln in enumerate(head) if ln.strip().lower().startswith("subject:")),
                   None)
    if subject is not None:
        body = lines[subject + 1:]
    else:
        start = 0
        for i, line in enumerate(head):
            if _QUOTED_HEADER.match(line) or not line.strip():
                start = i + 1
            elif start:
                break
        body = lines[start:]
    return strip_mail("\n".join(ln[1:] if ln.startswith(">") else ln for ln in body))[0]


def strip_mail(text: str) -> tuple[str, list[str]]:
    """The person's own part of a mail body, and what was removed (for the ingest report)."""
    removed: list[str] = []
    text = visible(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\xa0", " ")

    cut, why = _cut_point(text)
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


def unwrap(text: str, widest: int = 100) -> str:
    """Undo the hard line-wrapping of mail clients (lines cut at about 72-80 characters):
    a line break stays where the next word would still have fitted on the line (a list, a
    sign-off, a short line), and goes where greedy wrapping put it. Text whose longest line
    is over ``widest`` characters was not wrapped and is returned as it is."""
    lines = text.split("\n")
    width = max((len(ln) for ln in lines), default=0)
    if width > widest:
        return text
    out: list[str] = []
    for before, line in zip(["", *lines], lines, strict=False):
        # a wrap where the line's first word did not fit on the line before
        if (out and before.strip() and line.strip()
                and len(before) + 1 + len(line.split()[0]) > width):
            out[-1] = f"{out[-1]} {line.strip()}"
            continue
        out.append(line)
    return "\n".join(out)


_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|tr|sv)\s*(\[\d+\])?\s*:\s*)+", re.I)


def thread_key(subject: str) -> str:
    """A thread key from the subject: reply/forward prefixes removed, case folded."""
    return " ".join(_SUBJECT_PREFIX.sub("", subject).split()).lower()
