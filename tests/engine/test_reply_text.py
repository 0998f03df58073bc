"""The filter every reply and story passes before it leaves the engine: prompt markup never
reaches a person, even half-written in a stream; a reply cut off by max_tokens ends at a
sentence and says so. Engine-level checks run hostile output from the fake model."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.engine import Engine, UserRef
from engine.reply_text import CleanStream, clean, end_at_sentence, is_blank
from engine.stories.options import StoryRequest
from tests.auxil.fake_llm import FakeLLM, introduced
from tests.conftest import MakeConfig

ANN = UserRef("telegram", "1", "Ann")
MARKUP = re.compile(r"<<|>>|\[(GENRE|STORY|AGE|LANGUAGE|LENGTH|PROMPT|CHARACTERS)\]|<\||SOURCE \d")
# What small models were seen to write (issue 16) and what the prompt's machinery looks like.
HOSTILE = [
    "The contractor was Kip. <<<END SOURCE 4>> Thanks.",
    "Hi <<<END SOURCE 6 | 2012-08-30 'Bridge'>> there",
    "<<<SOURCE 1 | 2001-04-23 'Re: rent'>>>\nThe rent is $1,100. [1]",
    "[GENRE] adventure\nThe Lost Map\nOnce upon a time.",
    "[LANGUAGE] English [LENGTH] 12 lines long\n[STORY] Once there was a fox.",
    "Done now <|im_end|> and << <END SOURCE 2> >> more",
]
INVENTED = ("Message: What did you work on last week?\nSent by: [Lynn@TechBlogspot]\n"
            "To: LINE@TechBlogspot.com\nAnswer: I worked on the rent roll; call me at "
            "(713) 853-6965 or mail pallen@enron.com. To be honest: fine.")
"""What a reply carried (issue 33): a prompt-style label, made-up mail headers, contacts."""


def test_made_up_headers_labels_addresses_and_numbers_never_leave() -> None:
    assert clean(INVENTED) == ("I worked on the rent roll; call me at [phone] or mail "
                               "[email]. To be honest: fine.")
    for kept in ("Sent from my phone at 5 pm.", "To do: the rent.", "In 2001 we had 12 units "
                 "and 1,140 acres.", "From what I recall, Jeff said no."):
        assert clean(kept) == kept


@pytest.mark.parametrize("text", HOSTILE)
def test_markup_is_removed_and_the_words_stay(text: str) -> None:
    out = clean(text)
    assert not MARKUP.search(out), out
    words = [w for w in re.findall(r"[a-z]{4,}", text.lower())
             if w not in ("source", "genre", "story", "language", "length", "english", "adventure",
                          "bridge", "rent", "lines", "long")]
    assert all(w in out.lower() for w in words), (words, out)


def test_ordinary_text_is_untouched() -> None:
    for text in ("x < 5 and y > 3, ok.", "I <3 you.", "See [1] and [2].", "A (small) note: yes!",
                 "नमस्ते, दोस्त।"):
        assert clean(text) == text


@given(st.sampled_from([*HOSTILE, INVENTED, "Plain words only. Nothing odd here."]),
       st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=80))
def test_a_stream_shows_exactly_the_clean_text_and_never_half_a_marker(
        text: str, cuts: list[int]) -> None:
    stream, shown, i = CleanStream(), "", 0
    for n in cuts * (len(text) // max(sum(cuts), 1) + 1):
        if i >= len(text):
            break
        shown += stream.feed(text[i:i + n])
        assert not MARKUP.search(shown) and not shown.endswith(("<", "[")), shown
        assert "@" not in shown and "853" not in shown and "Sent by" not in shown, shown
        i += n
    shown += stream.feed(text[i:]) + stream.close()
    assert shown == stream.text == clean(text).strip()


def test_a_cut_off_reply_ends_at_its_last_sentence() -> None:
    assert end_at_sentence("He was made to protect. He") == ("He was made to protect.", True)
    assert end_at_sentence("All done here.") == ("All done here.", False)
    assert end_at_sentence("One long clause with no end") == ("One long clause with no end…",
                                                             True)
    assert is_blank("\u200b\u200d \ufeff\n") and not is_blank("\u200bok")


async def test_hostile_model_output_never_leaves_the_engine(make_config: MakeConfig) -> None:
    llm = FakeLLM([HOSTILE[2]])
    engine = Engine(make_config(), llm=llm)
    await engine.start()
    try:
        await introduced(engine, ANN)
        reply = await engine.chat(ANN, "Tell me about the rent")
        chunks = [c async for c in reply]
        result = await reply.result()
        assert result.status == "complete"
        assert "".join(chunks) == result.text == "The rent is $1,100. [1]"
        assert (await engine.history(ANN))[-1].content == result.text
    finally:
        await engine.stop()


async def test_a_reply_cut_off_by_max_tokens_is_trimmed_and_marked(
        make_config: MakeConfig) -> None:
    llm = FakeLLM(["It rained all week. The roof held up well. Then on Friday the"])
    engine = Engine(make_config(llm={"max_tokens": 12}), llm=llm)
    await engine.start()
    try:
        reply = await engine.chat(ANN, "Tell me about your week")
        result = await reply.result()
        assert result.truncated and result.status == "truncated"
        assert result.text == "It rained all week. The roof held up well."
        [_, stored] = await engine.history(ANN)
        assert (stored.content, stored.status) == (result.text, "truncated")
    finally:
        await engine.stop()


async def test_story_titles_and_text_carry_no_prompt_tags(engine: Engine,
                                                          fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("[GENRE] adventure\n[STORY] The Lost Map\nMira found a map. "
                            "She followed it home.")
    reply = await engine.stories.create(ANN, StoryRequest(genre="adventure"))
    streamed = "".join([c async for c in reply])
    record = await reply.result()
    assert record.title == "The Lost Map"
    assert record.content == "Mira found a map. She followed it home."
    assert not MARKUP.search(streamed + record.title + record.content)
