"""What a model wrote, made fit to show and speak: the one filter every reply and story
passes before it leaves the engine.

Small models echo the prompt's machinery: the fences around retrieved mail
(``<<<END SOURCE 4>>>``, invented ones too), the story prompt's tag lines
(``[GENRE] adventure``), chat-template tokens, and invent mail headers and chat labels
("Sent by: ...", "To: ...", "User: ..."). None of that may reach a message, a title or a
voice note; nor may an e-mail address or a phone number the model writes (``[email]``,
``[phone]``, as in memory). ``clean`` removes it from finished text; ``CleanStream`` does
the same to a stream without ever letting a half-written marker through. ``end_at_sentence`` trims a
reply that ran out of tokens mid-sentence.
"""

from __future__ import annotations

import re

from engine.contacts import EMAIL, redact_phones

# <<<SOURCE 2 | 2001-04-23 'Re: rent'>>>, <<<END SOURCE 4>>, << <END SOURCE 1> >>, and an
# unclosed one at the end of a line.
_FENCE = re.compile(r"<\s?<\s?<?\s?[^<>\n]{0,200}?(?:>\s?>\s?>?|>|(?=\n)|$)")
_ANGLES = re.compile(r"(?:<\s?){2,}|(?:>\s?){2,}")
_SOURCE_WORDS = re.compile(r"\b(?:END )?SOURCE \d+\b(?:\s*\|[^\n]*)?")
# The /story prompt's tags: "[GENRE] adventure" (the tag and its value), "[STORY]" alone.
_TAG_WITH_VALUE = re.compile(
    r"\[\s*(?:GENRE|AGE|LANGUAGE|LENGTH|CHARACTERS|PROMPT)\s*\][^\n\[]*", re.IGNORECASE)
_TAG = re.compile(r"\[\s*(?:STORY|/?INST|/?SYS)\s*\]", re.IGNORECASE)
_TEMPLATE = re.compile(r"<\|[^|<>\n]{1,40}\|>|</?s>")  # <|im_start|>, <|eot_id|>, </s>
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u034f\u180e]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_HEADER_LINE = re.compile(
    r"^[ \t>*_]*(?:from|to|cc|bcc|sent(?: by| from)?|subject|date|message|user|human|"
    r"question|system|prompt)[ \t*_]*:[^\n]*(?:\n|$)", re.IGNORECASE | re.MULTILINE)
"""A line the model made up in the shape of a mail header or of the prompt ("Sent by:
[x]", "Message: what you asked"): dropped whole."""
_SPEAKER = re.compile(r"^[ \t*_]*(?:assistant|answer|reply|response|ai|bot)[ \t*_]*:[ \t]*",
                      re.IGNORECASE | re.MULTILINE)
"""A label before the model's own words ("Answer: ..."): the label goes, the words stay."""
_LABEL_SO_FAR = re.compile(r"^[ \t>*_]*[A-Za-z]{0,9}(?: (?:by?|f(?:r(?:om?)?)?)?)?[ \t*_]*:?$")
"""The start of a line that may yet turn out to be a label: held back until it is not."""
_CONTACT_SO_FAR = re.compile(r"[\w.+-]*@[\w.-]*$|[+(]?\d[\d \t().-]*$|[\w.+(-]*[\w+(-]$")
"""An address or a number that may still be being written (a word, until it ends, may be
the start of an address; one that ends a sentence is let through)."""
_SPACES = re.compile(r"[ \t]{2,}")

_CLOSERS = "\"'\u201d\u2019)\\]"  # quotes and brackets that may follow a sentence's end
SENTENCE_END = re.compile(rf"[.!?।…][{_CLOSERS}]*(?=\s|$)")
_ENDS_SENTENCE = re.compile(rf"[.!?।…][{_CLOSERS}]*$")
TRUNCATED_MARK = "…"


