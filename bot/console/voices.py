"""``/voice`` in the console: reply mode, and cloning a persona's voice from audio files.

The person at the console runs Doppel on their own machine, so they count as an admin.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

from engine.api import Engine, InputError, Persona, UserRef

VOICE_HELP = """\
Voice:
  /voice [text|voice|both]          reply mode (voice notes are saved as files)
  /voice clone NAME FILE [FILE...]  clone the persona's voice from 1-3 clips of 6-30 s
  /voice list   /voice use ID   /voice delete ID"""

CONSENT_PROMPT = ("Voice cloning needs the consent of the person heard in these clips.\n"
                  "Type their full name to confirm they agreed (empty line: cancel): ")


class VoiceCommands:
    def __init__(self, engine: Engine, user: UserRef, write: Callable[[str], None],
                 read_line: Callable[[], Awaitable[str | None]], voice_dir: Path) -> None:
        self.engine = engine
        self.user = user
        self.write = write
        self.read_line = read_line
        self.voice_dir = voice_dir

    async def run(self, arg: str, persona: Persona) -> None:
        try:
            words = shlex.split(arg)
        except ValueError as exc:
            raise InputError(str(exc), user_message=f"I couldn't read that: {exc}.") from None
        action = words[0].lower() if words else ""
        if action == "clone":
            await self.clone(words[1:], persona)
        elif action == "list":
            await self.list(persona)
        elif action in ("use", "delete") and len(words) == 2:
            voices = self.engine.voices
            if action == "use":
                v = await voices.use(self.user, words[1], is_admin=True)
                self.write(f"{persona.display_name} now speaks as \"{v.name}\" ({v.id}).\n")
            else:
                v = await voices.delete(self.user, words[1], is_admin=True)
                self.write(f"Deleted voice \"{v.name}\" ({v.id}), its clips and latents.\n")
        elif action in ("", "text", "voice", "both"):
            if action:
                await self.engine.set_reply_mode(self.user, action)
            mode = await self.engine.reply_mode(self.user)
            self.write(f"Reply mode: {mode}. (/voice text|voice|both; voice notes are saved "
                       f"in {self.voice_dir})\n")
        else:
            self.write(VOICE_HELP + "\n")

    async def clone(self, words: list[str], persona: Persona) -> None:
        if len(words) < 2:
            self.write("Usage: /voice clone NAME FILE [FILE...] (1-3 clips of 6-30 s)\n")
            return
        name, files = words[0], [Path(w) for w in words[1:]]
        voices = self.engine.voices
        voices.begin(self.user, persona, name, is_admin=True)
        try:
            for path in files:
                try:
                    data = await asyncio.to_thread(path.expanduser().read_bytes)
                except OSError as exc:
                    raise InputError(str(exc), user_message=(
                        f"Could not read {path}: {exc.strerror}.")) from None
                draft = await voices.add_clip(self.user, data)
                clip = draft.clips[-1]
                self.write(f"Clip {len(draft.clips)} ({path.name}): {clip.seconds:.1f} s, "
                           f"{clip.loudness_dbfs:.0f} dBFS - ok\n")
            self.write(CONSENT_PROMPT)
            speaker = (await self.read_line() or "").strip()
            if not speaker:
                self.write("Cancelled: nothing was stored.\n")
                return
            self.write(f"Cloning {persona.display_name}'s voice...\n")
            done = await voices.finish(self.user, speaker)
        finally:
            voices.cancel(self.user)
        self.voice_dir.mkdir(parents=True, exist_ok=True)
        sample = self.voice_dir / f"voice-{done.voice.id}-sample.ogg"
        sample.write_bytes(done.sample.ogg)
        self.write(f"Voice \"{done.voice.name}\" ({done.voice.id}) is now "
                   f"{persona.display_name}'s voice; consent of {done.voice.consent_speaker} "
                   f"recorded. Sample: {sample} ({done.sample.duration_s:.1f} s)\n")

    async def list(self, persona: Persona) -> None:
        voices = await self.engine.voices.list(persona)
        if not voices:
            self.write(f"{persona.display_name} has no cloned voices; it speaks with the "
                       "standard voice.\n")
        for v in voices:
            mark = "*" if v.active else " "
            self.write(f" {mark} {v.id}  {v.name:<16} {v.clips} clip(s), {v.seconds:.0f} s, "
                       f"consent of {v.consent_speaker} on {v.consent_at:%Y-%m-%d}\n")
