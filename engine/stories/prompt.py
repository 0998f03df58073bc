"""The structured story prompt, titles, and model-made prompt suggestions."""

from __future__ import annotations

import re

from engine.llm.base import ChatMessage
from engine.reply_text import clean
from engine.stories.options import StoryRequest

SYSTEM = (
    "You are a kind storyteller who writes stories for children. Stories are gentle, safe "
    "and age-appropriate: no violence, fear, bad words or grown-up themes, and they end "
    "happily. Write the story described after the tags. Start with a short title on its "
    "own line, then the story."
)
AGE_STYLE = {
    "3-5": "very simple words, short sentences, repetition and sounds",
    "6-8": "simple words, a clear problem and a happy solution",
    "9-12": "richer words, a little suspense and a lesson",
}


def story_prompt(req: StoryRequest) -> str:
    """``[GENRE] … [CHARACTERS] … [PROMPT] … [STORY]``: the format story models are tuned on."""
    lang = req.language_name + (" (in Devanagari script)" if req.language == "hi" else "")
    return (
        f"[GENRE] {req.genre}\n"
        f"[AGE] {req.age_group} ({AGE_STYLE[req.age_group]})\n"
        f"[LANGUAGE] {lang}\n"
        f"[LENGTH] {req.length}\n"
        f"[CHARACTERS] {req.characters or 'any'}\n"
        f"[PROMPT] {req.prompt or 'a surprise'}\n"
        f"[STORY]"
    )


def story_messages(req: StoryRequest) -> list[ChatMessage]:
    return [ChatMessage("system", SYSTEM), ChatMessage("user", story_prompt(req))]


_TITLE_PREFIX = re.compile(r"^\s*(#+\s*|\*\*|title\s*:\s*|शीर्षक\s*:\s*)", re.IGNORECASE)


def split_title(text: str, req: StoryRequest) -> tuple[str, str]:
    """(title, body): the first line when it looks like a title, else one made from the request."""
    text = clean(text).strip()
    first, _, rest = text.partition("\n")
    candidate = _TITLE_PREFIX.sub("", first).strip(" *#\"'")
    if rest.strip() and 0 < len(candidate.split()) <= 12 and not candidate.endswith((".", ",")):
        return candidate, rest.strip()
    who = req.characters.split(",")[0].split(" ")[0].strip() if req.characters else ""
    article = "An" if req.genre[:1] in "aeiou" else "A"
    fallback = f"{who}'s {req.genre} story" if who else f"{article} {req.genre} story"
    return fallback[:1].upper() + fallback[1:], text


def suggestion_messages(genre: str, language: str, age_group: str) -> list[ChatMessage]:
    lang = "Hindi, in Devanagari script" if language == "hi" else "English"
    return [
        ChatMessage("system", "You suggest ideas for children's stories. Reply with exactly "
                              "five ideas, one per line, each under 15 words, no numbering."),
        ChatMessage("user", f"Five {genre} story ideas for children aged {age_group}, "
                            f"written in {lang}."),
    ]


_BULLET = re.compile(r"^\s*([-*•]|\d+[.)]|[a-e][.)])\s*")
_CHATTER = re.compile(r"^(sure|certainly|of course|here (are|is)|here's|these (are|stories|"
                      r"ideas)|i hope|enjoy|let me know|feel free)\b|\b(story )?ideas (for|in|"
                      r"written)\b|[…:]$|\b(i|i'm|i've|i'll|i'd|me|my)\b", re.IGNORECASE)
"""A line about the list, not in it: the model's own voice (I, me, my) is never an idea."""
_DANGLING = re.compile(r"\b(of|the|a|an|and|or|to|about|with|who|that|in|on|for)$",
                       re.IGNORECASE)
"""An idea cut off where it began ("The story of")."""
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?।])(\s|$)")


def parse_suggestions(text: str, language: str = "en", *, cut_off: bool = False) -> list[str]:
    """The ideas in a model's answer: one a line, bullets and numbers dropped; a line that
    talks about the list ("Here are five ideas ...", "These stories are ...") is not an
    idea; a long idea is cut to its first sentence; ideas in another script than the
    language's are dropped, and so is the last line of an answer that was ``cut_off``."""
    from engine.stories.quality import right_script

    lines = [ln for ln in text.splitlines() if _BULLET.sub("", ln).strip()]
    if cut_off and lines:
        lines = lines[:-1]  # the model ran out of tokens inside it
    ideas = []
    for line in lines:
        idea = _BULLET.sub("", line).strip().strip('"*_~').strip()
        if _CHATTER.search(idea) or _DANGLING.search(idea):
            continue
        if len(idea.split()) > 25 and (m := _FIRST_SENTENCE.match(idea)):
            idea = m.group(1)
        if 3 <= len(idea.split()) <= 25 and right_script(idea, language):
            ideas.append(idea)
    return list(dict.fromkeys(ideas))


FALLBACK = {
    "en": [
        "A story about a shy cloud who wants to make a rainbow",
        "A story where a lost kitten finds the way home with new friends",
        "A story about a tiny robot who learns to dance",
        "A {g} story about two friends who build a boat from a teacup",
        "A story about a moon that forgets how to shine",
        "A story about a garden where the vegetables can talk",
        "A story about a dragon who is afraid of the dark",
    ],
    "hi": [
        "एक शर्मीले बादल की कहानी जो इंद्रधनुष बनाना चाहता है",
        "एक खोए हुए बिल्ली के बच्चे की कहानी जो नए दोस्तों के साथ घर पहुँचता है",
        "एक छोटे रोबोट की कहानी जो नाचना सीखता है",
        "दो दोस्तों की कहानी जो चाय के कप से नाव बनाते हैं",
        "एक चाँद की कहानी जो चमकना भूल जाता है",
        "एक बगीचे की कहानी जहाँ सब्ज़ियाँ बात करती हैं",
        "एक ड्रैगन की कहानी जिसे अंधेरे से डर लगता है",
    ],
}


def about_photo(prompt: str, description: str) -> str:
    """The request's prompt with what the photo shows: the story is about that."""
    lead = f"{prompt.rstrip('. ')}. " if prompt.strip() else ""
    return f"{lead}A story about what this photo shows: {description}"
