"""The web app's pages and its JSON/SSE API (``/web/api``), for browsers signed in with a
one-time link. Adapter only: the same engine calls and the same turn driver as the bots;
every request acts for the session's own user and nobody else.

Sessions are an HttpOnly, SameSite=Lax cookie (Secure over HTTPS); requests that change
anything must also carry ``X-Doppel: web``, which a page on another site cannot add
without the server's consent, so a signed-in browser cannot be made to act elsewhere.
"""


import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from bot.actions import Press, press
from bot.http.guard import RowId
from bot.turn import chat_turn, story_turn
from bot.web import call, voices
from bot.web.view import WebTurnView, recording
from bot.web.wording import in_app
from engine.api import (
    AGE_GROUPS,
    GENRES,
    LANGUAGES,
    LENGTHS,
    ChatResult,
    DoppelError,
    Engine,
    InputError,
    SourceCard,
    StoredMessage,
    StoryRecord,
    StoryRequest,
    UserRef,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "doppel_session"
SORRY = "Sorry, something went wrong on my side. Please try again."
LINK_GONE = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Doppel: sign-in link</title><link rel="stylesheet" href="/static/style.css">
<main class="signin"><h1>This sign-in link has expired or was already used</h1>
<p>Send <code>/web</code> to the bot (in Telegram or Discord) for a new one.</p></main>
</html>"""


SIGN_IN = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Doppel: sign in</title><link rel="stylesheet" href="/static/style.css">
<main class="signin"><h1>Sign in to Doppel as {who}?</h1>
<p>This link works once. Sign in only if you asked for it (with <code>/web</code>).</p>
<form method="post" action="/login/{token}"><button class="primary" autofocus>Sign in</button>
</form></main></html>"""


class ChatIn(BaseModel):
    text: str = Field("", max_length=20_000)
    again: bool = Field(False, description="Answer the last message again (🔁)")
    go_on: bool = Field(False, description="Continue the last reply (⏩)")


class StoryIn(BaseModel):
    genre: str = Field("adventure", max_length=100)
    characters: str = Field("", max_length=500)
    prompt: str = Field("", max_length=500)
    age_group: str = Field("6-8", max_length=10)
    language: str = Field("en", max_length=20)
    length: str = Field("short", max_length=10)

    def request(self) -> StoryRequest:
        return StoryRequest(genre=self.genre, characters=self.characters, prompt=self.prompt,
                            age_group=self.age_group, language=self.language,
                            length=self.length)


class SavedPromptIn(StoryIn):
    name: str = Field(min_length=1, max_length=60)


class GenreIn(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    description: str = Field("", max_length=300)


class RateIn(BaseModel):
    target: str = Field(max_length=40, description="reply:ID or story:ID")
    good: bool


class SettingsIn(BaseModel):
    reply_mode: str | None = None
    timezone: str | None = None
    persona: str | None = None


class ConfirmIn(BaseModel):
    confirm: bool = False


def story_json(r: StoryRecord) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "content": r.content, "genre": r.genre,
            "characters": r.characters, "prompt": r.prompt, "age_group": r.age_group,
            "language": r.language, "length": r.length, "favourite": r.favourite,
            "created_at": r.created_at.isoformat()}


def result_json(result: ChatResult) -> dict[str, Any]:
    """A finished reply for the page: its text and its sources as cards."""
    return {"status": result.status, "message_id": result.message_id, "text": result.text,
            "truncated": result.truncated,
            "error": result.error.user_message if result.error else None,
            "sources": [asdict(c) for c in SourceCard.all_of(result.sources)]}


def message_json(m: StoredMessage) -> dict[str, Any]:
    """A stored message for the page: a reply comes back with what was shown beside it."""
    return {"id": m.id, "role": m.role, "content": m.content, "status": m.status,
            "created_at": m.created_at.isoformat(), "disclosure": in_app(m.disclosure),
            "sources": [asdict(c) for c in m.sources]}


def install(app: FastAPI, engine: Engine) -> None:
    """Add the web app to ``app``: ``/``, ``/login/{token}``, ``/static`` and ``/web/api``."""

    async def signed_in(request: Request) -> UserRef:
        user = await engine.web.user(request.cookies.get(COOKIE, ""))
        if user is None:
            raise HTTPException(401, "Sign in first: send /web to the bot for a link.")
        if request.method not in ("GET", "HEAD") and request.headers.get("x-doppel") != "web":
            raise HTTPException(403, "This request did not come from the web app.")
        return user

    Me = Annotated[UserRef, Depends(signed_in)]
    voices.install(app, engine, signed_in)

    def turn(user: UserRef, drive: Callable[[WebTurnView], Awaitable[Any]],
             after: Callable[[WebTurnView, Any], None] | None = None) -> StreamingResponse:
        """Run a turn for ``user`` and stream what it shows. It runs to its end even if
        the browser goes away (the reply is stored either way)."""
        view = WebTurnView(engine.user_files(user))

        async def run() -> None:
            try:
                out = await drive(view)
                if after is not None:
                    after(view, out)
            except DoppelError as exc:
                view.send("error", {"message": exc.user_message})
            except Exception:
                log.exception("web turn for %s failed", user.key)
                view.send("error", {"message": SORRY})
            finally:
                view.close()

        task = asyncio.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return StreamingResponse(view.stream(), media_type="text/event-stream")

    tasks: set[asyncio.Task[None]] = set()

    # -- pages ------------------------------------------------------------------------------

    def page(name: str, media_type: str | None = None) -> FileResponse:
        return FileResponse(STATIC / name, media_type=media_type,
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return page("index.html")

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker() -> FileResponse:
        return page("sw.js", "text/javascript")

    @app.get("/manifest.webmanifest", include_in_schema=False)
    async def manifest() -> FileResponse:
        return page("manifest.webmanifest", "application/manifest+json")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    call.install(app, engine, COOKIE)

    @app.get("/login/{token}", include_in_schema=False)
    async def login_page(token: str) -> HTMLResponse:
        """The link only shows a button: link previews and scanners that open links
        (Discord's, a mail filter's) must not use up a one-time link."""
        user = await engine.web.peek(token) if len(token) < 100 else None
        if user is None:
            return HTMLResponse(LINK_GONE, status_code=400)
        who = html.escape(user.display_name or user.key)
        return HTMLResponse(SIGN_IN.format(who=who, token=html.escape(token)))

    @app.post("/login/{token}", include_in_schema=False)
    async def login(token: str, request: Request) -> Response:
        origin = request.headers.get("origin")
        here = f"{request.url.scheme}://{request.url.netloc}"
        if origin is not None and not engine.web.trusted(origin, here):
            raise HTTPException(403, "Sign in from the link's own page.")
        signed = await engine.web.redeem(token) if len(token) < 100 else None
        if signed is None:
            return HTMLResponse(LINK_GONE, status_code=400)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, signed.session, httponly=True, samesite="lax",
                            secure=engine.web.secure, path="/",
                            max_age=engine.web.session_days * 86400)
        return response

    # -- who --------------------------------------------------------------------------------

    @app.get("/web/api/me")
    async def me(user: Me) -> dict[str, Any]:
        persona = await engine.current_persona(user)
        return {"user": user.key, "name": user.display_name or user.user_id,
                "persona": persona_json(persona.name),
                "personas": [persona_json(p.name) for p in engine.visible_personas(user)],
                "reply_mode": await engine.reply_mode(user),
                "admin": engine.is_operator(user),
                "timezone": await engine.stories.timezone(user)}

    def persona_json(name: str) -> dict[str, Any]:
        p = engine.persona(name)
        return {"name": p.name, "display_name": p.display_name,
                "description": p.profile.description,
                "avatar": f"/web/api/avatar/{p.name}" if p.profile.avatar else None}

    @app.get("/web/api/avatar/{name}")
    async def avatar(name: str, user: Me) -> FileResponse:
        p = engine.persona(name)
        if p.profile.avatar is None or p not in engine.visible_personas(user):
            raise HTTPException(404, "no picture")
        return FileResponse(p.profile.avatar, headers={"Cache-Control": "max-age=86400"})

    @app.post("/web/api/logout")
    async def logout(request: Request, user: Me) -> Response:
        await engine.web.sign_out(request.cookies.get(COOKIE, ""))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.post("/web/api/settings")
    async def settings(body: SettingsIn, user: Me) -> dict[str, Any]:
        if body.reply_mode is not None:
            await engine.set_reply_mode(user, body.reply_mode)
        if body.timezone is not None:
            await engine.stories.set_timezone(user, body.timezone)
        if body.persona is not None:
            await engine.set_persona(user, body.persona)
        return await me(user)

    # -- chat -------------------------------------------------------------------------------

    @app.get("/web/api/history")
    async def history(user: Me) -> dict[str, Any]:
        return {"messages": [message_json(m) for m in await engine.history(user, limit=200)
                             if m.role in ("user", "assistant") and m.content]}

    @app.post("/web/api/chat")
    async def chat(body: ChatIn, user: Me) -> StreamingResponse:
        """Server-sent events from the turn driver, then ``result``: the reply's text and
        its sources. ``again`` (🔁) and ``go_on`` (⏩) are the bots' buttons."""

        async def drive(view: WebTurnView) -> ChatResult | None:
            if body.again or body.go_on:
                return await press(engine, view, Press(user, "regen" if body.again
                                                       else "continue"))
            return await chat_turn(engine, view, user, body.text)

        def after(view: WebTurnView, result: ChatResult | None) -> None:
            if result is not None:
                view.send("result", result_json(result))

        return turn(user, drive, after)

    async def pressed(user: UserRef, action: str, value: str = "") -> WebTurnView:
        """A button of the page, as the bots' (``bot.actions``); what it showed."""
        view = WebTurnView(engine.user_files(user))
        await press(engine, view, Press(user, action, value))
        return view

    @app.post("/web/api/voice")
    async def voice_note(request: Request, user: Me) -> StreamingResponse:
        """A voice note recorded in the browser: transcribed (``heard``), then answered in
        voice as a voice note is in the bots."""
        audio = await recording(request)

        async def drive(view: WebTurnView) -> ChatResult:
            heard = await engine.transcribe(audio, user=user)
            view.send("heard", {"text": heard})
            return await chat_turn(engine, view, user, heard, spoken=True)

        def after(view: WebTurnView, result: ChatResult) -> None:
            view.send("result", result_json(result))

        return turn(user, drive, after)

    @app.post("/web/api/say")
    async def say(user: Me) -> dict[str, Any]:
        """🔊: the last reply as a voice note."""
        return (await pressed(user, "say")).voices[0]

    @app.get("/web/api/audio/{name}")
    async def audio(name: str, user: Me) -> FileResponse:
        if not name.endswith(".ogg") or not name.removesuffix(".ogg").isalnum():
            raise HTTPException(404, "no such audio")
        path = engine.user_files(user) / name
        if not path.is_file():
            raise HTTPException(404, "no such audio")  # another user's is not there
        return FileResponse(path, media_type="audio/ogg")

    @app.post("/web/api/messages/{message_id}/favourite")
    async def favourite_message(message_id: RowId, user: Me) -> dict[str, Any]:
        view = await pressed(user, "favmsg", str(message_id))
        return {"id": message_id, "notice": view.notices[-1]}

    @app.post("/web/api/rate")
    async def rate(body: RateIn, user: Me) -> dict[str, Any]:
        view = await pressed(user, "good" if body.good else "bad", body.target)
        return {"rated": body.target, "good": body.good, "notice": view.notices[-1]}

    # -- stories ----------------------------------------------------------------------------

    @app.get("/web/api/stories/options")
    async def story_options(user: Me) -> dict[str, Any]:
        custom = await engine.stories.genres(user)
        return {"genres": list(GENRES), "custom_genres": [
                    {"name": g.name, "description": g.description} for g in custom],
                "age_groups": list(AGE_GROUPS), "languages": LANGUAGES,
                "lengths": list(LENGTHS),
                "saved_prompts": [{"name": name, **{k: getattr(r, k) for k in (
                    "genre", "characters", "prompt", "age_group", "language", "length")}}
                    for name, r in await engine.stories.saved_prompts(user)]}

    @app.get("/web/api/stories/ideas")
    async def ideas(user: Me, genre: str = "adventure", language: str = "en",
                    age_group: str = "6-8", more: bool = False) -> dict[str, Any]:
        return {"ideas": await engine.stories.suggestions(user, genre, language, age_group,
                                                          refresh=more)}

    @app.post("/web/api/stories")
    async def write_story(body: StoryIn, user: Me) -> StreamingResponse:
        """Server-sent events as the story is written, then ``story``: the stored story."""

        def after(view: WebTurnView, record: StoryRecord | None) -> None:
            if record is not None:
                view.send("story", story_json(record))

        return turn(user, lambda view: story_turn(engine, view, user, body.request()), after)

    @app.get("/web/api/stories")
    async def stories(user: Me, search: str = "") -> dict[str, Any]:
        groups = await engine.stories.history(user, search=search)
        return {"groups": [{"label": label, "stories": [story_json(r) for r in records]}
                           for label, records in groups]}

    @app.delete("/web/api/stories")
    async def clear_stories(user: Me, confirm: bool = False) -> dict[str, Any]:
        return {"cleared": await engine.stories.clear_history(user, confirm=confirm)}

    @app.get("/web/api/stories/{story_id}")
    async def story(story_id: RowId, user: Me) -> dict[str, Any]:
        record = await engine.stories.open(user, story_id)
        pictures = await engine.pictures.of_story(user, story_id)
        return {**story_json(record), "pictures": [
            {"url": f"/web/api/stories/{p.story_id}/pictures/{p.position}",
             "caption": p.caption} for p in pictures]}

    @app.get("/web/api/stories/{story_id}/pictures/{position}")
    async def picture(story_id: RowId, position: RowId, user: Me) -> Response:
        for pic in await engine.pictures.of_story(user, story_id):
            if pic.position == position:
                return Response(pic.data, media_type=pic.mime)
        raise HTTPException(404, "no such picture")

    @app.post("/web/api/stories/{story_id}/favourite")
    async def favourite(story_id: RowId, user: Me, on: bool = True) -> dict[str, Any]:
        return story_json(await engine.stories.favourite(user, story_id, on))

    @app.get("/web/api/favourites")
    async def favourites(user: Me) -> dict[str, Any]:
        return {"stories": [story_json(r) for r in await engine.stories.favourites(user)]}

    @app.post("/web/api/stories/{story_id}/narrate")
    async def narrate(story_id: RowId, user: Me) -> dict[str, Any]:
        return {"parts": (await pressed(user, "narrate", str(story_id))).voices}

    @app.post("/web/api/prompts")
    async def save_prompt(body: SavedPromptIn, user: Me) -> dict[str, Any]:
        await engine.stories.save_prompt(user, body.name, body.request())
        return await story_options(user)

    @app.delete("/web/api/prompts/{name}")
    async def delete_prompt(name: str, user: Me) -> dict[str, Any]:
        await engine.stories.delete_prompt(user, name)
        return await story_options(user)

    @app.post("/web/api/genres")
    async def add_genre(body: GenreIn, user: Me) -> dict[str, Any]:
        await engine.stories.add_genre(user, body.name, body.description)
        return await story_options(user)

    @app.delete("/web/api/genres/{name}")
    async def remove_genre(name: str, user: Me) -> dict[str, Any]:
        await engine.stories.remove_genre(user, name)
        return await story_options(user)

    # -- the dashboard ----------------------------------------------------------------------

    @app.get("/web/api/dashboard")
    async def dashboard(user: Me) -> dict[str, Any]:
        d = await engine.achievements.dashboard(user)
        return {"stories": d.stories, "messages": d.messages, "favourites": d.favourites,
                "favourite_genres": [{"genre": g, "stories": n} for g, n in d.favourite_genres],
                "listened_s": round(d.listened_s, 1), "streak_days": d.streak_days,
                "best_streak_days": d.best_streak_days,
                "achievements": [{"key": a.key, "title": a.title,
                                  "description": a.description,
                                  "earned": a.earned.isoformat() if a.earned else None}
                                 for a in d.achievements]}

    # -- the operator -----------------------------------------------------------------------

    @app.get("/web/api/admin")
    async def admin(user: Me) -> dict[str, Any]:
        """Personas, their cloned voices (with the consent recorded), the queues and the
        model: for ``[engine] admins`` only."""
        if not engine.is_operator(user):
            raise HTTPException(403, "Only the operator ([engine] admins) sees this page.")
        status = engine.status()
        personas = []
        for p in engine.personas.all():
            building = status.building.get(p.name)
            personas.append({
                **persona_json(p.name), "private": p.profile.owner_only,
                "memory": f"{building}% built" if building is not None else "ready",
                "voices": [{"id": v.id, "name": v.name, "consent": v.consent_speaker,
                            "consent_at": v.consent_at.isoformat(), "clips": v.clips,
                            "seconds": round(v.seconds, 1), "active": v.active}
                           for v in await engine.voices.list(p)]})
        return {"personas": personas, "queues": status.queues, "model": status.model,
                "tokens_per_s": round(status.tokens_per_s, 1)}

    # -- the account ------------------------------------------------------------------------

    @app.get("/web/api/export")
    async def export(user: Me) -> Response:
        return Response(await engine.export(user), media_type="application/zip", headers={
            "Content-Disposition": 'attachment; filename="doppel-export.zip"'})

    @app.post("/web/api/forget")
    async def forget(body: ConfirmIn, user: Me) -> Response:
        if not body.confirm:
            raise InputError("forget unconfirmed", user_message=(
                "Confirm first: this deletes everything about you."))
        await engine.forget(user)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response