def visible(text: str) -> str:
    """``text`` without invisible and control characters (zero-width spaces, BOMs, NULs):
    what is left when a person looks at it."""
    return _CONTROL.sub("", _INVISIBLE.sub("", text))


def is_blank(text: str) -> bool:
    """Nothing a person could read: empty, whitespace or zero-width characters only."""
    return not visible(text).strip()


def clean(text: str) -> str:
    """``text`` with every piece of prompt markup, every made-up header or label, and
    every address and phone number removed, and the spacing repaired."""
    text = visible(text)
    text = _HEADER_LINE.sub("", text)
    text = _SPEAKER.sub("", text)
    text = redact_phones(EMAIL.sub("[email]", text))
    text = _TEMPLATE.sub("", text)
    text = _FENCE.sub("", text)
    text = _ANGLES.sub("", text)
    text = _SOURCE_WORDS.sub("", text)
    text = _TAG_WITH_VALUE.sub("", text)
    text = _TAG.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", text)


def _open_marker(text: str) -> int:
    """Where something unfinished may begin near the end of ``text`` (a marker, a label,
    an address: it must be held back until it is finished or shown not to be one), or
    ``len(text)``."""
    line_start = text.rfind("\n") + 1
    line = text[line_start:]
    held = len(text)
    if _LABEL_SO_FAR.match(line) or _HEADER_LINE.match(line):  # (a header line: to its end)
        held = line_start
    elif (contact := _CONTACT_SO_FAR.search(text, max(0, len(text) - 80))) is not None:
        held = contact.start()
    return min(held, _open_markup(text))


def _open_markup(text: str) -> int:
    tail_from = max(0, len(text) - 220)
    i = text.rfind("<", tail_from)
    if i >= 0:
        while i > tail_from and text[i - 1] == "<":  # the start of a run of "<"
            i -= 1
        rest = text[i:]
        opens = rest.startswith(("<<", "<|")) or rest == "<"
        if opens and (">" not in rest or text.endswith(">")):  # ">>" may grow to ">>>"
            return i
    i = text.rfind("[", tail_from)
    if i >= 0 and "]" not in text[i:]:
        return i
    # "[GENRE] advent": the tag's value runs to the end of the line.
    line_start = text.rfind("\n") + 1
    if _TAG_WITH_VALUE.search(text, line_start) or _SOURCE_WORDS.search(text, line_start):
        return line_start
    return len(text)


class CleanStream:
    """Cleans a reply as it streams: ``feed`` returns the clean text that is safe to show
    now, ``close`` the rest. What it emits, joined, is ``clean`` of the whole text
    (``.text``), except where cleaning at the end changes earlier spacing."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        return self._emit(clean(self.raw[: _open_marker(self.raw)]))

    def close(self) -> str:
        return self._emit(clean(self.raw).rstrip())  # the held-back tail, if it was text

    @property
    def text(self) -> str:
        return clean(self.raw).strip()

    def _emit(self, cleaned: str) -> str:
        # Leading blank lines are never shown; trailing spaces may turn out to precede a
        # removed marker, so they wait for what follows.
        safe = cleaned.lstrip().rstrip(" \t")
        if not safe.startswith(self.sent) or len(safe) <= len(self.sent):
            return ""
        new, self.sent = safe[len(self.sent):], safe
        return new


def end_at_sentence(text: str, *, min_share: float = 0.4) -> tuple[str, bool]:
    """A reply that was cut off (by ``max_tokens``): trimmed to its last whole sentence when
    that keeps at least ``min_share`` of it, else kept and ended with "…". Returns the text
    and whether anything was cut. Complete text is returned unchanged."""
    stripped = text.rstrip()
    if not stripped or _ENDS_SENTENCE.search(stripped):
        return stripped, False
    ends = [m.end() for m in SENTENCE_END.finditer(stripped)]
    if ends and ends[-1] >= min_share * len(stripped):
        return stripped[: ends[-1]], True
    return stripped.rstrip(",;:\u2014\u2013 ") + TRUNCATED_MARK, True
