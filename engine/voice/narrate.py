"""Stories read aloud through the voice pipeline."""

from __future__ import annotations

from collections.abc import Callable

from engine.personas import Persona
from engine.stories.service import Narrator, StoryRecord
from engine.voice.audio import VoiceNote
from engine.voice.service import Voice


class VoiceNarrator(Narrator):
    def __init__(self, voice: Voice, persona: Callable[[], Persona]) -> None:
        self.voice = voice
        self.persona = persona
        """Whose voice reads (resolved at each reading: the config may name any persona)."""

    async def narrate(self, story: StoryRecord, user: str = "system") -> list[VoiceNote]:
        """The story in the narrator's voice and the story's language: one OGG Opus file,
        or one per chapter when it is long (story priority, below chat)."""
        return await self.voice.narrate(story.title, story.content, user=user,
                                        persona=self.persona(), language=story.language)
