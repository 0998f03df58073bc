"""The voice-cloning flow: who may clone, clip checks, recorded consent, a sample reply.

In chat it takes several messages (``/voice clone NAME``, one to three clips, then consent),
so the engine keeps a short-lived draft per user; tools that have every clip at once call
:meth:`VoiceCloning.clone`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.config import Config
from engine.conversations import ConversationStore
from engine.errors import FeatureUnavailable, InputError, NotAllowed
from engine.personas import Persona, PersonaRegistry
from engine.records import UserRef
from engine.voice.audio import VoiceNote
from engine.voice.clips import CleanClip, clean_clip
from engine.voice.library import VoiceRecord
from engine.voice.service import Voice

DRAFT_TTL_S = 15 * 60
NAME_MAX = 60
CLONING_NEEDS_XTTS = (
    "Voice cloning needs the XTTS-v2 voice model, which is not set up here (the operator "
    "sets [voice] xtts_model_dir and installs the xtts extra). Replies use the standard voice.")


@dataclass
class Draft:
    persona: Persona
    name: str
    clips: list[CleanClip] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.clips)


@dataclass(frozen=True)
class ClonedVoiceReply:
    voice: VoiceRecord
    sample: VoiceNote
    """A short greeting in the new voice."""


class VoiceCloning:
    def __init__(self, config: Config, personas: PersonaRegistry, users: ConversationStore,
                 voice: Voice, may_manage: Callable[..., bool]) -> None:
        """``may_manage(user, persona, is_admin=...)``: the engine's one rule for who
        manages a persona (admins and its owners)."""
        self.config = config
        self.may_manage = may_manage
        self.personas = personas
        self.users = users
        self.voice = voice
        self.library = voice.library
        self._drafts: dict[str, Draft] = {}

    @property
    def available(self) -> bool:
        """Whether voices can be cloned here (XTTS is set up)."""
        return self.voice.xtts is not None

    # -- who may ----------------------------------------------------------------------------

    def _check(self, user: UserRef, persona: Persona, is_admin: bool) -> None:
        if self.voice.xtts is None:
            raise FeatureUnavailable(user_message=CLONING_NEEDS_XTTS)
        if not self.may_manage(user, persona, is_admin=is_admin):
            raise NotAllowed(f"{user.key} may not manage {persona.name}'s voices",
                             user_message=f"Only an admin or {persona.display_name}'s owner "
                                          "can manage this persona's voices.")

    # -- the flow ---------------------------------------------------------------------------

    def begin(self, user: UserRef, persona: Persona, name: str, *,
              is_admin: bool = False) -> Draft:
        """Start collecting clips for a new voice of ``persona`` called ``name``."""
        self._check(user, persona, is_admin)
        name = " ".join(name.split())
        if not name or len(name) > NAME_MAX:
            raise InputError("bad voice name", user_message=(
                f"Give the voice a name of 1-{NAME_MAX} characters, e.g. /voice clone studio."))
        draft = self._drafts[user.key] = Draft(persona, name)
        return draft

    def draft(self, user: UserRef) -> Draft | None:
        draft = self._drafts.get(user.key)
        if draft is not None and time.monotonic() - draft.started > DRAFT_TTL_S:
            del self._drafts[user.key]
            return None
        return draft

    async def add_clip(self, user: UserRef, data: bytes) -> Draft:
        """Check one clip and add it to the user's draft."""
        draft = self.draft(user)
        if draft is None:
            raise InputError("no clone draft", user_message=(
                "Start with /voice clone NAME, then send the clips."))
        cfg = self.config.voice
        if len(draft.clips) >= cfg.clone_max_clips:
            raise InputError("too many clips", user_message=(
                f"That's {cfg.clone_max_clips} clips already, the most a voice uses. Confirm "
                "consent to finish, or /voice cancel."))
        if len(data) > cfg.max_input_mb * 1024 * 1024:
            raise InputError("clip too large", user_message=(
                f"That file is over {cfg.max_input_mb:g} MB."))
        clip = await asyncio.to_thread(
            clean_clip, data, name=f"Clip {len(draft.clips) + 1}",
            min_s=cfg.clone_min_seconds, max_s=cfg.clone_max_seconds)
        draft.clips.append(clip)
        return draft

    def cancel(self, user: UserRef) -> bool:
        return self._drafts.pop(user.key, None) is not None

    async def finish(self, user: UserRef, consent_speaker: str) -> ClonedVoiceReply:
        """Store the voice with the consent the uploader confirms (the name of the person
        heard in the clips, who agreed to be cloned), make it the persona's voice and speak
        a sample in it."""
        draft = self.draft(user)
        if draft is None:
            raise InputError("no clone draft", user_message=(
                "There is no voice being cloned. Start with /voice clone NAME."))
        if not draft.clips:
            cfg = self.config.voice
            raise InputError("no clips", user_message=(
                f"Send at least one clip ({cfg.clone_min_seconds:g}-"
                f"{cfg.clone_max_seconds:g} s of the person speaking) first."))
        speaker_name = " ".join(consent_speaker.split())
        if not speaker_name or len(speaker_name) > 200:
            raise InputError("consent without a name", user_message=(
                "Consent needs the name of the person heard in the clips, who agreed to "
                "have their voice cloned."))
        record = await self.library.create(
            persona=draft.persona.name, name=draft.name, created_by=await self.users.user_id(user),
            clips=draft.clips, consent_speaker=speaker_name)
        del self._drafts[user.key]
        speaker = await self.voice.speaker_for(draft.persona)
        try:
            await self.voice.prepare(speaker, user=user.key)
            sample = await self.voice.speak(self.sample_text(draft.persona), user=user.key,
                                            persona=draft.persona)
        except BaseException:
            await self.library.delete(record.id)  # a voice that cannot speak is no voice
            raise
        return ClonedVoiceReply(record, sample)

    async def clone(self, user: UserRef, persona: Persona, name: str, clips: list[bytes],
                    consent_speaker: str, *, is_admin: bool = False) -> ClonedVoiceReply:
        """The whole flow at once (console, HTTP API)."""
        self.begin(user, persona, name, is_admin=is_admin)
        try:
            for data in clips:
                await self.add_clip(user, data)
            return await self.finish(user, consent_speaker)
        finally:
            self.cancel(user)

    @staticmethod
    def sample_text(persona: Persona) -> str:
        return (persona.profile.greeting.strip()
                or f"Hello, this is {persona.display_name}. This is how I sound now.")

    # -- managing ---------------------------------------------------------------------------

    async def list(self, persona: Persona) -> list[VoiceRecord]:
        return await self.library.for_persona(persona.name)

    async def use(self, user: UserRef, voice_id: str, *, is_admin: bool = False) -> VoiceRecord:
        voice = await self.library.get(voice_id.strip())
        self._check(user, self.personas.get(voice.persona), is_admin)
        return await self.library.use(voice.id)

    async def delete(self, user: UserRef, voice_id: str, *,
                     is_admin: bool = False) -> VoiceRecord:
        """Delete the voice, its clips and its cached latents."""
        voice = await self.library.get(voice_id.strip())
        persona = self.personas.get(voice.persona)
        if not self.may_manage(user, persona, is_admin=is_admin):
            raise NotAllowed(user_message=f"Only an admin or {persona.display_name}'s owner "
                                          "can delete this persona's voices.")
        self.voice.forget_voice(voice.id)
        return await self.library.delete(voice.id)
