"""A small HTTP API over the engine: chat with SSE streaming, stories, favourites, audio,
health and Prometheus metrics. Adapter only: every decision is the engine's.

Two kinds of key: the operator key (the variable named by ``[api] key_env``) acts for any
user (``user`` in the request) and alone may read metrics and manage keys; a user key
(``doppel api-token create``, ``POST /v1/tokens``) acts only for its own user, within its
scopes (``chat``; ``account`` to export or delete that user's data).
"""

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from bot.http.guard import DEFAULT_LIMIT, MB, HttpGuard, RowId, bearer
from bot.web import routes as web_routes
from bot.web.view import UPLOADS
from bot.web.wording import in_app
from engine.api import (
    DoppelError,
    Engine,
    FeatureUnavailable,
    InputError,
    NotAllowed,
    Picture,
    QueueFull,
    StoryRecord,
    StoryRequest,
    TokenInfo,
    UserNotFound,
    UserQueueFull,
    UserRef,
)

STORY_BODY = 72 * MB
"""``POST /v1/stories``: a story about a photo carries it as base64 (``photo_base64``)."""
USER_FIELD = ("Your id for the end user (operator key); a user key acts for its own user "
              "and may leave it out")


class Interact(BaseModel):
    user: str | None = Field(None, min_length=1, max_length=64, description=USER_FIELD)
    text: str = Field(min_length=1, description="At most [engine] max_message_chars "
                                                  "characters (the engine says so)")
    persona: str | None = None
    chat: str = Field("", max_length=100, description="Conversation scope, e.g. a room id")
    voice: bool = Field(False, description="Also return a voice note URL")


class CancelIn(BaseModel):
    user: str | None = Field(None, min_length=1, max_length=64, description=USER_FIELD)


class StoryIn(BaseModel):
    user: str | None = Field(None, min_length=1, max_length=64, description=USER_FIELD)
    genre: str = "adventure"
    characters: str = ""
    prompt: str = ""
    age_group: str = "6-8"
    language: str = "en"
    length: str = "short"
    sampling: str = "top_p"
    photo_base64: str | None = Field(None, max_length=70_000_000, description=(
        "A photo (JPEG or PNG, base64): the story is about what it shows; needs [vision]"))


class TokenIn(BaseModel):
    user: str = Field(min_length=1, max_length=100,
                      description="platform:id (telegram:42), or an API user's id")
    scopes: list[str] = Field(["chat"], description="chat, account")
    name: str = Field("", max_length=100)


@dataclass(frozen=True)
class Caller:
    """Who a request's key speaks for."""

    admin: bool
    user: UserRef | None = None
    scopes: frozenset[str] = frozenset()

    def acting_for(self, given: str | None, scope: str = "chat") -> UserRef:
        """The user this request acts for: the operator names one; a user key is its user,
        and naming anyone else is refused."""
        if self.admin:
            if not given:
                raise HTTPException(422, "name the user: the operator key acts for anyone")
            return UserRef.parse(given)
        assert self.user is not None
        if scope not in self.scopes:
            raise HTTPException(403, f"this key lacks the '{scope}' scope")
        if given and UserRef.parse(given) != UserRef(self.user.platform, self.user.user_id):
            raise HTTPException(403, "this key acts only for its own user")
        return self.user


async def identify(engine: Engine, operator_key: str, key: str) -> Caller | None:
    """Who an API key is: the operator, a user's key, or None."""
    if operator_key and hmac.compare_digest(key.encode(), operator_key.encode()):
        return Caller(admin=True)
    token = await engine.api_tokens.verify(key)
    return None if token is None else Caller(admin=False, user=token.user,
                                             scopes=token.scopes)


async def caller(request: Request) -> Caller:
    """The bearer key's caller (``Authorization: Bearer KEY``, exactly; identified once, by
    the guard when the request has a body); 401 without a valid key."""
    who = getattr(request.state, "caller", None)
    if who is None:
        key = bearer(request.headers.get("authorization", ""))
        who = (await identify(request.app.state.engine, request.app.state.api_key, key)
               if key else None)
    if who is None:
        raise HTTPException(401, "missing or wrong API key")
    assert isinstance(who, Caller)
    return who


def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.admin:
        raise HTTPException(403, "only the operator key may do this")
    return who


Auth = Annotated[Caller, Depends(caller)]
Admin = Annotated[Caller, Depends(admin)]


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _story_json(r: StoryRecord) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "content": r.content, "genre": r.genre,
            "age_group": r.age_group, "language": r.language, "length": r.length,
            "favourite": r.favourite, "created_at": r.created_at.isoformat()}


def _pictures_json(pictures: list[Picture], user: str | None) -> list[dict[str, Any]]:
    query = f"?{urlencode({'user': user})}" if user else ""
    return [{"position": p.position, "caption": p.caption, "source": p.source,
             "mime": p.mime, "url": f"/v1/stories/{p.story_id}/pictures/{p.position}{query}"}
            for p in pictures]


