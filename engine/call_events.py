"""What a live call tells the person's client (``CallEvent``), and when each step of a
turn's answer was done (``STAGES``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class CallEvent:
    """What the call tells the person's client, in order.

    ``speech``: they started talking; ``partial``: the transcript so far (``text``);
    ``heard``: the final transcript, the persona is answering it; ``disclosure``: shown
    before the answer (the AI disclosure on a persona's first reply); ``audio``: the next
    sentence of the answer (``text``) as ``pcm`` at ``rate``, ``latency_s`` set on a turn's
    first (end of speech to this audio); ``barge_in``: they talked over the persona, stop
    playing; ``done``: the turn is over (``text`` as stored, ``message_id``); ``ignored``:
    speech with no words in it; ``notice``: something went wrong (``text`` says what).
    A turn's first ``audio`` also has ``stages``: when each step of the answer was done, in
    seconds after the end of speech (``STAGES``; a step done at a pause, before the turn
    ended, is counted from there too).
    """

    kind: str
    text: str = ""
    pcm: NDArray[np.int16] | None = field(default=None, repr=False)
    rate: int = 0
    message_id: int | None = None
    latency_s: float | None = None
    stages: dict[str, float] | None = None


STAGES = ("turn_end", "transcript", "asked", "model_start", "first_text", "first_sentence",
          "first_audio")
"""A turn's steps, in order: the turn's end decided (the silence waited for), the words
transcribed, the answer asked for (memory recalled, the prompt made), the model begun on it,
its first words, the first sentence (or clause) handed to TTS, its audio."""


Emit = Callable[[CallEvent], Awaitable[None]]


def stages(marks: dict[str, float], queued_s: float | None, ended: float,
           first_audio: float) -> dict[str, float]:
    """``STAGES`` in seconds after the end of speech (``ended``): the marks a turn made,
    with the model's start reckoned from the reply's time in the queue (``queued_s``)."""
    out = dict(marks, first_audio=first_audio)
    if "asked" in out and queued_s is not None:
        out["model_start"] = out["asked"] + queued_s
    return {k: round(out[k] - ended, 3) for k in STAGES if k in out}
