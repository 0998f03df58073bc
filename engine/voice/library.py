"""Cloned voices: rows in ``voices`` plus ``<data_dir>/voices/<id>/`` (clips, cached latents).

A voice is attached to one persona; at most one voice per persona is active (the one it
speaks in). Deleting a voice deletes its files; deleting a user deletes the voices they made.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from engine.errors import InputError, shown
from engine.storage.db import Database
from engine.storage.models import ClonedVoice, utcnow
from engine.voice.clips import CleanClip


@dataclass(frozen=True)
class VoiceRecord:
    id: str
    persona: str
    name: str
    consent_speaker: str
    consent_at: datetime
    clips: int
    seconds: float
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, row: ClonedVoice) -> VoiceRecord:
        return cls(row.id, row.persona, row.name, row.consent_speaker, row.consent_at,
                   row.clips, row.seconds, row.active, row.created_at)


class VoiceLibrary:
    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.root = data_dir / "voices"

    def directory(self, voice_id: str) -> Path:
        return self.root / voice_id

    def clip_paths(self, voice_id: str) -> tuple[Path, ...]:
        return tuple(sorted(self.directory(voice_id).glob("clip-*.wav")))

    async def create(self, *, persona: str, name: str, created_by: int, clips: list[CleanClip],
                     consent_speaker: str, activate: bool = True) -> VoiceRecord:
        """Store the clips and the consent; with ``activate`` the persona speaks in it now."""
        if await self.find(persona, name) is not None:
            raise InputError(f"voice {shown(name)!r} exists", user_message=(
                f"{persona} already has a voice called \"{shown(name)}\". Pick another "
                "name."))
        voice_id = "v" + secrets.token_hex(4)
        folder = self.directory(voice_id)
        folder.mkdir(parents=True, exist_ok=False)
        try:
            for i, clip in enumerate(clips, 1):
                (folder / f"clip-{i}.wav").write_bytes(clip.wav())
            async with self.db.session() as s, s.begin():
                if activate:
                    await s.execute(update(ClonedVoice).where(ClonedVoice.persona == persona)
                                    .values(active=False))
                row = ClonedVoice(
                    id=voice_id, persona=persona, name=name, created_by=created_by,
                    consent_speaker=consent_speaker, consent_at=utcnow(), clips=len(clips),
                    seconds=round(sum(c.seconds for c in clips), 2), active=activate)
                s.add(row)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return VoiceRecord.of(row)

    async def find(self, persona: str, name: str) -> VoiceRecord | None:
        async with self.db.session() as s:
            row = await s.scalar(select(ClonedVoice).where(ClonedVoice.persona == persona,
                                                           ClonedVoice.name == name))
        return VoiceRecord.of(row) if row is not None else None

    async def get(self, voice_id: str) -> VoiceRecord:
        async with self.db.session() as s:
            row = await s.get(ClonedVoice, voice_id)
        if row is None:
            raise InputError(f"no voice {voice_id!r}", user_message=(
                f"There is no voice with id {voice_id}. /voice list shows them."))
        return VoiceRecord.of(row)

    async def for_persona(self, persona: str) -> list[VoiceRecord]:
        async with self.db.session() as s:
            rows = await s.scalars(select(ClonedVoice).where(ClonedVoice.persona == persona)
                                   .order_by(ClonedVoice.created_at))
            return [VoiceRecord.of(r) for r in rows]

    async def active(self, persona: str) -> VoiceRecord | None:
        async with self.db.session() as s:
            row = await s.scalar(select(ClonedVoice).where(ClonedVoice.persona == persona,
                                                           ClonedVoice.active.is_(True)))
        return VoiceRecord.of(row) if row is not None else None

    async def use(self, voice_id: str) -> VoiceRecord:
        """Make this the voice its persona speaks in."""
        voice = await self.get(voice_id)
        async with self.db.session() as s, s.begin():
            await s.execute(update(ClonedVoice).where(ClonedVoice.persona == voice.persona)
                            .values(active=ClonedVoice.id == voice_id))
        return await self.get(voice_id)

    async def delete(self, voice_id: str) -> VoiceRecord:
        """Remove the voice, its clips and its cached latents."""
        voice = await self.get(voice_id)
        async with self.db.session() as s, s.begin():
            row = await s.get(ClonedVoice, voice_id)
            if row is not None:
                await s.delete(row)
        shutil.rmtree(self.directory(voice_id), ignore_errors=True)
        return voice

    async def ids_created_by(self, user_id: int) -> list[str]:
        async with self.db.session() as s:
            return list(await s.scalars(select(ClonedVoice.id)
                                        .where(ClonedVoice.created_by == user_id)))

    def remove_files(self, voice_ids: list[str]) -> None:
        """Files of voices whose rows are gone already (a forgotten user's, by cascade)."""
        for voice_id in voice_ids:
            shutil.rmtree(self.directory(voice_id), ignore_errors=True)