def create_app(engine: Engine, *, api: bool = True, web: bool = True,
               api_key: str = "") -> FastAPI:
    """The ASGI app for an engine that the caller starts and stops: ``/health`` always, the
    web app at ``/`` with ``web``, the API under ``/v1`` (and ``/metrics``) with ``api``;
    ``api_key``: the operator's (empty: user keys only)."""
    app = FastAPI(title="Doppel API", version="1", description=__doc__)
    app.state.api_key = api_key
    audio = int(engine.max_audio_mb * MB)

    def limit(path: str) -> int:
        if path in UPLOADS:
            return audio
        return STORY_BODY if path == "/v1/stories" else DEFAULT_LIMIT

    async def who(key: str) -> Caller | None:
        return await identify(engine, api_key, key)

    app.add_middleware(HttpGuard, limit=limit, identify=who if api else None)
    app.state.engine = engine

    @app.exception_handler(DoppelError)
    async def doppel_error(request: Request, exc: DoppelError) -> JSONResponse:
        if isinstance(exc, UserNotFound):
            return JSONResponse({"error": "nothing is stored about this user"}, status_code=404)
        status = (429 if isinstance(exc, QueueFull | UserQueueFull) else
                  403 if isinstance(exc, NotAllowed) else
                  # what the person asked for is wrong, or needs what is not set up here
                  400 if isinstance(exc, InputError | FeatureUnavailable) else 500)
        shown = (in_app(exc.user_message) if request.url.path.startswith("/web/") else
                 exc.user_message.replace("or /cancel them", "or cancel them: POST /v1/cancel"))
        return JSONResponse({"error": shown}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """Which field is wrong and why, without echoing what was sent (it may be huge)."""
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "error": e.get("msg")}
                  for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "details": errors}, status_code=422)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = engine.status()
        ok = status.started and not status.problem
        return JSONResponse({"ok": ok, "queues": status.queues,
                             **({"problem": status.problem} if status.problem else {})},
                            status_code=200 if ok else 503)

    if web:
        web_routes.install(app, engine)
    if api:
        _install_api(app, engine)
    return app


