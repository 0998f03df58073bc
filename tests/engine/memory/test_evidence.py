"""The relevance decision and the quote the engine opens a grounded reply with."""

from __future__ import annotations

from dataclasses import replace

from engine.memory.evidence import best_quote, best_quotes, sentences
from engine.memory.relevance import Gate, TermStats, weigh
from engine.memory.retrieve import Hit

MAIL = ("Laura,\n\nGiven Greg Whalley's schedule, the best day for us to visit with you at "
        "Santa Fe would be Wednesday, September the 5th. WE would arrive from San Francisco, "
        "early in the morning and we could stay through the day. Please, let me know if this "
        "date would work for you.\n\nVince")
OTHER = [
    "Shirley, please send my bio to Layla. Vince",
    "Mike, we are short manpower in London. We shall try to evaluate the software in Houston.",
    "Ed, can you resend it? The first file you sent may have been corrupted. Vince",
    "Jan, please check the following Lotus Notes folders for the LJM litigation. Vince",
    "Tom, we are currently space constrained but we shall always take a qualified candidate.",
    "Please send the message to the group and let me know. Thanks for the message.",
    "I forwarded your message to Mike; his message to me came yesterday.",
    "Maureen, OK. Vince",
    "Helen, I have forwarded my recommendation to the person who posted this position.",
    "Tom, select one of the courses. Hard to say which one is the best.",
    "Sally, we were approached a few months ago regarding this benchmarking study.",
    "Bob, I shall be out on Wednesday but my associate will meet you at 3.30 p.m.",
    "Mike, thanks for your message. The meeting on Tuesday at 7 is confirmed.",
    "Pravas, no problem. Please, coordinate with Shirley.",
    "Ian, my secretary contacted SMS about the conference.",
    "Any comments on this person? Vince",
    "Howard, the conference call on Tuesday at 4:30 EDT works for us.",
    "Christie, my movie picks for the weekend: Diva and A Letter to Three Wives.",
    "Jeff, we should cancel our participation in the Tiger Team this year.",
    "Kim, I shall ask Shirley to schedule a lunch in 2-3 weeks.",
    "Rob, the orgchart per your request. Vince",
]
STATS = TermStats.build([MAIL, *OTHER], [(2001, 4 + i % 9) for i in range(1 + len(OTHER))])
"""Mail from April to December 2001."""


def _hit(text: str, kind: str = "own", date: str = "2001-08-23") -> Hit:
    return Hit(0.6, text, "sent.mbox", kind, "<1@x>", "RE: visit to Prediction", date)


def _evidence(question: str, cosine: float, passages: list[str] | None = None) -> bool:
    from engine.memory.retrieve import content_words

    content = content_words(question)
    found = passages or [MAIL, *OTHER]
    cosines = [cosine] + [cosine - 0.2] * (len(found) - 1)
    return weigh(question, found, cosines, STATS, content).relevant(Gate())


def test_memory_has_something_when_meaning_and_rare_words_agree() -> None:
    assert _evidence("Which day could you visit Santa Fe, given Greg's schedule?", 0.55)
    # Keywords that say a lot carry a weaker semantic match.
    assert _evidence("When is the Santa Fe visit?", 0.35)


def test_memory_has_nothing_for_vague_unknown_or_out_of_time_questions() -> None:
    assert not _evidence("Which message?", 0.6, OTHER)  # words found everywhere
    assert not _evidence("Who won the FIFA World Cup final?", 0.3)  # words memory never has
    assert not _evidence("Did you visit Santa Fe again in 2005?", 0.7)  # after the mail ends
    assert _evidence("Did you visit Santa Fe in 2001?", 0.7)
    # A month outside what memory spans, though its year is within it.
    assert not _evidence("How was the Santa Fe visit in February 2001?", 0.7)
    assert _evidence("How was the Santa Fe visit in September 2001?", 0.7)
    assert _evidence("How was the Santa Fe visit on Sept 5, 2001?", 0.7)


def test_the_quote_is_the_answering_sentence_with_who_and_when() -> None:
    hits = [_hit(OTHER[0]), _hit(MAIL)]
    quote = best_quote("Given Greg Whalley's schedule, which day could you visit Santa Fe?",
                       hits, STATS)
    assert quote is not None and quote.number == 2
    text = quote.render()
    assert text.startswith("On 23 Aug 2001 I wrote to Laura: “Given Greg Whalley's schedule, "
                           "the best day")
    assert "September the 5th." in text and text.endswith("” [2]")


def test_a_second_mail_as_close_in_meaning_is_quoted_too() -> None:
    question = "When is the Santa Fe visit?"
    visit = _hit(MAIL)
    # Its few sentences closest in meaning (retrieval's best window) are what it says.
    movies = replace(_hit(OTHER[17], date="2001-09-02"), message_id="<2@x>",
                     passage=OTHER[17])
    # The second mail is at least as close in meaning as the first: both are quoted.
    quotes = best_quotes(question, [visit, replace(movies, score=0.6)], STATS)
    assert [q.number for q in quotes] == [1, 2]
    assert "Santa Fe" in quotes[0].sentence and "Diva" in quotes[1].sentence
    assert quotes[1].render().startswith("On 2 Sep 2001 I wrote to Christie:")
    # Less close, or another part of the same mail: the first alone.
    assert len(best_quotes(question, [visit, replace(movies, score=0.5)], STATS)) == 1
    same_mail = replace(movies, score=0.7, message_id=visit.message_id)
    assert len(best_quotes(question, [visit, same_mail], STATS)) == 1
    assert best_quotes("What is the capital of Mongolia?", [_hit(MAIL)], STATS) == []


def test_mail_to_the_person_is_not_quoted_as_their_own_words() -> None:
    quote = best_quote("When is the Santa Fe visit?", [_hit(MAIL, kind="context")], STATS)
    assert quote is not None
    assert quote.render().startswith("On 23 Aug 2001, a mail I got, 'RE: visit to Prediction':")


def test_no_quote_without_a_sentence_that_shares_enough() -> None:
    assert best_quote("What is the capital of Mongolia?", [_hit(MAIL)], STATS) is None


def test_quoted_headers_are_never_quoted() -> None:
    text = ('Mike, we shall try in Houston. "Mike Curran" <[email]> on 04/24/2001 10:03:24 AM '
            "Please respond to Mike Curran. Subject: Willow and Pathstar evaluations")
    assert sentences(text) == ["we shall try in Houston."]
