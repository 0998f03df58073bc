"""Console adapter: a chat REPL in the terminal, and one-shot answers for scripts."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TextIO

from bot.console.voices import VOICE_HELP, VoiceCommands
from bot.memories import memories_text
from bot.ratings import stats_text
from bot.stories import STORY_HELP, StoryCommands
from bot.turn import CONTINUE_PROMPT, TRUNCATED_NOTE, Button, deliver
from bot.weblink import web_link_text
from engine.api import (
    ChatReply,
    DoppelError,
    Engine,
    Hit,
    Persona,
    Picture,
    UserRef,
    VoiceNote,
    dashboard_text,
)

log = logging.getLogger(__name__)

HELP = """\
Commands:
  /persona          list personas          /persona NAME   talk to NAME
  /history [N]      last N messages        /reset          start a new conversation
  /cancel           stop the reply         /help           this help
  /memories         what you told the persona about yourself; /memories forget N
  /web              a link that signs you in to the web app (`doppel serve`)
  /achievements     your stories, streaks and achievements
  /stats            how replies and stories are rated (👍 / 👎 in the chat apps)
  /forget           delete everything stored about you (asks first)
  /export           a zip of everything stored about you
  /quit             leave (or Ctrl-D)
While a reply is being written, /cancel or Ctrl-C stops it."""

ENDINGS = {
    "cancelled": "[stopped]",
    "timeout": "[stopped: that took too long]",
}


def sources_line(sources: list[Hit]) -> str:
    """``Sources: [1] 2001-03-12 'Subject'; [2] ...`` and a newline, or nothing."""
    if not sources:
        return ""
    return "Sources: " + "; ".join(h.citation(n) for n, h in enumerate(sources, 1)) + "\n"


def console_user() -> UserRef:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return UserRef("console", name, name)


class ConsoleAdapter:
    """Reads lines from ``stdin``, writes the persona's streamed replies to ``stdout``."""

    name = "console"
    ends_run = True

    def __init__(
        self,
        engine: Engine,
        *,
        persona: str | None = None,
        user: UserRef | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        voice: bool | None = None,
    ) -> None:
        """``voice``: write each reply's voice note to a file too (None: the user's
        reply mode decides)."""
        self.engine = engine
        self.user = user or console_user()
        self._persona_name = persona
        self.persona: Persona | None = None
        self.stdin = stdin or sys.stdin
        self.out = stdout or sys.stdout
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._typed_ahead: deque[str | None] = deque()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.story_commands = StoryCommands(engine, self.user, self._write,
                                            show_pictures=self._save_pictures)
        self.voice = voice
        self.voice_dir = engine.user_files(self.user) / "voice"
        """Voice notes and narrations made for this user: ``forget`` removes them."""
        self._spoken: VoiceNote | None = None
        self._voice_count = 0
        self.voice_commands = VoiceCommands(engine, self.user, self._write, self._next_line,
                                            self.voice_dir)
        self._replying = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.persona = await self._resolve_persona()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read_stdin, args=(loop,), name="doppel-stdin",
                         daemon=True).start()
        self._task = asyncio.create_task(self._repl(), name="doppel-console")
        self._task.add_done_callback(lambda _t: self._closed.set())

    async def pause(self) -> None:
        return None

    async def stop(self) -> None:
        if self._replying:
            self.engine.cancel(self.user)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def interrupt(self) -> bool:
        return bool(self._replying and self.engine.cancel(self.user))

    # -- one-shot mode ----------------------------------------------------------------------

    async def run_command(self, line: str) -> int:
        """Run one /command (``doppel story ...``); 0 on success, 1 with the reason on error."""
        try:
            await self._command(line)
        except DoppelError as exc:
            print(exc.user_message, file=sys.stderr)
            return 1
        return 0

    async def run_once(self, message: str | None, voice_in: Path | None = None) -> int:
        """Answer one message (or the words of an audio file), print the reply, return an
        exit status (0 if it completed)."""
        self.persona = await self._resolve_persona()
        try:
            if voice_in is not None:
                audio = await asyncio.to_thread(voice_in.read_bytes)
                message = await self.engine.transcribe(audio, user=self.user)
                self._write(f"(you said: {message})\n")
                if self.voice is None:
                    self.voice = True  # spoken to, answer with voice too
            reply = await self.engine.chat(self.user, message or "", persona=self.persona.name)
            if reply.disclosure:
                print(f"(🤖 {reply.disclosure})", file=sys.stderr)
        except DoppelError as exc:
            print(exc.user_message, file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"Could not read {voice_in}: {exc.strerror}", file=sys.stderr)
            return 1
        await self._stream(reply)
        result = await reply.result()
        self._write("\n" + sources_line(result.sources))
        await self._save_voice()
        if result.error is not None:
            print(result.error.user_message, file=sys.stderr)
            return 1
        return 0

    # -- REPL -------------------------------------------------------------------------------

    def _read_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Blocking reader on a daemon thread, so a waiting read never holds up shutdown."""
        try:
            for line in self.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\n"))
        except (OSError, ValueError) as exc:
            log.debug("stdin closed: %s", exc)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def _next_line(self) -> str | None:
        if self._typed_ahead:
            return self._typed_ahead.popleft()
        return await self._lines.get()

    async def _repl(self) -> None:
        assert self.persona is not None
        self._write(f"Doppel - you are talking to {self.persona.display_name}. "
                    "Type /help for commands.\n")
        self._greet(self.persona)
        while True:
            self._write("> ")
            line = await self._next_line()
            if line is None:
                self._write("\n")
                return
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not await self._command(line):
                        return
                else:
                    await self._chat(line)
            except DoppelError as exc:
                self._write(exc.user_message + "\n")
            except Exception:
                log.exception("console command failed: %r", line)
                self._write("Something went wrong; the details are in the log.\n")

    async def _chat(self, text: str) -> None:
        assert self.persona is not None
        reply = await self.engine.chat(
            self.user, text, persona=self.persona.name, on_position=self._show_position
        )
        self._replying = True
        try:
            printer = asyncio.create_task(self._print_reply(reply))
            while not printer.done():
                getter = asyncio.create_task(self._lines.get())
                done, _ = await asyncio.wait({printer, getter},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                line = getter.result()
                if line is not None and line.strip() == "/cancel":
                    self.engine.cancel(self.user)
                else:
                    self._typed_ahead.append(line)  # handled after this reply
            await printer
        finally:
            self._replying = False

    async def _stream(self, reply: ChatReply) -> str:
        """Print the reply as it comes (the shared turn driver decides when, and whether
        to speak it too); returns what was printed."""
        view = _TerminalView(self._write)
        spoken = self.voice if self.voice is not None else False
        result, note = await deliver(self.engine, view, self.user, reply, spoken=spoken)
        self._spoken = note
        rest = result.text[len(view.printed):] if result.text.startswith(view.printed) else ""
        self._write(rest)
        return view.printed + rest

    async def _save_voice(self) -> None:
        if self._spoken is None or self.voice is False:
            return
        self._voice_count += 1
        path = self.voice_dir / f"reply-{int(time.time())}-{self._voice_count}.ogg"
        try:
            self.voice_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self._spoken.ogg)
        except OSError as exc:  # a full disk loses the voice note, never the conversation
            self._write(f"(could not save the voice note: {exc.strerror})\n")
            self._spoken = None
            return
        caption = self.engine.voice_caption
        self._write(f"(voice note: {path}, {self._spoken.duration_s:.1f} s"
                    + (f"; {caption}" if caption else "") + ")\n")
        self._spoken = None

    async def _print_reply(self, reply: ChatReply) -> None:
        if reply.disclosure:
            self._write(f"(🤖 {reply.disclosure})\n")
        self._write(f"{reply.persona.display_name}: ")
        printed = await self._stream(reply)
        result = await reply.result()
        if result.truncated:
            self._write(("" if printed.endswith(result.text) else " …") +
                        f"\n{TRUNCATED_NOTE.replace('⏩ Continue', '/continue')}")
        elif result.status != "complete":
            ending = ENDINGS.get(result.status)
            if ending is None and result.error is not None:
                ending = result.error.user_message
            self._write(("" if not result.text else " ") + (ending or ""))
        self._write("\n" + sources_line(result.sources))
        await self._save_voice()

    def _show_position(self, position: int) -> None:
        self._write(f"(you are #{position} in line)\n")

    async def _command(self, line: str) -> bool:
        """Run a /command. Returns False when the REPL should end."""
        name, _, arg = line.partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if await self.story_commands.run(name, arg):
            return True
        if name == "/help":
            self._write(HELP + "\n" + VOICE_HELP + "\n" + STORY_HELP + "\n")
        elif name == "/persona":
            await self._persona_command(arg)
        elif name == "/history":
            await self._history_command(arg)
        elif name == "/reset":
            assert self.persona is not None
            await self.engine.reset(self.user, persona=self.persona.name)
            self._write(f"Started a new conversation with {self.persona.display_name}.\n")
        elif name == "/voice":
            assert self.persona is not None
            if arg.lower() in ("text", "voice", "both"):
                self.voice = None  # the stored choice decides from now on
            await self.voice_commands.run(arg, self.persona)
        elif name == "/forget":
            if arg.strip().lower() != "yes":
                self._write("This deletes all your messages, stories, favourites, saved "
                            "prompts, genres, settings and cloned voices. Type /forget yes to "
                            "confirm.\n")
            else:
                await self.engine.forget(self.user)
                self._write("Done: I have forgotten everything about you.\n")
        elif name == "/stats":
            self._write(await stats_text(self.engine, self.user, local=True) + "\n")
        elif name == "/memories":
            assert self.persona is not None
            self._write(await memories_text(self.engine, self.user, self.persona, arg) + "\n")
        elif name == "/achievements":
            board = await self.engine.achievements.dashboard(self.user)
            self._write(dashboard_text(board) + "\n")
        elif name == "/web":
            self._write(await web_link_text(self.engine, self.user) + "\n")
        elif name == "/export":
            data = await self.engine.export(self.user)
            path = self.engine.user_files(self.user) / f"export-{int(time.time())}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, data)
            self._write(f"Everything stored about you: {path} ({len(data) // 1024 + 1} KB)\n")
        elif name == "/continue":
            await self._chat(CONTINUE_PROMPT)
        elif name == "/cancel":
            n = self.engine.cancel(self.user)
            self._write(f"Cancelled {n} request(s).\n" if n else "Nothing to cancel.\n")
        else:
            self._write(f"Unknown command {name}. Type /help.\n")
        return True

    async def _persona_command(self, arg: str) -> None:
        assert self.persona is not None
        if not arg:
            for p in self.engine.visible_personas(self.user, is_admin=True):
                mark = "*" if p.name == self.persona.name else " "
                self._write(f" {mark} {p.name:<14} {p.display_name} - {p.profile.description}\n")
            self._write("Switch with /persona NAME.\n")
            return
        self.persona = await self.engine.set_persona(self.user, arg)
        self._write(f"You are now talking to {self.persona.display_name}.\n")
        self._greet(self.persona)

    async def _history_command(self, arg: str) -> None:
        assert self.persona is not None
        try:
            limit = int(arg) if arg else 20
        except ValueError:
            self._write("Usage: /history [N], N a number from 1 to 200.\n")
            return
        limit = max(1, min(limit, 200))
        messages = await self.engine.history(self.user, persona=self.persona.name, limit=limit)
        if not messages:
            self._write("No messages in this conversation yet.\n")
        for m in messages:
            who = "you" if m.role == "user" else self.persona.display_name
            flag = "" if m.status == "complete" else f" [{m.status}]"
            self._write(f"[{m.created_at:%Y-%m-%d %H:%M}] {who}: {m.content}{flag}\n")

    # -- helpers ----------------------------------------------------------------------------

    async def _resolve_persona(self) -> Persona:
        if self._persona_name:
            return self.engine.persona(self._persona_name)
        return await self.engine.current_persona(self.user)

    def _greet(self, persona: Persona) -> None:
        if persona.profile.greeting:
            self._write(f"{persona.display_name}: {persona.profile.greeting.strip()}\n")

    async def _save_pictures(self, pictures: list[Picture]) -> None:
        """A terminal shows no pictures: they are saved, and their paths printed."""
        folder = self.engine.user_files(self.user) / "pictures"  # /forget removes it
        folder.mkdir(parents=True, exist_ok=True)
        for pic in pictures:
            path = folder / pic.filename
            path.write_bytes(pic.data)
            self._write(f"  picture: {path}{'  (' + pic.caption + ')' if pic.position else ''}\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


class _TerminalView:
    """The live part of a turn in a terminal: text is printed as it grows (no edits)."""

    interval_s = 0.0

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.printed = ""

    async def queued(self, position: int) -> None:
        return None  # the console prints its place in line itself

    async def dequeued(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def activity(self, voice: bool) -> AsyncIterator[None]:
        yield

    async def show(self, text: str) -> None:
        if text.startswith(self.printed):
            self.write(text[len(self.printed):])
            self.printed = text

    async def finish(self, text: str, buttons: Sequence[Button]) -> None:
        return None

    async def voice(self, note: VoiceNote, buttons: Sequence[Button]) -> None:
        return None

    async def pictures(self, pictures: Sequence[Picture]) -> None:
        return None  # console stories go through StoryCommands, which saves the pictures

    def title(self, text: str) -> str:
        return text
