"""Property-based tests (hypothesis) for the pieces every message passes through."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.split import split_message
from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.stories.dates import group_by_date, group_label
from engine.voice.text import MIN_WORDS, clean_for_speech, speech_chunks
from tests.conftest import ROOT

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1, max_size=30)
prose = st.lists(st.one_of(words, st.sampled_from([". ", "! ", "? ", "\n", "\n\n", " ", "।"])),
                 max_size=200).map("".join)


@given(text=prose, limit=st.integers(min_value=20, max_value=4096))
def test_split_message_keeps_every_word_and_the_limit(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


@given(text=prose)
def test_speech_chunks_are_never_empty_or_unspeakable(text: str) -> None:
    chunks = speech_chunks(text)
    for chunk in chunks:
        assert re.search(r"\w", chunk) and chunk == chunk.strip()
    if len(chunks) > 1:  # short sentences were merged with a neighbour
        assert all(len(c.split()) >= MIN_WORDS for c in chunks[:-1]) or \
            all(len(c.split()) >= MIN_WORDS for c in chunks[1:])


@given(text=prose, url=st.from_regex(r"https?://[a-z]{1,10}\.[a-z]{2,3}/[a-z0-9]{0,8}",
                                     fullmatch=True))
def test_cleanup_drops_urls_markdown_and_emoji(text: str, url: str) -> None:
    cleaned = clean_for_speech(f"**{text}** see {url} 🙂 `code`")
    # What was added around the text is gone (the text itself may say "http" or "`").
    for mark in ("http", "**", "🙂", "`"):
        assert cleaned.count(mark) <= text.count(mark), mark
    assert url not in cleaned


NUMERIC_KEYS = [("engine", "queue_size"), ("engine", "rate_per_minute"), ("llm", "n_ctx"),
                ("llm", "temperature"), ("memory", "top_k"), ("voice", "max_input_mb"),
                ("discord", "edit_interval_s"), ("api", "port")]
junk = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
                 st.booleans(), st.lists(st.integers(), max_size=3), st.none())


@settings(max_examples=150)
@given(key=st.sampled_from(NUMERIC_KEYS), value=junk)
def test_config_accepts_or_names_the_bad_key(key: tuple[str, str], value: Any) -> None:
    section, name = key
    raw: dict[str, Any] = {"personas": {"dir": str(ROOT / "persona_data")},
                           section: {name: value}}
    if value is None:
        raw[section] = {}
    try:
        config_from_dict(raw, base_dir=Path(ROOT))
    except ConfigError as exc:
        assert f"[{section}] {name}" in str(exc)


@dataclass(frozen=True)
class Item:
    created_at: datetime


@given(offsets=st.lists(st.integers(min_value=0, max_value=3 * 365 * 24 * 60), max_size=60),
       tz=st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Kiritimati"]))
def test_history_groups_hold_each_story_once_newest_first(offsets: list[int], tz: str) -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    items = [Item(now - timedelta(minutes=m)) for m in offsets]
    zone = ZoneInfo(tz)
    groups = group_by_date(items, now, zone)
    flat = [i for _, group in groups for i in group]
    assert sorted(flat, key=id) == sorted(items, key=id)
    assert [i.created_at for i in flat] == sorted((i.created_at for i in items), reverse=True)
    labels = [label for label, _ in groups]
    assert len(labels) == len(set(labels))  # a label is one run, never split
    for label, group in groups:
        assert all(group_label(i.created_at, now, zone) == label for i in group)
