"""The ``doppel`` command line: a thin layer over the engine and the adapters."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import cli_memory, cli_model, cli_run, cli_tokens, cli_train, cli_users
from bot.settings import load_settings
from engine.config import Config
from engine.errors import DoppelError, InputError
from engine.lifecycle import open_engine
from engine.profile import MEMORY, MODEL, RECORDS
from engine.storage.private import check_data_dir

if TYPE_CHECKING:
    from engine.memory.retrieve import Hit

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
    chat.add_argument("--voice", action="store_true",
                      help="also write each reply as an OGG Opus voice note")
    chat.add_argument("--voice-in", type=Path, metavar="FILE",
                      help="transcribe this audio file, answer it and exit")
    serve = sub.add_parser("serve", help="HTTP API over the engine (see [api] in config)")
    serve.add_argument("--host", help="override [api] host")
    serve.add_argument("--port", type=int, help="override [api] port")
    sub.add_parser("migrate", help="upgrade the database to the newest schema")
    sub.add_parser("check", help="validate config.toml and the personas, then exit")
    sub.add_parser("doctor", help="report models, GPU, ffmpeg, database, disk and tokens")
    cli_train.add_parser(sub)
    cli_model.add_parser(sub)
    cli_tokens.add_parser(sub)
    cli_memory.add_parser(sub)
    sub.add_parser("health", help="exit 0 if a `doppel run` on this data dir is alive "
                                  "(the container health check)")
    worker = sub.add_parser("worker", help="serve LLM jobs from the Redis queue in [llm] "
                                           "redis_url with this machine's model")
    worker.add_argument("--name", default="", help="worker name (default: host-pid)")
    cli_users.add_parser(sub)

    persona = sub.add_parser("persona", help="list personas or show one")
    psub = persona.add_subparsers(dest="persona_command", required=True)
    psub.add_parser("list", help="list the personas")
    show = psub.add_parser("show", help="profile, style and memory of a persona")
    show.add_argument("name")

    ingest = sub.add_parser("ingest", help="add mail and documents to a persona's memory")
    ingest.add_argument("persona")
    ingest.add_argument("paths", nargs="*", type=Path,
                        help=".mbox .eml .msg .pdf .docx .txt .md files or folders "
                             "(default: the sources listed in the persona's persona.toml)")
    ingest.add_argument("--prune", action="store_true",
                        help="drop memory of files under PATHS that no longer exist")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out matching files or folders (gitignore-style: "
                             "LICENSES/, *.log, /drafts); repeatable. A .doppelignore "
                             "file in a folder given lists more, one a line")

    story = sub.add_parser(
        "story", help="children's stories: create, suggest, history, favourites, ...",
        description="Runs one story command as the console user, e.g. `doppel story create "
                    "genre=animals age=3-5 a turtle who learns to swim`, `doppel story "
                    "history dragon`, `doppel story fav 3`. Commands: "
                    + ", ".join(sorted(STORY_COMMANDS)) + ".")
    story.add_argument("action", choices=sorted(STORY_COMMANDS))
    story.add_argument("args", nargs=argparse.REMAINDER)
    story.set_defaults(help_of=story)

    for name, text in (("recall", "what memory finds for each question on stdin"),
                       ("ask", "the persona's grounded answer to each question on stdin")):
        cmd = sub.add_parser(name, help=text, description=text + " (one question per line)")
        cmd.add_argument("persona")
        cmd.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "recall":
            cmd.add_argument("--k", type=int, default=None, help="hits per question")
            cmd.add_argument("--after", type=_date, help="only mail from this date (YYYY-MM-DD)")
            cmd.add_argument("--before", type=_date, help="only mail before this date")
            cmd.add_argument("--thread", help="only this thread (subject, Re:/Fwd: ignored)")
    _everywhere(parser, sub)
    return parser


def _everywhere(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction[Any]) -> None:
    """``--config`` and ``-v`` work after the command too (``doppel check --config X``)."""
    for child in sub.choices.values():
        child.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                           help="config file (as before the command)")
        child.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="debug logging")
        for action in child._actions:
            if isinstance(action, argparse._SubParsersAction):
                _everywhere(child, action)


def _wants_help(args: argparse.Namespace) -> bool:
    """``doppel story create --help``: the words after the action are the story's, but a
    help flag among them asks for help, never for a story about "--help"."""
    return args.command == "story" and any(a in ("-h", "--help") for a in args.args)


STORY_NEEDS_MODEL = {"create", "suggest", "narrate"}
STORY_COMMANDS = {
    "create": "/story", "suggest": "/suggest", "history": "/stories", "open": "/open",
    "fav": "/fav", "unfav": "/unfav", "favourites": "/favourites", "delete": "/delete-story",
    "clear": "/clear-stories", "genres": "/genres", "genre": "/genre", "prompts": "/prompts",
    "prompt": "/prompt", "timezone": "/timezone", "narrate": "/narrate",
}


async def _story(config: Config, action: str, args: list[str]) -> int:
    from bot.console import ConsoleAdapter

    # History, favourites, ...: records only, so they work beside a running bot.
    profile = MODEL if action in STORY_NEEDS_MODEL else RECORDS
    async with open_engine(config, profile) as engine:
        adapter = ConsoleAdapter(engine)
        if action == "clear" and args == ["yes"]:  # confirmation given on the command line
            adapter.story_commands.awaiting_clear_confirmation = True
        return await adapter.run_command(f"{STORY_COMMANDS[action]} {shlex.join(args)}")


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _setup_logging(config: Config | None, verbose: bool, quiet: bool) -> None:
    name = config.logging.level if config else "INFO"
    level = logging.DEBUG if verbose else getattr(logging, name)
    if quiet and not verbose:
        level = max(level, logging.WARNING)
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    if not verbose:  # these narrate every start-up; keep their warnings only
        for noisy in ("alembic", "sentence_transformers", "httpx", "chromadb"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


async def _migrate(config: Config) -> int:
    from engine.storage.db import Database

    config.storage.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.storage.effective_database_url)
    try:
        await db.start()
        print(f"database {db.safe_url} at revision {await db.current_revision()}")
    finally:
        await db.close()
    return 0


def _persona_list(config: Config) -> int:
    from engine.personas import PersonaRegistry

    registry = PersonaRegistry.load(config.personas.dir, config.personas.default,
                                    config_name=config.name)
    for p in registry.all():
        mark = "*" if p.name == registry.default_name else " "
        print(f"{mark} {p.name:<14} {p.display_name}: {p.profile.description}")
    return 0


async def _persona_show(config: Config, name: str) -> int:
    async with open_engine(config, RECORDS) as engine:
        p = engine.personas.get(name)
        stats = await engine.memory.stats(p.name)
        style = await engine.memory.style(p.name)
        default = "  [default]" if p.name == engine.personas.default_name else ""
        print(f"{p.display_name} ({p.name}){default}")
        print(f"  {p.profile.description}")
        print(f"  directory: {p.directory}")
        print(f"  sources: {', '.join(p.sources.globs) or 'none'}; "
              f"own addresses: {', '.join(p.sources.addresses) or 'none'}")
        sources = p.source_files()
        if not stats["files"] and sources:
            how = (f"the first `doppel run` or `doppel chat` builds it (or `doppel ingest "
                   f"{p.name}`)" if config.memory.auto_ingest
                   else f"build it with `doppel ingest {p.name}`")
            print(f"  memory: not built yet from its {len(sources)} source files; {how}")
        else:
            print(f"  memory: {stats['files']} files, {stats['chunks']} chunks "
                  f"({', '.join(f'{n} {k}' for k, n in stats['by_kind'].items()) or 'empty'})")
        print("  style:", style.describe() if style and style.mails else
              "not measured yet (run `doppel ingest`)")
        print("  fine-tune:", _fine_tune_line(p.model.lora_path, p.name))
        print("\nSystem prompt:\n" + p.system_message())
    return 0


def _fine_tune_line(lora: Path | None, name: str) -> str:
    import json

    from engine.llm.llama_cpp import lora_sidecar

    if lora is None:
        return f"none (`doppel train persona {name}` makes one from its mail)"
    sidecar = lora_sidecar(lora)
    if not sidecar.is_file():
        return str(lora)
    made = json.loads(sidecar.read_text(encoding="utf-8"))
    before, after = made.get("val_loss", ["?", "?"])
    return (f"{lora} (on {made.get('base_name')}, from {made['examples']['train']} of their "
            f"exchanges; loss on held-out mail {before} -> {after})")


class _Bar:
    """tqdm progress over the bytes to read, with the documents done (on stderr; silent
    when stderr is not a terminal)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="ingest",
                        disable=not sys.stderr.isatty())
        self.docs = 0

    def start(self, total_bytes: int) -> None:
        self.bar.total = total_bytes
        self.bar.refresh()

    def advance(self, n_bytes: int, docs: int) -> None:
        if docs:
            self.docs += docs
            self.bar.set_postfix_str(f"{self.docs} docs", refresh=False)
        self.bar.update(n_bytes)


