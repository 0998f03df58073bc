"""Chunking on paragraph and sentence bounds with overlap; exact and near-duplicate detection."""

from __future__ import annotations

import itertools
import subprocess
import sys

from engine.memory.chunk import (
    DuplicateFilter,
    chunk_text,
    content_hash,
    embedding_text,
    sentence_windows,
    signature_bytes,
    unit_counter,
    window_spans,
)
from engine.memory.clean import thread_key
from tests.conftest import ROOT


def words(text: str) -> int:
    return len(text.split())


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("Hello there.\n\nSecond para.", 50, 10, words) == [
        "Hello there.\n\nSecond para."
    ]


def test_chunks_respect_size_and_overlap() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(60))
    chunks = chunk_text(text, 40, 10, words)
    assert len(chunks) > 5
    assert all(words(c) <= 40 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        last = a.split(". ")[-1].rstrip(".")
        assert last in b  # the next chunk repeats the end of this one
    assert "Sentence number 59 ends here." in chunks[-1]


def test_a_sentence_longer_than_a_chunk_is_cut_by_words() -> None:
    chunks = chunk_text("word " * 250, 100, 0, words)
    assert all(words(c) <= 100 for c in chunks)
    assert sum(words(c) for c in chunks) == 250


def test_sentences_counted_at_once_chunk_as_if_counted_one_by_one() -> None:
    texts = [" ".join(f"Sentence {i} of mail {m} ends here." for i in range(30))
             for m in range(3)] + ["word " * 250]
    batches: list[int] = []

    def many(units: list[str]) -> list[int]:
        batches.append(len(units))
        return [words(u) for u in units]

    count = unit_counter(texts, many, words)
    assert len(batches) == 1 and batches[0] >= 90  # every sentence, in one call
    for text in texts:
        assert chunk_text(text, 40, 10, count) == chunk_text(text, 40, 10, words)


def test_window_spans_find_each_window_in_the_embedded_text() -> None:
    text = ("Vince, the review moved to Thursday. It is in EB 19C2 at 3 pm.\n\n"
            "Please bring the weather model. Bring the winter data too!  Shirley will book "
            "lunch. Thanks.")
    subject = "Re: review"
    windows = sentence_windows(text, subject)
    spans = window_spans(text, subject)
    full = embedding_text(text, subject)
    assert len(windows) == len(spans) == 3
    for window, ranges in zip(windows, spans, strict=True):
        assert ranges[0] == (0, len(subject))  # the subject, without its line end
        assert " ".join(full[a:b] for a, b in ranges).split() == window.split()
    shift = len(subject) + 1  # no subject: the same sentences, nothing before them
    assert window_spans(text) == [[(a - shift, b - shift)] for _, (a, b) in spans]
    assert window_spans("One sentence. Two sentences. Three.") == []


def test_duplicates_exact_near_and_distinct() -> None:
    mail = ("Lucy, please send me the rent roll for the apartments by Friday. I also need the "
            "bank statement for August and the list of repairs done this month. Phillip")
    f = DuplicateFilter(0.9)
    reason, h, m = f.check(mail)
    assert reason is None
    f.add(h, m)
    assert f.check("  " + mail.upper() + " ")[0] == "exact duplicate"
    assert content_hash(mail) == content_hash(mail.lower())
    near = mail.replace("Friday", "friday.")  + " Thanks"
    assert f.check(near)[0] == "near duplicate"
    assert f.check("Jeff, the stagecoach sale closes next week; call the insurer.")[0] is None


def test_stored_signatures_reload() -> None:
    text = "The agreement looks fine. My only comment is about the bank language in section two."
    _, h, m = DuplicateFilter(0.9).check(text)
    f = DuplicateFilter(0.9)
    f.load([(h, signature_bytes(m))])
    assert f.check(text + " ")[0] == "exact duplicate"
    g = DuplicateFilter(0.9)
    g.load([("other", signature_bytes(m))])
    assert g.check(text + " Thanks")[0] == "near duplicate"


def test_thread_key_ignores_reply_prefixes() -> None:
    assert thread_key("RE: Fw: re:  Sept 1  Payment") == thread_key("Sept 1 Payment")


def test_starting_doppel_does_not_import_datasketch() -> None:
    """datasketch imports scipy (~0.4 s of every start on 2 cores): the CLI and the engine
    load it only once a text is checked for repeats."""
    code = ("import sys, bot.cli, engine.engine, engine.memory.ingest; "
            "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
    assert DuplicateFilter(0.9).check("the rent roll came in on Friday")[0] is None
