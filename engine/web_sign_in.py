"""Signing in to the web app without a password: a bot (``/web``) or the operator
(``doppel web-login USER``) issues a one-time link for a user; opening it starts a browser
session as that same user (history, stories, favourites and voices are the ones the bots
know). Only hashes of links and session cookies are stored; a link works once and for
``[web] link_minutes``; a session lasts ``[web] session_days`` after its last use, and
ends at sign-out or with ``/forget``."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.config import Config
from engine.conversations import ConversationStore
from engine.errors import InputError
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import User, WebLogin, WebSession, utcnow


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ref(user: User) -> UserRef:
    return UserRef(user.platform, user.platform_user_id, user.display_name)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SignedIn:
    user: UserRef
    session: str
    """The cookie's value (shown to the browser once; only its hash is kept)."""


class WebSignIn:
    def __init__(self, db: Database, users: ConversationStore, config: Config) -> None:
        self.db = db
        self.users = users
        self.config = config.web
        self.base_url = config.web.public_url.rstrip("/")
        """Where the web app is opened (``[web] public_url``, else where it listens, once
        it does; empty: it is not served by this process)."""
        self.secure = self.base_url.startswith("https://")
        """Cookies go only over HTTPS when the app is served over HTTPS."""
        self._watched: dict[asyncio.Event, tuple[str, str]] = {}
        """What runs on a session (a call), each its own event: -> (session hash, user)."""

    @property
    def link_minutes(self) -> int:
        """A sign-in link works once, for this long."""
        return self.config.link_minutes

    @property
    def session_days(self) -> int:
        """A browser stays signed in this long after its last visit."""
        return self.config.session_days

    def serving_at(self, url: str) -> None:
        """The web app listens at ``url`` (the port chosen when ``[api] port`` is 0): links
        name it unless ``[web] public_url`` says where people open it."""
        if not self.config.public_url:
            self.base_url = url.rstrip("/")
            self.secure = self.base_url.startswith("https://")

    async def link(self, user: UserRef) -> str:
        """A one-time sign-in link for ``user`` (their account is made if it is new)."""
        if not self.base_url:
            raise InputError("web app off", user_message=(
                "The web app is not running here: its operator turned it off."))
        token = secrets.token_urlsafe(24)
        uid = await self.users.user_id(user)
        async with self.db.session() as s, s.begin():
            s.add(WebLogin(user_id=uid, token_hash=_hash(token), expires_at=utcnow()
                           + timedelta(minutes=self.config.link_minutes)))
        return f"{self.base_url}/login/{token}"

    async def _live(self, s: AsyncSession, token: str,
                    now: datetime) -> tuple[WebLogin, User] | None:
        """The link and its user while it still works (unused, not expired)."""
        found = (await s.execute(select(WebLogin, User).join(User).where(
            WebLogin.token_hash == _hash(token)))).first()
        if found is None:
            return None
        login, user = found
        if login.used_at is not None or _aware(login.expires_at) <= now:
            return None
        return login, user

    async def peek(self, token: str) -> UserRef | None:
        """Whose link this is, if it still works (it stays unused)."""
        async with self.db.session() as s:
            live = await self._live(s, token, utcnow())
        return _ref(live[1]) if live is not None else None

    async def redeem(self, token: str) -> SignedIn | None:
        """A new session for the link's user, once; None for a used, old or wrong link."""
        now = utcnow()
        async with self.db.session() as s, s.begin():
            live = await self._live(s, token, now)
            if live is None:
                return None
            login, user = live
            claimed = await s.execute(update(WebLogin).where(
                WebLogin.id == login.id, WebLogin.used_at.is_(None)).values(used_at=now))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None  # opened twice at once: the other one won
            secret = secrets.token_urlsafe(32)
            s.add(WebSession(user_id=user.id, secret_hash=_hash(secret), expires_at=now
                             + timedelta(days=self.config.session_days)))
        return SignedIn(_ref(user), secret)

    async def user(self, session: str) -> UserRef | None:
        """Whose browser session this is (it is kept alive), or None."""
        if not session:
            return None
        now = utcnow()
        async with self.db.session() as s, s.begin():
            found = (await s.execute(select(WebSession, User).join(User).where(
                WebSession.secret_hash == _hash(session)))).first()
            if found is None:
                return None
            row, user = found
            if _aware(row.expires_at) <= now:
                await s.delete(row)
                return None
            if (now - _aware(row.last_seen_at)).total_seconds() > 60:
                row.last_seen_at = now
                row.expires_at = now + timedelta(days=self.config.session_days)
        return _ref(user)

    def trusted(self, origin: str | None, here: str) -> bool:
        """Does a page of this web app send ``origin``: where the request arrived
        (``here``, scheme://host:port), or, behind a reverse proxy that rewrites Host and
        ends TLS, ``[web] public_url``'s origin."""
        public = "/".join(self.config.public_url.split("/")[:3])
        return bool(origin) and origin in {o for o in (here, public) if o}

    def watch(self, session: str, user: UserRef) -> asyncio.Event:
        """An event set when this session ends (signed out, or its user forgotten): what
        runs on it (a live call) ends then too, not at its next check. Each watcher has
        its own (two calls on one session end apart); ``unwatch`` it when done."""
        event = asyncio.Event()
        self._watched[event] = (_hash(session), user.key)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watched.pop(event, None)

    def _end(self, ended: Callable[[str, str], bool]) -> None:
        for event, (session, owner) in list(self._watched.items()):
            if ended(session, owner):
                event.set()
                del self._watched[event]

    def ended(self, user: UserRef) -> None:
        """Every session of ``user`` is gone (``Engine.forget``)."""
        self._end(lambda _session, owner: owner == user.key)

    async def sign_out(self, session: str) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(delete(WebSession).where(WebSession.secret_hash == _hash(session)))
        gone = _hash(session)
        self._end(lambda hashed, _owner: hashed == gone)