async def _ingest(config: Config, persona: str, paths: list[Path], prune: bool,
                  as_json: bool, exclude: list[str]) -> int:
    from engine.memory.ingest import Ingestor

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"doppel: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    async with open_engine(config, MEMORY) as engine:
        p = engine.personas.get(persona)
        roots = paths
        if not paths:
            paths, roots = p.source_files(), [p.directory]
            if not paths:
                print(f"doppel: {p.name} lists no sources in persona.toml; give PATHs",
                      file=sys.stderr)
                return 2
        bar = _Bar()
        try:
            report = await Ingestor(engine.memory, p, progress=bar).run(
                paths, prune=prune, roots=roots, exclude=exclude)
        except asyncio.CancelledError:
            # Ctrl-C. Every batch is committed whole or not at all, so leave now, as from a
            # kill -9 after the last commit (which the next run goes on from): waiting for
            # the embedding in hand or for torch to unload would take seconds.
            bar.bar.close()
            print(f"\nstopped after {bar.docs} documents; run the same command again to go "
                  "on where it stopped", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(130)
        bar.bar.close()
    if as_json:  # with this process's peak memory, for scripts and bench/ingest.py
        from engine.procinfo import peak_rss_mb

        print(json.dumps({**report.as_dict(), "peak_rss_mb": round(peak_rss_mb())}))
    else:
        print(report.summary())
    return 0


def _hit_json(hit: Hit, n: int) -> dict[str, Any]:
    return {"n": n, "citation": hit.citation(n), **hit.as_json()}


async def _recall(config: Config, persona: str, k: int | None, as_json: bool,
                  after: datetime | None, before: datetime | None, thread: str | None) -> int:
    from engine.memory.retrieve import Filters

    async with open_engine(config, MEMORY) as engine:
        p = engine.personas.get(persona)
        filters = Filters(after=after, before=before, thread=thread)
        for line in sys.stdin:
            question = line.strip()
            if not question:
                continue
            hits = await engine.memory.recall(p.name, question, k=k, filters=filters,
                                              user="operator:recall",
                                              names=[p.display_name])
            if as_json:
                print(json.dumps({"question": question,
                                  "hits": [_hit_json(h, n) for n, h in enumerate(hits, 1)]}),
                      flush=True)
            else:
                print(f"? {question}")
                for n, h in enumerate(hits, 1):
                    print(f"  {h.citation(n)}  score {h.score:.2f}")
                if not hits:
                    print("  (nothing in memory clears the relevance gate)")
    return 0


async def _ask(config: Config, persona: str, as_json: bool) -> int:
    async with open_engine(config, MODEL) as engine:
        p = engine.personas.get(persona)
        failed = 0
        for line in sys.stdin:
            question = line.strip()
            if not question:
                continue
            try:
                result = await engine.ask(p.name, question)
            except DoppelError as exc:  # one question's failure never drops the rest
                failed += 1
                if as_json:
                    print(json.dumps({"question": question, "error": exc.user_message}),
                          flush=True)
                else:
                    print(f"? {question}\n{exc.user_message}\n", flush=True)
                continue
            if as_json:
                print(json.dumps({
                    "question": result.question, "answer": result.answer,
                    "grounded": result.grounded,
                    "sources": [_hit_json(h, n) for n, h in enumerate(result.sources, 1)],
                }), flush=True)
            else:
                print(f"? {question}\n{result.answer}")
                for n, h in enumerate(result.sources, 1):
                    print(f"  {h.citation(n)}")
                print()
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "ingest" and not any(e.startswith("-") for e in extra):
        args.paths += [Path(e) for e in extra]  # `ingest allen --prune mail/`: paths anywhere
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if _wants_help(args):
        args.help_of.print_help()
        return 0
    try:
        settings = load_settings(args.config)
        config = settings.engine
    except DoppelError as exc:
        print(f"doppel: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config, args.verbose,
                   quiet=args.command in ("chat", "recall", "ask", "persona", "ingest",
                                          "story"))
    try:
        match args.command:
            case "run":
                return asyncio.run(cli_run.run(settings))
            case "chat":
                return asyncio.run(cli_run.chat(settings, args.persona, args.message, args.voice,
                                         args.voice_in))
            case "migrate":
                return asyncio.run(_migrate(config))
            case "serve":
                return asyncio.run(cli_run.serve(settings, args.host, args.port))
            case "export" | "forget" | "users":
                return cli_users.run(config, args)
            case "train":
                return cli_train.run(config, args)
            case "model":
                return cli_model.run(config, args)
            case "api-token":
                return cli_tokens.run(config, args)
            case "web-login":
                return cli_tokens.web_login(settings, args)
            case "memory":
                return cli_memory.run(config, args)
            case "health":
                from bot.app import health

                ok, detail = health(config)
                print(detail)
                return 0 if ok else 1
            case "worker":
                return cli_run.worker(config, args.name)
            case "doctor":
                from bot.doctor import report

                return report(settings)
            case "check":
                check_data_dir(config.storage.data_dir)
                _persona_list(config)
                print(f"{args.config}: OK")
                return 0
            case "persona" if args.persona_command == "list":
                return _persona_list(config)
            case "persona":
                return asyncio.run(_persona_show(config, args.name))
            case "ingest":
                return asyncio.run(_ingest(config, args.persona, args.paths, args.prune,
                                           args.json, args.exclude))
            case "recall":
                return asyncio.run(_recall(config, args.persona, args.k, args.json,
                                           args.after, args.before, args.thread))
            case "ask":
                return asyncio.run(_ask(config, args.persona, args.json))
            case "story":
                return asyncio.run(_story(config, args.action, args.args))
    except DoppelError as exc:
        # Config, persona and lock problems are the operator's: print the precise line;
        # a rejected input says what the person can do.
        print(f"doppel: {exc.user_message if isinstance(exc, InputError) else exc}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
