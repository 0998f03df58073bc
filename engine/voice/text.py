"""Turn a written reply into text worth speaking, in chunks a TTS model handles well."""

from __future__ import annotations

import re
from datetime import date

from engine.reply_text import clean

_CODE_BLOCK = re.compile(r"```.*?```", re.S)
_INLINE_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"\[([^\]]+)\]\((?:https?://|www\.)[^)]*\)")
_URL = re.compile(r"(https?://|www\.)\S+")
_STAGE = re.compile(  # *smiles warmly*, (pauses), (laughs softly)
    r"(?<!\*)\*(?!\s)[^*\n]{1,80}(?<!\s)\*(?!\*)|\((?:pauses?|laughs?|smiles?|sighs?)[^)]*\)",
    re.I,
)
_CITATION = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")
_MARKDOWN = re.compile(r"(^|\s)#{1,6}\s|\*\*|__|~~|^>\s?|^\s*[-*+]\s+", re.M)
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d]")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ABBREVIATIONS = {
    "e.g.": "for example", "i.e.": "that is", "etc.": "and so on", "approx.": "about",
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "St.": "Street", "vs.": "versus",
    "No.": "number", "ASAP": "as soon as possible", "FYI": "for your information",
}
_SENTENCE = re.compile(r"(?<=[.!?।])\s+")
_SPEAKABLE = re.compile(r"\w", re.UNICODE)
_ASIDE = re.compile(r"(?:^|(?<=[.!?।]\s))[(\[][^()\[\]\n]*[)\]][.!?।]?(?=\s|$)")
"""A sentence wholly in brackets is a note, not words to say: "(The message is blank.)"."""
MIN_WORDS = 4
"""Shorter sentences are merged with a neighbour: XTTS invents sounds on very short input."""


def _date(m: re.Match[str]) -> str:
    try:
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return m.group(0)
    return f"{d:%B} {d.day}, {d.year}"


def clean_for_speech(text: str) -> str:
    text = clean(text)  # prompt markup, also in stories stored before the filter existed
    text = _CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(" ", text).replace("`", " ")  # and any unpaired backtick
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _STAGE.sub(" ", text)
    text = _CITATION.sub("", text)
    text = _MARKDOWN.sub(r"\1", text)
    text = _EMOJI.sub("", text)
    text = _ISO_DATE.sub(_date, text)
    for short, long in _ABBREVIATIONS.items():
        text = re.sub(rf"(?<!\w){re.escape(short)}(?!\w)", long, text)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)  # 1,140 -> 1140: read as one number
    return " ".join(text.split())


def speech_chunks(text: str) -> list[str]:
    """Sentences to synthesise one by one: cleaned, never empty or punctuation-only, and
    none shorter than MIN_WORDS words unless it is all there is."""
    sentences = [s.strip() for s in _SENTENCE.split(_ASIDE.sub("", clean_for_speech(text)))]
    sentences = [s for s in sentences if _SPEAKABLE.search(s)]
    chunks: list[str] = []
    for s in sentences:
        if chunks and (len(chunks[-1].split()) < MIN_WORDS or len(s.split()) < MIN_WORDS):
            chunks[-1] = f"{chunks[-1]} {s}"
        else:
            chunks.append(s)
    return chunks


def chapters(text: str, limit: int) -> list[str]:
    """The text in parts of about ``limit`` characters at most, cut between paragraphs
    (between sentences when a paragraph alone is too long)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    units: list[str] = []
    for p in paragraphs:
        units.extend(_SENTENCE.split(p) if len(p) > limit else [p])
    parts: list[str] = []
    for unit in units:
        if parts and len(parts[-1]) + len(unit) + 2 <= limit:
            parts[-1] = f"{parts[-1]}\n\n{unit}"
        else:
            parts.append(unit)
    return parts
