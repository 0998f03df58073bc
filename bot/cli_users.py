"""``doppel users``, ``doppel export USER -o FILE`` and ``doppel forget USER --yes``: for
operators (a deletion request that came by mail, say). USER is exactly a platform:id, an
id or a name; several matches, or none, are listed and nothing is done. What is printed of
names and ids shows control characters escaped."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Config
from engine.errors import UserNotFound
from engine.lifecycle import open_engine
from engine.printable import printable
from engine.profile import MEMORY, RECORDS

if TYPE_CHECKING:
    from engine.conversations import KnownUser


def add_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="list the people Doppel has stored something about")
    users.add_argument("search", nargs="?", default="", help="part of a name or id")
    who = "platform:id (telegram:12345), a platform id or a name; `doppel users` lists them"
    export = sub.add_parser("export", help="a zip of everything stored about one user")
    export.add_argument("user", help=who)
    export.add_argument("-o", "--output", type=Path, required=True)
    forget = sub.add_parser("forget", help="delete everything stored about one user")
    forget.add_argument("user", help=who)
    forget.add_argument("--yes", action="store_true", help="really delete (required)")


def _user_line(u: KnownUser) -> str:
    return (f"{printable(u.ref.key):<28} {printable(u.ref.display_name or '-'):<24} "
            f"last seen {u.last_seen:%Y-%m-%d %H:%M}")


async def _users(config: Config, search: str) -> int:
    async with open_engine(config, RECORDS) as engine:
        found = await engine.find_users(search)
    for u in found:
        print(_user_line(u))
    if not found:
        print("No one matches." if search else "No one has talked to Doppel yet.")
    return 0


async def _user_data(config: Config, args: argparse.Namespace) -> int:
    """``doppel export USER -o FILE`` / ``doppel forget USER --yes`` (operators, e.g. for a
    deletion request that came by mail). USER is a platform:id, an id or a name."""
    # An export only reads records: it works beside a running bot. Forgetting also cancels
    # the user's running requests and deletes their voices: it needs the data dir alone.
    async with open_engine(config, MEMORY if args.command == "forget" else RECORDS) as engine:
        # Only an exact platform:id, id or name, and only one: a part of one ("ob" of
        # api:bob) lists who it may mean and does nothing.
        found = await engine.find_users(args.user, exact=True)
        if len(found) != 1:
            near = found or await engine.find_users(args.user)
            asked = printable(args.user)
            print((f"doppel: {len(found)} users are {asked!r}" if found else
                   f"doppel: no user is exactly {asked!r}")
                  + (":\n" + "\n".join(_user_line(u) for u in near) +
                     "\nGive one of these platform:ids." if near else
                     "; `doppel users` lists everyone stored"), file=sys.stderr)
            return 1
        user = found[0].ref
        who = printable(f"{user.key}" + (f" ({user.display_name})" if user.display_name
                                          else ""))
        if args.command == "export":
            try:
                data = await engine.export(user)
            except UserNotFound:
                print(f"doppel: nothing is stored about {who}", file=sys.stderr)
                return 1
            await asyncio.to_thread(args.output.write_bytes, data)
            print(f"{args.output}: everything stored about {who}, {len(data)} bytes")
        elif not args.yes:
            print(f"This deletes everything stored about {who}. Add --yes to do it.",
                  file=sys.stderr)
            return 1
        else:
            await engine.forget(user)
            print(f"forgot {who}")
    return 0



def run(config: Config, args: argparse.Namespace) -> int:
    if args.command == "users":
        return asyncio.run(_users(config, args.search))
    return asyncio.run(_user_data(config, args))