def _install_api(app: FastAPI, engine: Engine) -> None:
    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(_: Admin) -> str:
        status = engine.status()
        lines = ["# TYPE doppel_queue_depth gauge", "# TYPE doppel_running gauge"]
        for res, s in status.queues.items():
            lines.append(f'doppel_queue_depth{{resource="{res}"}} {s["queued"]}')
            lines.append(f'doppel_running{{resource="{res}"}} {s["running"]}')
        lines += ["# TYPE doppel_jobs_total counter",
                  "# TYPE doppel_job_wait_seconds_sum counter",
                  "# TYPE doppel_job_run_seconds_sum counter"]
        for kind, m in status.kinds.items():
            for state, n in m.by_state.items():
                lines.append(f'doppel_jobs_total{{kind="{kind}",state="{state}"}} {n}')
            lines.append(f'doppel_job_wait_seconds_sum{{kind="{kind}"}} {m.wait_s:.6f}')
            lines.append(f'doppel_job_run_seconds_sum{{kind="{kind}"}} {m.run_s:.6f}')
        lines += ["# TYPE doppel_generated_tokens_total counter",
                  f"doppel_generated_tokens_total {status.generated_tokens}",
                  "# TYPE doppel_tokens_per_second gauge",
                  f"doppel_tokens_per_second {status.tokens_per_s:.3f}"]
        return "\n".join(lines) + "\n"

    @app.post("/v1/interact")
    async def interact(body: Interact, who: Auth) -> StreamingResponse:
        """Server-sent events: ``chunk`` events with text, then one ``done`` event."""
        user = who.acting_for(body.user)
        reply = await engine.chat(user, body.text, chat_key=body.chat, persona=body.persona)

        async def events() -> AsyncIterator[str]:
            try:
                async for piece in reply:
                    yield _sse("chunk", {"text": piece})
            finally:  # the client went away mid-reply: it stops (the rest is not wanted)
                if not reply.job.state.finished:
                    engine.abandon(reply)
            result = await reply.result()
            done: dict[str, Any] = {
                "status": result.status, "message_id": result.message_id,
                "text": result.text, "grounded": result.grounded,
                "disclosure": reply.disclosure or None,
                "sources": [h.citation(n) for n, h in enumerate(result.sources, 1)],
                "error": result.error.user_message if result.error else None,
            }
            if body.voice and result.text.strip():
                # One audio URL at the end: the text already streamed, so there is nothing
                # to gain from pipelining here.
                try:
                    note = await engine.speak(result.text, user=user, persona=reply.persona)
                except DoppelError as exc:
                    done["audio_error"] = exc.user_message
                else:
                    folder = engine.user_files(user)
                    name = f"{uuid.uuid4().hex}.ogg"
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(note.ogg)
                    done["audio_url"] = f"/v1/audio/{folder.name}/{name}"
                    done["audio_duration_s"] = round(note.duration_s, 2)
            yield _sse("done", done)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/cancel")
    async def cancel(who: Auth, body: CancelIn | None = None) -> dict[str, Any]:
        """Stop the user's queued and running requests (as /cancel in the bots)."""
        return {"cancelled": engine.cancel(who.acting_for(body.user if body else None))}

    @app.get("/v1/audio/{owner}/{name}")
    async def audio(owner: str, name: str, who: Auth) -> Response:
        if not owner.isalnum() or not name.removesuffix(".ogg").isalnum() \
                or not name.endswith(".ogg"):
            raise HTTPException(404, "no such audio")
        if not who.admin and owner != engine.user_files(who.acting_for(None)).name:
            raise HTTPException(404, "no such audio")  # another user's: as if not there
        path = engine.stored_file(owner, name)
        if path is None:
            raise HTTPException(404, "no such audio")
        return Response(path.read_bytes(), media_type="audio/ogg")

    @app.get("/v1/export")
    async def export(who: Auth, user: str | None = None) -> Response:
        """A zip of everything stored about ``user`` (a user key: its own user)."""
        return Response(await engine.export(who.acting_for(user, "account")),
                        media_type="application/zip", headers={
                            "Content-Disposition": 'attachment; filename="doppel-export.zip"'})

    @app.delete("/v1/users/{user}")
    async def forget(user: str, who: Auth, confirm: bool = False) -> dict[str, Any]:
        """Delete everything stored about ``user`` (``?confirm=true`` required); a user
        key may delete only its own user (and with it, itself)."""
        target = who.acting_for(user, "account")
        if not confirm:
            raise HTTPException(400, "add ?confirm=true: this deletes everything about the "
                                     "user")
        return {"forgotten": await engine.forget(target)}

    @app.post("/v1/stories")
    async def create_story(body: StoryIn, who: Auth) -> dict[str, Any]:
        fields = body.model_dump(exclude={"user", "sampling", "photo_base64"})
        user = who.acting_for(body.user)
        photo = None
        if body.photo_base64 is not None:
            try:
                photo = base64.b64decode(body.photo_base64, validate=True)
            except binascii.Error:
                raise InputError("bad base64", user_message="photo_base64 is not base64.") \
                    from None
        reply = await engine.stories.create(user, StoryRequest(**fields, preset=body.sampling),
                                            photo=photo)
        record = await reply.result()
        pictures = await engine.pictures.illustrate(user, record)
        return {**_story_json(record), "pictures": _pictures_json(pictures, body.user)}

    @app.get("/v1/stories/{story_id}/pictures")
    async def story_pictures(story_id: RowId, who: Auth,
                             user: str | None = None) -> dict[str, Any]:
        """A story's pictures (drawn now if it has none yet), cover first, with URLs."""
        acting = who.acting_for(user)
        record = await engine.stories.open(acting, story_id)
        return {"pictures": _pictures_json(await engine.pictures.illustrate(acting, record),
                                           user)}

    @app.get("/v1/stories/{story_id}/pictures/{position}")
    async def story_picture(story_id: RowId, position: RowId, who: Auth,
                            user: str | None = None) -> Response:
        for pic in await engine.pictures.of_story(who.acting_for(user), story_id):
            if pic.position == position:
                return Response(pic.data, media_type=pic.mime)
        raise HTTPException(404, "no such picture")  # another user's: as if not there

    @app.get("/v1/stories")
    async def stories(who: Auth, user: str | None = None, search: str = "") -> dict[str, Any]:
        groups = await engine.stories.history(who.acting_for(user), search=search)
        return {"groups": [{"label": label, "stories": [_story_json(r) for r in records]}
                           for label, records in groups]}

    @app.post("/v1/stories/{story_id}/favourite")
    async def favourite(story_id: RowId, who: Auth, user: str | None = None,
                        on: bool = True) -> dict[str, Any]:
        return _story_json(await engine.stories.favourite(who.acting_for(user), story_id, on))

    @app.get("/v1/favourites")
    async def favourites(who: Auth, user: str | None = None) -> dict[str, Any]:
        return {"stories": [_story_json(r) for r in
                            await engine.stories.favourites(who.acting_for(user))]}

    @app.post("/v1/tokens")
    async def create_token(body: TokenIn, _: Admin) -> dict[str, Any]:
        """A key for one user; its ``secret`` is shown here once and never again."""
        info, secret = await engine.api_tokens.create(UserRef.parse(body.user), body.scopes,
                                                      body.name)
        return {**_token_json(info), "secret": secret}

    @app.get("/v1/tokens")
    async def tokens(_: Admin) -> dict[str, Any]:
        return {"tokens": [_token_json(t) for t in await engine.api_tokens.list()]}

    @app.delete("/v1/tokens/{token_id}")
    async def revoke(token_id: RowId, _: Admin) -> dict[str, Any]:
        if not await engine.api_tokens.revoke(token_id):
            raise HTTPException(404, "no such key")
        return {"revoked": token_id}


def _token_json(t: TokenInfo) -> dict[str, Any]:
    return {"id": t.id, "user": t.user.key, "scopes": sorted(t.scopes), "name": t.name,
            "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}
