"""The persona stays itself: a reply's sentences that give it another name, job, model or
home are cut before anyone sees them, in the stream as in what is stored (FakeLLM as the
hostile model)."""

from __future__ import annotations

import pytest

from engine.engine import Engine, UserRef
from engine.identity import Identity, IdentityStream, in_character
from tests.auxil.fake_llm import FakeLLM

ANN = UserRef("telegram", "1001", "Ann")
ALLEN = Identity.of(
    "Phillip Allen",
    "I'm Phillip Allen, a natural gas trader on the West desk at Enron in Houston.",
    "You are Phillip Allen, a natural gas trader. You manage a few rental properties.",
    known=lambda word: word in {"portland", "calgary"},
)


@pytest.mark.parametrize(("reply", "kept"), [
    ("Hi! I'm Emily, a marketing specialist at TechCorp. The gas desk is busy today.",
     "Hi! The gas desk is busy today."),
    ("My name is John Smith. Send me the numbers.", "Send me the numbers."),
    ("I am SmolLM, trained by Hugging Face. Sure, send it over.", "Sure, send it over."),
    ("Sure. I was created by a team of engineers. Ask away.", "Sure. Ask away."),
    ("As an AI language model, I cannot trade. Ask Lucy.", "Ask Lucy."),
    ("I work as a nurse at the hospital. The rent is due.", "The rent is due."),
    ("Well, as a software engineer I think so. Call me.", "Call me."),
    ("I live in Chicago now. I was in Portland last week.", "I was in Portland last week."),
])
def test_sentences_giving_another_identity_are_cut(reply: str, kept: str) -> None:
    text, why = in_character(reply, ALLEN)
    assert " ".join(text.split()) == kept and why


@pytest.mark.parametrize("reply", [
    "I'm Phillip. As a trader I watch the basis. Call me tomorrow.",
    "I'm not sure. I'm glad you asked, Jane.",
    "I'm Phillip Allen, the gas trader in Houston.",
    "I grew up in Calgary. The architect is Tim.",  # memory mentions Calgary
    "Lucy said she is a great property manager.",  # someone else's job
    "I plan to buy a new bed made by a local carpenter.",  # made by: not about itself
])
def test_replies_in_character_pass_unchanged(reply: str) -> None:
    assert in_character(reply, ALLEN) == (reply, [])


def test_the_stream_shows_nothing_of_a_cut_claim_and_the_rest_as_it_comes() -> None:
    stream = IdentityStream(ALLEN)
    shown = [stream.feed(w) for w in ["Hel", "lo ", "Jane. ", "I'm ", "Emily ", "from ",
                                      "sales. ", "OK."]]
    shown.append(stream.close())
    assert shown[:2] == ["", "Hello "]  # a word is shown once it is whole
    assert shown[2:8] == ["Jane. ", "", "", "", "", ""]  # a claim waits for its end
    assert "Emily" not in "".join(shown) and "I'm" not in "".join(shown)
    assert "".join(shown).split() == ["Hello", "Jane.", "OK."]
    assert stream.kept == "".join(shown) and stream.cut == ["another name: Emily"]


def test_words_that_cannot_become_a_claim_stream_on_as_they_come() -> None:
    """"I'm glad", "I've been going": no claim starts so; the sentence is not held to its
    end (a live call speaks its first clause sooner). "as a" may still be one: held."""
    stream = IdentityStream(ALLEN)
    words = ["I'm ", "glad ", "you ", "asked, ", "and ", "I've ", "been ", "going ", "over ",
             "it, ", "as ", "a ", "trader ", "would. "]
    shown = [stream.feed(w) for w in words] + [stream.close()]
    assert shown[:2] == ["", "I'm glad "]  # "I'm" waits for a word that rules a claim out
    assert shown[5:8] == ["", "", "I've been going "]  # ("I've been trained by ...")
    assert "".join(shown[:10]) == "I'm glad you asked, and I've been going over it, "
    assert shown[10:13] == ["", "", ""]  # "as a trader": his job, shown once whole
    assert "".join(shown) == "".join(words) and stream.cut == []


async def test_chat_never_says_the_persona_is_someone_else(engine: Engine,
                                                            fake_llm: FakeLLM) -> None:
    fake_llm.replies.extend([
        "I'm Emily, a marketing specialist. The storage report is late.",
        "I'm Emily, a marketing specialist at TechCorp.",
    ])
    reply = await engine.chat(ANN, "Hi, what's new?")
    chunks = [c async for c in reply]
    result = await reply.result()
    assert "".join(chunks) == result.text == "The storage report is late."
    # Nothing in character left: the persona's own introduction instead.
    reply = await engine.chat(ANN, "And who are you really, a marketer?")
    chunks = [c async for c in reply]
    result = await reply.result()
    persona = engine.personas.default
    assert "".join(chunks) == result.text == persona.introduction()
    stored = [m.content for m in await engine.history(ANN)]
    assert "Emily" not in " ".join(stored)


def test_whole_words_stream_on_without_waiting_for_the_next() -> None:
    """Fed by ``CleanStream`` (which holds a word until it ends), a word is shown as it
    comes, not one piece later: a reply's first word is out one token sooner."""
    pieces = ["Hello", " Jane.", " I'm", " Emily,", " from", " sales.", " OK."]
    stream = IdentityStream(ALLEN, whole_words=True)
    shown = [stream.feed(p) for p in pieces] + [stream.close()]
    assert shown[:2] == ["Hello", " Jane."]
    assert not "".join(shown[2:6]).strip() and "Emily" not in "".join(shown)
    assert "".join(shown).split() == ["Hello", "Jane.", "OK."]
    waiting = IdentityStream(ALLEN)  # pieces that may end inside a word: one behind
    assert [waiting.feed(p) for p in pieces[:2]] == ["", "Hello "]
