"""The engine's declared surface: what adapters (``bot/``) may import and call.

Adapters translate platform events into calls on an :class:`Engine` and render what comes
back; they import from this module only. The engine's own methods (``chat``, ``speak``,
``status``, ``is_operator``, ...) and the services in :class:`Services` are the calls;
everything else on an engine (its scheduler, database, config, stores) is internal.
"""

from __future__ import annotations

from typing import Protocol

from engine.achievements import Achievements, dashboard_text
from engine.api_tokens import SCOPES, ApiTokens, TokenInfo
from engine.call import LiveCall
from engine.call_events import CallEvent
from engine.config import Config, WebConfig, config_from_dict, read_toml
from engine.conversations import KnownUser
from engine.engine import ChatReply, Engine
from engine.errors import (
    ConfigError,
    DoppelError,
    FeatureUnavailable,
    InputError,
    NotAllowed,
    QueueFull,
    SchedulerStopped,
    UserNotFound,
    UserQueueFull,
)
from engine.feedback import Feedback
from engine.images.service import Picture, Pictures
from engine.inbox import Inbox
from engine.lifecycle import open_engine
from engine.llm.base import LLMBackend
from engine.memory.retrieve import Hit
from engine.memory.service import Memory
from engine.personas import Persona, PersonaRegistry
from engine.profile import MEMORY, MODEL, RECORDS, SERVER, Profile
from engine.records import (
    AskResult,
    ChatResult,
    EngineStatus,
    SourceCard,
    StoredMessage,
    UserRef,
)
from engine.stories.options import AGE_GROUPS, GENRES, LANGUAGES, LENGTHS, StoryRequest
from engine.stories.service import Stories, StoryRecord
from engine.typed_toml import bounded, build_dataclass
from engine.voice.audio import VoiceNote
from engine.voice.cloning import CLONING_NEEDS_XTTS, VoiceCloning
from engine.voice.library import VoiceRecord
from engine.web_sign_in import WebSignIn


class Services(Protocol):
    """The services an engine offers adapters, besides its own methods."""

    personas: PersonaRegistry
    stories: Stories
    voices: VoiceCloning
    pictures: Pictures
    web: WebSignIn
    """Sign-in links and sessions of the web app."""
    feedback: Feedback
    achievements: Achievements
    api_tokens: ApiTokens
    inbox: Inbox
    """Platform updates kept until handled (a crash loses none)."""
    memory: Memory
    """For operator tools (``doppel recall``, ``persona show``, ``ingest``)."""


def services(engine: Engine) -> Services:
    """``engine`` seen as its declared services (a type check that it offers them)."""
    return engine


__all__ = [
    "AGE_GROUPS",
    "CLONING_NEEDS_XTTS",
    "GENRES",
    "LANGUAGES",
    "LENGTHS",
    "MEMORY",
    "MODEL",
    "RECORDS",
    "SCOPES",
    "SERVER",
    "Achievements",
    "ApiTokens",
    "AskResult",
    "CallEvent",
    "ChatReply",
    "ChatResult",
    "Config",
    "ConfigError",
    "DoppelError",
    "Engine",
    "EngineStatus",
    "FeatureUnavailable",
    "Feedback",
    "Hit",
    "Inbox",
    "InputError",
    "KnownUser",
    "LLMBackend",
    "LiveCall",
    "Memory",
    "NotAllowed",
    "Persona",
    "PersonaRegistry",
    "Picture",
    "Pictures",
    "Profile",
    "QueueFull",
    "SchedulerStopped",
    "Services",
    "SourceCard",
    "StoredMessage",
    "Stories",
    "StoryRecord",
    "StoryRequest",
    "TokenInfo",
    "UserNotFound",
    "UserQueueFull",
    "UserRef",
    "VoiceCloning",
    "VoiceNote",
    "VoiceRecord",
    "WebConfig",
    "WebSignIn",
    "bounded",
    "build_dataclass",
    "config_from_dict",
    "dashboard_text",
    "open_engine",
    "read_toml",
    "services",
]
