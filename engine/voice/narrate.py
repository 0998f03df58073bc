"""Stories read aloud through the voice pipeline."""

from __future__ import annotations

from engine.scheduler import Priority
from engine.stories.service import Narrator, StoryRecord
from engine.voice.service import Voice


class VoiceNarrator(Narrator):
    def __init__(self, voice: Voice) -> None:
        self.voice = voice

    async def narrate(self, story: StoryRecord, user: str = "system") -> bytes:
        """The title and the story as one OGG Opus file (story priority, below chat)."""
        note = await self.voice.speak(f"{story.title}. {story.content}", user=user,
                                      priority=Priority.STORY)
        return note.ogg
