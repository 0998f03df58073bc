"""The ``doppel`` command line: a thin layer over the engine and the adapters."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.config import Config, load_config
from engine.errors import DoppelError

log = logging.getLogger("doppel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doppel",
        description="Self-hosted persona chatbot for Discord, Telegram and the console.",
    )
    parser.add_argument(
        "--config", type=Path, default=Path(os.environ.get("DOPPEL_CONFIG", "config.toml")),
        help="config file (default: $DOPPEL_CONFIG or ./config.toml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the adapters whose tokens are set; the console if none")
    chat = sub.add_parser("chat", help="chat with a persona in the terminal")
    chat.add_argument("--persona", help="persona to talk to (default: your last choice)")
    chat.add_argument("--message", "-m", help="answer this one message and exit")
    sub.add_parser("migrate", help="upgrade the database to the newest schema")
    sub.add_parser("personas", help="list the personas")
    sub.add_parser("check", help="validate config.toml and the personas, then exit")
    return parser


def _setup_logging(config: Config | None, verbose: bool, quiet: bool) -> None:
    name = config.logging.level if config else "INFO"
    level = logging.DEBUG if verbose else getattr(logging, name)
    if quiet and not verbose:
        level = max(level, logging.WARNING)
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    if not verbose:  # alembic narrates every start-up; keep its warnings only
        logging.getLogger("alembic").setLevel(logging.WARNING)


async def _chat(config: Config, persona: str | None, message: str | None) -> int:
    from bot.app import run_app
    from bot.console import ConsoleAdapter
    from engine.engine import Engine

    engine = Engine(config)
    if message is None:
        return await run_app(config, engine=engine,
                             console=lambda e: ConsoleAdapter(e, persona=persona))
    await engine.start()
    try:
        return await ConsoleAdapter(engine, persona=persona).run_once(message)
    finally:
        await engine.stop()


async def _run(config: Config) -> int:
    from bot.app import run_app
    from bot.console import ConsoleAdapter

    return await run_app(config, console=lambda e: ConsoleAdapter(e))


async def _migrate(config: Config) -> int:
    from engine.storage.db import Database

    config.storage.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.storage.effective_database_url)
    try:
        await db.start()
        print(f"database {db.url} at revision {await db.current_revision()}")
    finally:
        await db.close()
    return 0


def _personas(config: Config) -> int:
    from engine.personas import PersonaRegistry

    registry = PersonaRegistry.load(config.personas.dir, config.personas.default)
    for p in registry.all():
        mark = "*" if p.name == registry.default_name else " "
        print(f"{mark} {p.name:<14} {p.display_name}: {p.profile.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except DoppelError as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config, args.verbose, quiet=args.command == "chat")
    try:
        if args.command == "run":
            return asyncio.run(_run(config))
        if args.command == "chat":
            return asyncio.run(_chat(config, args.persona, args.message))
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "personas":
            return _personas(config)
        if args.command == "check":
            _personas(config)
            print(f"{args.config}: OK")
            return 0
    except DoppelError as exc:
        # Config and persona problems are the operator's: print the precise line.
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
