"""A reply is a message, not a letter: the mail frame a fine-tune writes (a salutation to
the persona itself, a signature, another mail after it) is reshaped, in the stream as in
what is stored. The replies below are what the shipped persona's fine-tune wrote in
``bench/live.py``; the hostile model is the FakeLLM."""

from __future__ import annotations

import pytest

from engine.engine import Engine, UserRef
from engine.letter import LetterStream
from tests.auxil.fake_llm import FakeLLM, introduced

ANN = UserRef("telegram", "1001", "Ann")
NAMES = frozenset({"phillip", "allen"})


def reshape(text: str, *, spoken: bool = False, reader: str = "Ann") -> tuple[str, bool]:
    """``text`` fed word by word, as a model streams it: what was shown (checked to be
    what is kept) and whether anything was left out."""
    stream = LetterStream(NAMES, reader=reader, spoken=spoken)
    words = text.split(" ")
    shown = "".join(stream.feed(w if i == 0 else " " + w) for i, w in enumerate(words))
    shown += stream.close()
    assert shown == stream.kept
    return shown, stream.changed


@pytest.mark.parametrize(("reply", "written", "spoken"), [
    ("Phillip,\n\nThe company is still open. I have attached a copy of the invoice.",
     "The company is still open. I have attached a copy of the invoice.",
     "The company is still open. I have attached a copy of the invoice."),
    ("I'm working on a new project.\n\nPhillip,\n\nThe meeting is in 2 weeks.",
     "I'm working on a new project.", "I'm working on a new project."),
    ("I don't know the answer yet.\n\nPhillip\n\nYou are a business AI, and I'm pleased to "
     "report that you have not been able to deliver your email package.",
     "I don't know the answer yet.\n\nPhillip", "I don't know the answer yet."),
    ("Hi,\n\nI am sure you can get the job done.\n\nSincerely,\nPhillip\n\nThe email from "
     "the manager was not delivered.",
     "I am sure you can get the job done.\n\nSincerely,\nPhillip",
     "I am sure you can get the job done."),
    ("Jeff,\n\nThe rent roll is looking good.\n\nThanks,\n\nPhillip K. Allen",
     "The rent roll is looking good.\n\nThanks,\n\nPhillip K. Allen",
     "The rent roll is looking good."),
    ("Ann,\n\nSend me the numbers.", "Ann,\n\nSend me the numbers.", "Send me the numbers."),
    ("Phillip", "", ""),
])
def test_a_letters_frame_is_reshaped(reply: str, written: str, spoken: str) -> None:
    assert reshape(reply) == (written, written != reply)
    assert reshape(reply, spoken=True) == (spoken, True)


@pytest.mark.parametrize("reply", [
    "Thanks, that helps. I will call Jeff about it.",
    "Sincerely, I don't know.\nAsk Lucy.",
    "Hi Jeff, good to hear from you.",
    "Thanks",
    "Sure,\nsend it over.",
    "The numbers:\n\n- 32 acres\n- $145K\n\nCall me, Phillip will be out.",
])
def test_ordinary_replies_pass_unchanged(reply: str) -> None:
    assert reshape(reply) == (reply, False)
    assert reshape(reply, spoken=True) == (reply, False)


def test_a_line_waits_only_while_it_may_be_a_salutation_or_a_signature() -> None:
    stream = LetterStream(NAMES)
    shown = [stream.feed(p) for p in ["Phil", "lip", ",\n", "\nThe ", "rent ", "is ", "due.",
                                      "\n\n", "Phil", "lip"]]
    shown.append(stream.close())
    assert shown[:3] == ["", "", ""]  # "Phillip," might greet the persona: it does
    # An ordinary line streams on once its words rule out a name ("The Team,"?).
    assert shown[3:7] == ["", "The rent ", "is ", "due."]
    assert shown[7:10] == ["", "", ""]  # blank lines wait for what follows them
    assert shown[10] == "\n\nPhillip" and stream.ended


async def test_a_chat_reply_ends_at_its_signature_and_the_model_is_stopped(
        engine: Engine, fake_llm: FakeLLM) -> None:
    await introduced(engine, ANN)
    after = " ".join(["more"] * 60)
    fake_llm.replies.extend([
        f"Phillip,\n\nThe rent roll is looking good.\n\nPhillip\n\nYou are a business AI. {after}",
        "Phillip",
    ])
    reply = await engine.chat(ANN, "How is the rent roll?")
    chunks = [c async for c in reply]
    result = await reply.result()
    assert "".join(chunks) == result.text == "The rent roll is looking good.\n\nPhillip"
    assert result.status == "complete"
    assert result.tokens < 20  # the model was stopped at the signature, not run to the end
    stored = [m.content for m in await engine.history(ANN)]
    assert stored[-1] == result.text
    # A signature alone: nothing of a message left, the persona's introduction instead.
    reply = await engine.chat(ANN, "Should I call you later today?")
    chunks = [c async for c in reply]
    result = await reply.result()
    assert "".join(chunks) == result.text == engine.personas.default.introduction()


async def test_a_spoken_reply_has_no_salutation_and_no_signature(
        engine: Engine, fake_llm: FakeLLM) -> None:
    await introduced(engine, ANN)
    fake_llm.replies.append("Jeff,\n\nThe meeting is in two weeks.\n\nThanks,\nPhillip")
    reply = await engine.chat(ANN, "When is the meeting?", brief=True)
    chunks = [c async for c in reply]
    result = await reply.result()
    assert "".join(chunks) == result.text == "The meeting is in two weeks."
