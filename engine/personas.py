"""Personas: ``persona_data/<name>/persona.toml`` plus the person's sources and voice clips."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError, PersonaNotFound
from engine.typed_toml import bounded, build_dataclass

PERSONA_FILE = "persona.toml"


@dataclass(frozen=True)
class PersonaProfile:
    display_name: str
    description: str = ""
    system_prompt: str = ""
    """Who the persona is and how it behaves, in the second person ("You are ...")."""
    style_notes: str = ""
    """How the person writes: tone, length, habits, sign-off."""
    greeting: str = ""
    """What the persona says first (the console, a new voice)."""
    introduction: str = ""
    """What the persona says to "Who are you?"; unset: the first sentence of
    ``system_prompt`` in the first person ("You are X, ..." becomes "I'm X, ...")."""
    unknown_reply: str = "I don't remember anything about that, and I'd rather not guess."
    """Said when memory has nothing on a factual question (instead of inventing)."""
    decline_reply: str = ("I can't do that. Ask me about my work or what I've written, "
                          "and I'll tell you what I remember.")
    """Said to a message that tries to override the persona's instructions or to collect
    other people's contact details."""
    language: str = "en"
    owners: tuple[str, ...] = ()
    """Users who manage this persona (its voices, ...), as ``platform:id``."""
    owner_only: bool = False
    """A private persona: only its owners (and admins) may talk to it."""
    avatar: Path | None = None
    """A picture of the persona (PNG/JPEG, beside persona.toml): its face where it posts
    under its own name (Discord server channels, through a webhook)."""


@dataclass(frozen=True)
class PersonaVoice:
    tts_backend: str = ""
    """Empty: the ``[voice] tts_backend`` of config.toml."""
    reference_clips: tuple[Path, ...] = ()
    """6-10 s clips of the person speaking, for voice cloning."""


@dataclass(frozen=True)
class PersonaSources:
    globs: tuple[str, ...] = ()
    """Glob patterns, relative to the persona's directory, of the documents memory is built from."""
    addresses: tuple[str, ...] = ()
    """Mail addresses of the person: only mail sent from these counts as their writing."""


@dataclass(frozen=True)
class PersonaModel:
    lora_path: Path | None = None
    """A LoRA of the chat model for this persona (GGUF; ``doppel train persona`` makes it and
    sets this), applied by llama.cpp to the chat model for this persona's replies only."""
    lora_scale: float = bounded(1.0, min=0.0, max=4.0)


@dataclass(frozen=True)
class PersonaFile:
    persona: PersonaProfile
    voice: PersonaVoice = field(default_factory=PersonaVoice)
    sources: PersonaSources = field(default_factory=PersonaSources)
    model: PersonaModel = field(default_factory=PersonaModel)


@dataclass(frozen=True)
class Persona:
    name: str
    """The directory name; stable key in the database."""
    directory: Path
    profile: PersonaProfile
    voice: PersonaVoice
    sources: PersonaSources
    model: PersonaModel = field(default_factory=PersonaModel)

    @property
    def display_name(self) -> str:
        return self.profile.display_name

    def managed_by(self, user_key: str, admins: tuple[str, ...] = ()) -> bool:
        """Listed in ``[engine] admins`` or among this persona's ``owners``."""
        return user_key in admins or user_key in self.profile.owners

    def system_message(self) -> str:
        """The system prompt sent to the model for this persona."""
        parts = [self.profile.system_prompt.strip()]
        if self.profile.style_notes.strip():
            parts.append("How you write: " + self.profile.style_notes.strip())
        return "\n\n".join(p for p in parts if p)

    def introduction(self) -> str:
        """Who the persona is, in its own words, from its profile alone (nothing invented)."""
        if self.profile.introduction.strip():
            return self.profile.introduction.strip()
        prompt = " ".join(self.profile.system_prompt.split())
        first = re.split(r"(?<=[.!?])\s", prompt, maxsplit=1)[0]
        m = re.match(r"you are (.+)", first, re.IGNORECASE)
        if m is None:
            return f"I'm {self.profile.display_name}."
        return "I'm " + re.sub(r"\byour\b", "my", re.sub(r"\byou\b", "I", m.group(1)))

    def source_files(self) -> list[Path]:
        files: set[Path] = set()
        for pattern in self.sources.globs:
            files.update(p for p in self.directory.glob(pattern) if p.is_file())
        return sorted(files)


def load_persona(directory: Path) -> Persona:
    path = directory / PERSONA_FILE
    where = f"{path}:"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "persona" not in raw:
        raise ConfigError(f"{where} missing table [persona] (with at least display_name)")
    if "display_name" not in raw["persona"]:
        raise ConfigError(f"{where} [persona] display_name is required")
    spec: PersonaFile = build_dataclass(PersonaFile, raw, where=where, base_dir=directory)
    if not spec.persona.display_name.strip():
        raise ConfigError(f"{where} [persona] display_name must not be empty")
    avatar = spec.persona.avatar
    if avatar is not None and not avatar.is_file():
        raise ConfigError(f"{where} [persona] avatar: {avatar} is not a file")
    for clip in spec.voice.reference_clips:
        if not clip.is_file():
            raise ConfigError(f"{where} [voice] reference_clips: {clip} is not a file")
    return Persona(
        name=directory.name,
        directory=directory,
        profile=spec.persona,
        voice=spec.voice,
        sources=spec.sources,
        model=spec.model,
    )


class PersonaRegistry:
    """All personas found under one directory, loaded and validated once at start."""

    def __init__(self, personas: dict[str, Persona], default: str, *,
                 config_name: str = "config.toml") -> None:
        if default not in personas:
            raise ConfigError(
                f"{config_name}: [personas] default is {default!r}, but there is no such persona "
                f"(found: {', '.join(sorted(personas)) or 'none'})"
            )
        self._personas = personas
        self.default_name = default

    @classmethod
    def load(cls, directory: Path, default: str, *,
             config_name: str = "config.toml") -> PersonaRegistry:
        """The personas under ``directory``; ``config_name`` (the config file that chose
        ``default``) is named in errors."""
        personas = {
            d.name: load_persona(d)
            for d in sorted(directory.iterdir())
            if d.is_dir() and (d / PERSONA_FILE).is_file()
        }
        return cls(personas, default, config_name=config_name)

    @property
    def default(self) -> Persona:
        return self._personas[self.default_name]

    def names(self) -> list[str]:
        return sorted(self._personas)

    def all(self) -> list[Persona]:
        return [self._personas[n] for n in self.names()]

    def get(self, name: str) -> Persona:
        """Look a persona up by directory name, case-insensitively."""
        key = name.strip().lower()
        for persona in self._personas.values():
            if persona.name.lower() == key:
                return persona
        raise PersonaNotFound(name, self.names())
