"""``/export``: everything Doppel stores about one user, as a zip they can keep.

``doppel-export.json`` holds the user, their settings, conversations with every message,
what they told each persona about themselves (memories), their 👍/👎 (ratings), stories
(each with the list of its pictures), favourites, saved prompts, custom genres and the
voices they cloned (with the consent recorded); ``pictures/`` holds the stories' pictures
and ``voices/<id>/`` the voices' clips. Every query is scoped to the one user's id.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.images.service import Picture
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import (
    ClonedVoice,
    Conversation,
    CustomGenre,
    Favourite,
    Message,
    PersonaRecord,
    Rating,
    SavedPrompt,
    Story,
    StoryPicture,
    User,
    UserMemory,
    UserSetting,
)

FORMAT = "doppel-export/1"


def _row(obj: Any, *skip: str) -> dict[str, Any]:
    out = {}
    for column in obj.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(obj, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def user_data(session: AsyncSession, user_id: int | None,
                    pictures: list[Picture]) -> dict[str, Any]:
    """The user's rows, grouped by kind (the JSON part of the export; ``pictures``: their
    stories' pictures, loaded once for this list and the zip); all empty for a user Doppel
    has nothing about."""
    user = await session.get(User, user_id) if user_id is not None else None
    if user is None:
        return {"format": FORMAT, "user": None, **{k: [] for k in (
            "settings", "conversations", "memories", "ratings", "stories", "favourites",
            "saved_prompts", "custom_genres", "voices")}}
    conversations = []
    for conv, persona in (await session.execute(
            select(Conversation, PersonaRecord.name).join(PersonaRecord)
            .where(Conversation.user_id == user_id).order_by(Conversation.id))).all():
        messages = (await session.scalars(select(Message).where(
            Message.conversation_id == conv.id).order_by(Message.id))).all()
        conversations.append({**_row(conv, "user_id", "persona_id"), "persona": persona,
                              "messages": [_row(m, "conversation_id") for m in messages]})

    async def rows(model: Any, column: Any, *skip: str) -> list[dict[str, Any]]:
        found = (await session.scalars(select(model).where(column == user_id))).all()
        return [_row(r, *skip) for r in found]

    stories = await rows(Story, Story.user_id, "user_id")
    drawn: dict[int, list[dict[str, Any]]] = {}
    for pic in pictures:
        drawn.setdefault(pic.story_id, []).append(
            {"position": pic.position, "caption": pic.caption, "source": pic.source,
             "file": f"pictures/{pic.filename}"})
    for story in stories:
        story["pictures"] = drawn.get(story["id"], [])
    return {
        "format": FORMAT,
        "user": _row(user),
        "settings": await rows(UserSetting, UserSetting.user_id, "user_id"),
        "conversations": conversations,
        "memories": await rows(UserMemory, UserMemory.user_id, "user_id"),
        "ratings": await rows(Rating, Rating.user_id, "user_id"),
        "stories": stories,
        "favourites": await rows(Favourite, Favourite.user_id, "user_id"),
        "saved_prompts": await rows(SavedPrompt, SavedPrompt.user_id, "user_id"),
        "custom_genres": await rows(CustomGenre, CustomGenre.user_id, "user_id"),
        "voices": await rows(ClonedVoice, ClonedVoice.created_by, "created_by"),
    }


async def _pictures(session: AsyncSession, user_id: int | None) -> list[Picture]:
    found = (await session.scalars(
        select(StoryPicture).join(Story, Story.id == StoryPicture.story_id)
        .where(Story.user_id == user_id)
        .order_by(StoryPicture.story_id, StoryPicture.position))).all()
    return [Picture.of(r) for r in found]


@dataclass(frozen=True)
class PersonaFace:
    """A persona as the export names and shows it."""

    name: str
    display_name: str
    avatar: Path | None


def _personas(data: dict[str, Any], faces: Sequence[PersonaFace]) -> list[dict[str, Any]]:
    """The personas the user talked to or told things, with their avatars' files."""
    used = {c["persona"] for c in data["conversations"]} | {
        m["persona"] for m in data["memories"]}
    return [{"name": f.name, "display_name": f.display_name,
             "avatar": f"personas/{f.name}/{f.avatar.name}" if f.avatar else None}
            for f in faces if f.name in used]


def _kept(files: Path | None) -> list[Path]:
    """The plain files kept in a user's folder (no links: nothing outside it is read)."""
    if files is None or not files.is_dir():
        return []
    return sorted(p for p in files.iterdir() if p.is_file() and not p.is_symlink())


async def export_user(db: Database, user_id: int | None, voices_dir: Path,
                      user: UserRef, faces: Sequence[PersonaFace] = (),
                      files: Path | None = None) -> bytes:
    """The zip: ``doppel-export.json`` plus the stories' pictures, the avatars of the
    personas the user talked to, the clips of the voices the user cloned, and the files
    kept for them (``files``: the voice notes the web app and the API made)."""
    async with db.session() as s:
        pictures = await _pictures(s, user_id)
        data = await user_data(s, user_id, pictures)
    data["personas"] = _personas(data, faces)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("doppel-export.json", json.dumps(data, ensure_ascii=False, indent=2))
        for pic in pictures:
            z.writestr(f"pictures/{pic.filename}", pic.data)
        for face in faces:
            if face.avatar is not None and any(p["name"] == face.name
                                               for p in data["personas"]):
                z.write(face.avatar, f"personas/{face.name}/{face.avatar.name}")
        for voice in data["voices"]:
            for clip in sorted((voices_dir / voice["id"]).glob("clip-*.wav")):
                z.write(clip, f"voices/{voice['id']}/{clip.name}")
        for kept in _kept(files):
            z.write(kept, f"voice-notes/{kept.name}")
        z.writestr("README.txt", f"Everything Doppel stores about {user.key}, exported "
                                 "on request. doppel-export.json holds the data; pictures/ "
                                 "the pictures of your stories; personas/ the pictures of "
                                 "the personas you talked to; voices/ the clips of voices "
                                 "you cloned; voice-notes/ the voice notes made for you.\n")
    return out.getvalue()
