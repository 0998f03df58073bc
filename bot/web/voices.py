"""The web app's cloned voices (``/web/api/voices``): list, use and delete the voices of
the personas a person manages, and clone a new one from clips recorded or chosen in the
browser. Adapter only: the engine's cloning flow (``engine.voices``) with its checks,
consent and sample, one step per request as in the bots (begin, clips, consent).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field

from bot.web.view import keep_audio, recording
from engine.api import CLONING_NEEDS_XTTS, Engine, InputError, UserRef, VoiceRecord


class CloneIn(BaseModel):
    persona: str = Field(max_length=100)
    name: str = Field(max_length=100)


class ConsentIn(BaseModel):
    speaker: str = Field("", max_length=200, description="who is heard in the clips")
    agreed: bool = Field(False, description="they agreed to have their voice cloned")


def voice_json(v: VoiceRecord) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "consent": v.consent_speaker,
            "consent_at": v.consent_at.isoformat(), "clips": v.clips,
            "seconds": round(v.seconds, 1), "active": v.active}


def install(app: FastAPI, engine: Engine,
            signed_in: Callable[[Request], Awaitable[UserRef]]) -> None:
    Me = Annotated[UserRef, Depends(signed_in)]

    @app.get("/web/api/voices")
    async def voices(user: Me) -> dict[str, Any]:
        """The personas this person manages, with their voices."""
        managed = [p for p in engine.personas.all() if engine.may_manage(user, p)]
        draft = engine.voices.draft(user)
        return {"available": engine.voices.available,
                "why": None if engine.voices.available else CLONING_NEEDS_XTTS,
                "draft": None if draft is None else {
                    "persona": draft.persona.name, "name": draft.name,
                    "clips": len(draft.clips), "seconds": round(draft.seconds, 1)},
                "personas": [{"name": p.name, "display_name": p.display_name,
                              "voices": [voice_json(v) for v in await engine.voices.list(p)]}
                             for p in managed]}

    @app.post("/web/api/voices/clone")
    async def begin(body: CloneIn, user: Me) -> dict[str, Any]:
        draft = engine.voices.begin(user, engine.persona(body.persona), body.name)
        return {"persona": draft.persona.name, "name": draft.name, "clips": 0}

    @app.post("/web/api/voices/clone/clips")
    async def add_clip(request: Request, user: Me) -> dict[str, Any]:
        """One clip (the request's body: audio as recorded or a file)."""
        draft = await engine.voices.add_clip(user, await recording(request))
        return {"clips": len(draft.clips), "seconds": round(draft.seconds, 1)}

    @app.post("/web/api/voices/clone/finish")
    async def finish(body: ConsentIn, user: Me) -> dict[str, Any]:
        if not body.agreed:
            raise InputError("no consent", user_message=(
                "Confirm that the person heard in the clips agreed to have their voice "
                "cloned."))
        done = await engine.voices.finish(user, body.speaker)
        return {"voice": voice_json(done.voice),
                "sample": keep_audio(engine.user_files(user), done.sample)}

    @app.delete("/web/api/voices/clone")
    async def cancel(user: Me) -> dict[str, Any]:
        return {"cancelled": engine.voices.cancel(user)}

    @app.post("/web/api/voices/{voice_id}/use")
    async def use(voice_id: str, user: Me) -> dict[str, Any]:
        return voice_json(await engine.voices.use(user, voice_id))

    @app.delete("/web/api/voices/{voice_id}")
    async def delete(voice_id: str, user: Me) -> dict[str, Any]:
        return voice_json(await engine.voices.delete(user, voice_id))
