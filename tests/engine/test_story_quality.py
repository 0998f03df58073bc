"""The checks a story passes whatever the model wrote it: script, loops, length."""

from __future__ import annotations

from engine.stories.quality import LoopGuard, min_words, right_script, script_share, words

HINDI = "एक जंगल में एक चतुर खरगोश रहता था। वह सबकी मदद करता था।"


def test_words_and_scripts_of_english_and_hindi() -> None:
    assert words(HINDI)[:6] == ["एक", "जंगल", "में", "एक", "चतुर", "खरगोश"]  # vowel signs kept
    assert words("Tim's dog ran.") == ["tim's", "dog", "ran"]
    assert right_script(HINDI, "hi") and not right_script(HINDI, "en")
    assert right_script("Once upon a time.", "en") and not right_script("Once upon a time.", "hi")
    assert script_share("The Rabbit\n" + HINDI, "hi") > 0.6  # an English title is fine
    assert script_share("12, 13!", "hi") == 1.0  # no letters: nothing to judge
    assert min_words(220) == 41 and min_words(100) == 40


def test_a_refrain_is_not_a_loop_but_a_fourth_time_is() -> None:
    guard = LoopGuard()
    refrain = "Run, run, as fast as you can!"
    story = [refrain, "The fox laughed at the little man.", refrain,
             "The cow mooed at him from the field.", refrain]
    assert not any(guard.sentence(s) for s in story)
    assert guard.sentence(refrain)  # the fourth time


def test_a_run_on_loop_without_a_full_stop_is_seen() -> None:
    guard = LoopGuard()
    assert not guard.runs_on("A LION, who had a great many others and a little fishing boat")
    assert guard.runs_on("A LION, longing to a greater who had " + "and the others, " * 12)


def test_echoed_tags_are_taken_out_and_brackets_in_a_story_stay() -> None:
    from engine.stories.quality import strip_echoed_tags

    assert strip_echoed_tags("[Age: 3-5 (very simple words)] Luna was sleepy.") == \
        "Luna was sleepy."
    assert strip_echoed_tags("[TITLE] The River of Wonder\n") == "The River of Wonder\n"
    assert strip_echoed_tags("[LANGUAGE: English; no violence, fear") == ""
    assert strip_echoed_tags("<sep>Once upon a time.") == "Once upon a time."
    assert strip_echoed_tags("Mia saw [a bird] fly.") == "Mia saw [a bird] fly."
