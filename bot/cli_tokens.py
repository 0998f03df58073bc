"""``doppel api-token create|list|revoke``: keys for the HTTP API that act as one user
(engine/api_tokens.py keeps them); ``doppel web-login USER``: a one-time sign-in link for
the web app (engine/web_sign_in.py). Both work beside a running ``doppel serve``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.settings import Settings
from engine.api_tokens import SCOPES, TokenInfo
from engine.config import Config
from engine.lifecycle import open_engine
from engine.profile import RECORDS
from engine.records import UserRef


def add_parser(sub: Any) -> None:
    token = sub.add_parser("api-token", help="HTTP API keys that act as one user")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="a new key for USER; its secret is shown once")
    create.add_argument("user", help="platform:id (telegram:42) to act as a bot user, or "
                                     "an API user's own id")
    create.add_argument("--scope", action="append", choices=SCOPES, dest="scopes",
                        help="chat (talk, stories, favourites; the default) and/or account "
                             "(export or delete the user's own data); repeat for both")
    create.add_argument("--name", default="", help="what the key is for, e.g. 'web app'")
    tsub.add_parser("list", help="keys, their users and scopes (never their secrets)")
    revoke = tsub.add_parser("revoke", help="stop a key working at once")
    revoke.add_argument("id", type=int)
    web = sub.add_parser("web-login", help="a one-time link that signs USER in to the web "
                                           "app (`doppel serve`)")
    web.add_argument("user", help="platform:id (telegram:42, discord:123), the same user as "
                                  "in the bots")


def _line(t: TokenInfo) -> str:
    used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
    return (f"{t.id:>4}  {t.user.key:<24} {','.join(sorted(t.scopes)):<13} "
            f"last used {used}  {t.name}")


async def _run(config: Config, args: argparse.Namespace) -> int:
    async with open_engine(config, RECORDS) as engine:
        tokens = engine.api_tokens
        if args.token_command == "create":
            info, secret = await tokens.create(UserRef.parse(args.user), args.scopes or ["chat"],
                                               args.name)
            print(f"key {info.id} for {info.user.key} ({', '.join(sorted(info.scopes))}):\n"
                  f"{secret}\nKeep it now: it is not stored and cannot be shown again.")
        elif args.token_command == "list":
            found = await tokens.list()
            print("\n".join(_line(t) for t in found) if found else "No API keys yet.")
        elif not await tokens.revoke(args.id):
            print(f"doppel: no API key {args.id}")
            return 1
        else:
            print(f"revoked key {args.id}")
    return 0


def run(config: Config, args: argparse.Namespace) -> int:
    return asyncio.run(_run(config, args))


async def _web_login(settings: Settings, user: str) -> int:
    async with open_engine(settings.engine, RECORDS) as engine:
        engine.web.serving_at(settings.api.url)  # where `doppel run` listens
        link = await engine.web.link(UserRef.parse(user))
    print(f"{link}\nIt signs {user} in to the web app once, within "
          f"{engine.web.link_minutes} minutes.")
    return 0


def web_login(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_web_login(settings, args.user))
