"""SQLAlchemy models. Every change here needs an Alembic revision in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


FTS_TABLE = "memory_fts"
"""SQLite FTS5 table over memory chunks, made by a migration (not a model)."""


def include_in_autogenerate(obj: object, name: str | None, type_: str, reflected: bool,
                            compare_to: object) -> bool:
    """Alembic filter: the FTS5 table and its shadow tables are managed by hand."""
    return not (type_ == "table" and name is not None and name.startswith(FTS_TABLE))


NEVER_REUSED = {"sqlite_autoincrement": True}
"""SQLite's AUTOINCREMENT: a deleted row's id is never given to a new row (exports,
citations and buttons refer to ids; a forgotten user's must not come back as someone
else's). Other databases never reuse sequence values anyway."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _user_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    """A person on one platform (``console``, ``discord``, ``telegram``)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PersonaRecord(Base):
    """A persona that has been used; the persona itself lives in ``persona_data/``."""

    __tablename__ = "personas"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    first_used_at: Mapped[datetime] = _created()


class Conversation(Base):
    """One thread of chat between a user and a persona in one chat (DM, channel, console)."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_lookup", "user_id", "persona_id", "chat_key"),
                      NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    chat_key: Mapped[str] = mapped_column(String(100), default="")
    """Platform chat/channel id; empty for a direct conversation."""
    started_at: Mapped[datetime] = _created()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set by /reset: a closed conversation is kept but no longer fed to the model."""
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    """What scrolled out of the prompt's history, a line a message (engine/summary.py)."""


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant', 'system')", name="role"),
        CheckConstraint(
            "status IN ('complete', 'cancelled', 'timeout', 'error', 'pending', "
            "'interrupted', 'truncated')", name="status"
        ),
        Index("ix_messages_conversation", "conversation_id", "id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="complete")
    """``complete``, or how an unfinished reply ended; its partial text is kept.
    ``pending`` while it is written; ``interrupted`` if the process died meanwhile;
    ``truncated`` when the model ran out of tokens (the text ends at a sentence)."""
    tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
    disclosure: Mapped[str] = mapped_column(Text, default="", server_default="")
    """What a reply was shown after (the AI disclosure on a persona's first reply)."""
    sources: Mapped[str] = mapped_column(Text, default="", server_default="")
    """The source cards shown beside a reply, as JSON (``engine.records.SourceCard``)."""


class Story(Base):
    __tablename__ = "stories"
    __table_args__ = (Index("ix_stories_user_created", "user_id", "created_at"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    persona_id: Mapped[int | None] = mapped_column(
        ForeignKey("personas.id", ondelete="SET NULL")
    )
    chat_key: Mapped[str] = mapped_column(String(100), default="")
    title: Mapped[str] = mapped_column(String(300), default="")
    genre: Mapped[str] = mapped_column(String(50))
    characters: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    age_group: Mapped[str] = mapped_column(String(10))
    language: Mapped[str] = mapped_column(String(10))
    length: Mapped[str] = mapped_column(String(10))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    sampling: Mapped[str] = mapped_column(String(16), default="", server_default="")
    tokens: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    """Mean log-probability per token under the model (best-of-N keeps the highest)."""
    in_history: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    """False after "clear history"; a favourited story is kept for the favourites list."""
    created_at: Mapped[datetime] = _created()


class StoryPicture(Base):
    """A picture of a story: the cover (position 0) or a chapter's, kept with the story
    (deleted with it, and with its user)."""

    __tablename__ = "story_pictures"
    __table_args__ = (UniqueConstraint("story_id", "position"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"),
                                          index=True)
    position: Mapped[int] = mapped_column(Integer)
    caption: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    """What the model was asked to draw; empty for a neutral card."""
    source: Mapped[str] = mapped_column(String(10))
    """``model`` (drawn by the text-to-image model) or ``card`` (the neutral cover)."""
    mime: Mapped[str] = mapped_column(String(20), default="image/png")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


class UserMemory(Base):
    """A fact a user told a persona about themselves ("my daughter Mia is five"), in their
    own words; one per slot and place (a newer fact in the slot replaces the older)."""

    __tablename__ = "user_memories"
    __table_args__ = (UniqueConstraint("user_id", "persona", "scope", "slot"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    persona: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(100), default="", server_default="",
                                       index=True)
    """Where it was told: "" in private, else the server ("discord:<guild>", "tg:<group>"),
    whose admins may see it; it is recalled only there (and in the user's private chats)."""
    slot: Mapped[str] = mapped_column(String(100))
    clause: Mapped[str] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"))
    """The message it was told in."""
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Rating(Base):
    """A 👍 or 👎 on a reply or a story, with what was asked and what was written (kept
    even if the message is deleted later, for preference training)."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("user_id", "target"),
        CheckConstraint("kind IN ('reply', 'story')", name="kind"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    kind: Mapped[str] = mapped_column(String(10))
    target: Mapped[str] = mapped_column(String(40))
    """``reply:<message id>`` or ``story:<story id>``: one rating per user and target."""
    good: Mapped[bool] = mapped_column(Boolean)
    persona: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(300), default="")
    prompt: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class StorySuggestion(Base):
    """Cached prompt suggestions for one (genre, language, age group) and day."""

    __tablename__ = "story_suggestions"
    __table_args__ = (UniqueConstraint("genre", "language", "age_group", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    genre: Mapped[str] = mapped_column(String(50))
    language: Mapped[str] = mapped_column(String(10))
    age_group: Mapped[str] = mapped_column(String(10))
    day: Mapped[str] = mapped_column(String(10))
    """ISO date (UTC) the suggestions are for: a new day gets new ones."""
    items: Mapped[str] = mapped_column(Text)
    """JSON list of suggestion strings."""
    created_at: Mapped[datetime] = _created()


class Favourite(Base):
    """A starred story or chat message."""

    __tablename__ = "favourites"
    __table_args__ = (
        UniqueConstraint("user_id", "story_id"),
        UniqueConstraint("user_id", "message_id"),
        CheckConstraint(
            "(story_id IS NULL) != (message_id IS NULL)", name="exactly_one_target"
        ),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = _created()


class SavedPrompt(Base):
    __tablename__ = "saved_prompts"
    __table_args__ = (UniqueConstraint("user_id", "name"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    name: Mapped[str] = mapped_column(String(100))
    genre: Mapped[str] = mapped_column(String(50), default="")
    characters: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    age_group: Mapped[str] = mapped_column(String(10), default="")
    language: Mapped[str] = mapped_column(String(10), default="")
    length: Mapped[str] = mapped_column(String(10), default="")
    created_at: Mapped[datetime] = _created()


class CustomGenre(Base):
    __tablename__ = "custom_genres"
    __table_args__ = (UniqueConstraint("user_id", "name"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = _created()


class UserSetting(Base):
    """One setting of a user, e.g. ``persona`` -> ``allen``; ``scope`` is a chat key or ''."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(100), primary_key=True, default="")
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class MemoryFile(Base):
    """A source file ingested into a persona's memory (for incremental re-runs and --prune)."""

    __tablename__ = "memory_files"
    __table_args__ = (UniqueConstraint("persona", "path"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    persona: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    """The content's hash once the file is fully indexed; "" while it is being read."""
    size: Mapped[int] = mapped_column(Integer)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    ingested_at: Mapped[datetime] = _created()
    reading_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """While the file is read: the hash of the content being read, so that a stopped run
    resumes only on the same content."""
    docs_read: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Documents (mails) of the file read and committed so far: where a rerun resumes."""


class MemoryChunk(Base):
    """A chunk of a persona's memory; its vector lives in Chroma under the same id."""

    __tablename__ = "memory_chunks"
    __table_args__ = (
        Index("ix_memory_chunks_persona_hash", "persona", "content_hash"),
        CheckConstraint("kind IN ('own', 'context', 'document')", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    """Also the vector's id in Chroma: ``<file sha256 prefix>-<persona tag>-<document>-
    <chunk>`` (chunks stored before the tag have none: their ids were unique already)."""
    persona: Mapped[str] = mapped_column(String(100))
    file_id: Mapped[int] = mapped_column(
        ForeignKey("memory_files.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    """``own`` (written by the persona), ``context`` (mail to them) or ``document``."""
    text: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text, default="", server_default="")
    """The mail this one answers or forwards (quoted below the persona's own words): found
    by full-text search, never quoted as the persona's."""
    content_hash: Mapped[str] = mapped_column(String(40))
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(Text)
    """File path, with ``#N`` for the N-th mail of an mbox."""
    message_id: Mapped[str] = mapped_column(String(300), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(300), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")
    thread: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class PersonaStyle(Base):
    """The writing-style profile computed at ingest from the persona's own mails (JSON)."""

    __tablename__ = "persona_styles"

    persona: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ClonedVoice(Base):
    """A voice cloned from reference clips (XTTS); the clips and cached latents live in
    ``<data_dir>/voices/<id>/``."""

    __tablename__ = "voices"
    __table_args__ = (UniqueConstraint("persona", "name"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    persona: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[int] = _user_fk()
    consent_speaker: Mapped[str] = mapped_column(String(200))
    """Who is heard in the clips and agreed to the cloning, as the uploader confirmed."""
    consent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    clips: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    """The voice the persona speaks in (at most one per persona)."""
    created_at: Mapped[datetime] = _created()


class ReceivedUpdate(Base):
    """An update a platform delivered, written before it is confirmed to the platform and
    deleted once handled: after any stop, the next start answers what was never started
    and tells the senders of what was cut off."""

    __tablename__ = "received_updates"
    __table_args__ = (
        UniqueConstraint("platform", "update_id"),
        CheckConstraint("status IN ('received', 'started')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    update_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64), default="")
    user_key: Mapped[str] = mapped_column(String(100), default="", index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    """What the person sent, shortened, to remind them if it is not answered."""
    payload: Mapped[str] = mapped_column(Text)
    """The update as the platform sent it (JSON), to handle it after a restart."""
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[datetime] = _created()


class ApiToken(Base):
    """A key for the HTTP API that acts as one user, with scopes (``chat``, ``account``).
    Only a hash of the secret is kept; it is shown once, when made."""

    __tablename__ = "api_tokens"
    __table_args__ = (NEVER_REUSED,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(100))
    """Space-separated."""
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebLogin(Base):
    """A one-time sign-in link for the web app (``/web`` in a bot, ``doppel web-login``):
    only its hash is kept; it works once, within minutes."""

    __tablename__ = "web_logins"
    __table_args__ = (NEVER_REUSED,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A signed-in browser: the cookie's hash, its user, and when it lapses."""

    __tablename__ = "web_sessions"
    __table_args__ = (NEVER_REUSED,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
