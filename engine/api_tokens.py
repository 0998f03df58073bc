"""Keys for the HTTP API that act as one user: made by the operator, shown once, stored as
hashes, revocable; ``forget`` deletes a user's keys with everything else.

Scopes: ``chat`` (talk, stories, favourites, the user's own audio) and ``account`` (export
or delete the user's own data). The operator key (``[api] key_env``) is the only admin.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from engine.conversations import ConversationStore
from engine.errors import InputError
from engine.records import UserRef
from engine.storage.db import Database
from engine.storage.models import ApiToken, User, utcnow

SCOPES = ("chat", "account")
PREFIX = "dpl_"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: UserRef
    scopes: frozenset[str]
    name: str
    created_at: datetime
    last_used_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokens:
    def __init__(self, db: Database, users: ConversationStore) -> None:
        self.db = db
        self.users = users

    async def create(self, user: UserRef, scopes: list[str], name: str = ""
                     ) -> tuple[TokenInfo, str]:
        """A new key for ``user``: its record, and the secret (shown once, never stored)."""
        wrong = sorted(set(scopes) - set(SCOPES))
        if wrong or not scopes:
            raise InputError(f"bad scopes {wrong}", user_message=(
                f"Scopes are {' and '.join(SCOPES)}" + (f"; not {', '.join(wrong)}."
                                                        if wrong else ".")))
        secret = PREFIX + secrets.token_urlsafe(32)
        uid = await self.users.user_id(user)
        row = ApiToken(user_id=uid, secret_hash=_hash(secret), name=name.strip()[:100],
                       scopes=" ".join(s for s in SCOPES if s in scopes))
        async with self.db.session() as s, s.begin():
            s.add(row)
        return _info(row, user), secret

    async def verify(self, secret: str) -> TokenInfo | None:
        """The key's record if ``secret`` is a live key (its use is noted), else None."""
        if not secret.startswith(PREFIX):
            return None
        async with self.db.session() as s, s.begin():
            found = (await s.execute(select(ApiToken, User).join(User)
                                     .where(ApiToken.secret_hash == _hash(secret)))).first()
            if found is None:
                return None
            row, user = found
            row.last_used_at = utcnow()
        return _info(row, UserRef(user.platform, user.platform_user_id, user.display_name))

    async def list(self) -> list[TokenInfo]:
        async with self.db.session() as s:
            rows = (await s.execute(select(ApiToken, User).join(User)
                                    .order_by(ApiToken.id))).all()
        return [_info(t, UserRef(u.platform, u.platform_user_id, u.display_name))
                for t, u in rows]

    async def revoke(self, token_id: int) -> bool:
        async with self.db.session() as s, s.begin():
            result = await s.execute(delete(ApiToken).where(ApiToken.id == token_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _info(row: ApiToken, user: UserRef) -> TokenInfo:
    return TokenInfo(row.id, user, frozenset(row.scopes.split()), row.name, row.created_at,
                     row.last_used_at)
